/**
 * The guest kernel: Debian's linux-image-cloud-amd64, fetched once with apt-get download (apt checks
 * the package against the archive's signed index), unpacked and cached under the state root with
 * its uncompressed vmlinux for PVH boot and the virtio modules the initramfs needs.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UnavailableError } from '../../core/errors.js';
import { extractVmlinux } from './vmlinux.js';

const run = promisify(execFile);

export const KERNEL_PACKAGE = 'linux-image-cloud-amd64';

/** The modules the agent loads, in dependency order (virtio_console first: the agent's port). */
export const GUEST_MODULES = [
  'drivers/virtio/virtio_ring.ko',
  'drivers/virtio/virtio.ko',
  'drivers/virtio/virtio_mmio.ko',
  'drivers/char/virtio_console.ko',
  'drivers/block/virtio_blk.ko',
  'drivers/virtio/virtio_balloon.ko',
];

export interface GuestKernel {
  /** The kernel's release (uname -r in the guest). */
  release: string;
  /** What QEMU boots: the uncompressed vmlinux (PVH) or the given image. */
  image: string;
  /** Module files in load order (absolute host paths); empty for a kernel brought without modules. */
  modules: string[];
  /** A key that changes when the kernel does (for caches built from it). */
  key: string;
}

const HOW_TO_INSTALL =
  `abode fetches Debian's ${KERNEL_PACKAGE} with apt-get; make sure apt works (apt-get update) ` +
  `and the package is available (apt-cache policy ${KERNEL_PACKAGE}), or point ABODE_VM_KERNEL at a kernel image`;

/** Returns the cached guest kernel, fetching and unpacking it on first use; `override` is a kernel image path. */
export async function ensureKernel(cacheDir: string, override?: string): Promise<GuestKernel> {
  if (override) return ownKernel(override);
  const current = join(cacheDir, 'current.json');
  try {
    const kernel = JSON.parse(await readFile(current, 'utf8')) as GuestKernel;
    if (existsSync(kernel.image) && kernel.modules.every((m) => existsSync(m))) return kernel;
  } catch {
    // not fetched yet
  }
  await mkdir(cacheDir, { recursive: true });
  const pkg = await resolvePackage();
  const dir = join(cacheDir, pkg);
  const tmp = await mkdtemp(join(cacheDir, '.fetch-'));
  try {
    try {
      await run('apt-get', ['download', '-q', '-o', 'APT::Sandbox::User=root', pkg], { cwd: tmp });
    } catch (error) {
      throw new UnavailableError(
        `cannot download the guest kernel package ${pkg}: ${lastLine(error)}; ${HOW_TO_INSTALL}`,
      );
    }
    const deb = (await readdir(tmp)).find((f) => f.endsWith('.deb'));
    if (!deb) throw new UnavailableError(`apt-get download ${pkg} left no .deb; ${HOW_TO_INSTALL}`);
    const tree = join(tmp, 'tree');
    await run('dpkg-deb', ['-x', join(tmp, deb), tree]);
    const boot = await readdir(join(tree, 'boot'));
    const vmlinuz = boot.find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new UnavailableError(`${pkg} holds no /boot/vmlinuz-*; ${HOW_TO_INSTALL}`);
    const release = vmlinuz.slice('vmlinuz-'.length);
    const out = join(tmp, 'kernel');
    await mkdir(join(out, 'modules'), { recursive: true });
    await writeFile(join(out, 'vmlinux'), extractVmlinux(await readFile(join(tree, 'boot', vmlinuz))));
    for (const m of GUEST_MODULES) {
      const src = join(tree, 'lib/modules', release, 'kernel', m);
      await writeFile(join(out, 'modules', m.split('/').pop()!), await readFile(src));
    }
    await rm(dir, { recursive: true, force: true });
    await rename(out, dir);
    const kernel: GuestKernel = {
      release,
      image: join(dir, 'vmlinux'),
      modules: GUEST_MODULES.map((m) => join(dir, 'modules', m.split('/').pop()!)),
      key: `${pkg}-${release}`,
    };
    await writeFile(`${current}.tmp`, JSON.stringify(kernel));
    await rename(`${current}.tmp`, current);
    return kernel;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The real package behind the metapackage (linux-image-cloud-amd64 → linux-image-6.1.0-…-cloud-amd64). */
async function resolvePackage(): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await run('apt-cache', ['depends', KERNEL_PACKAGE]));
  } catch (error) {
    throw new UnavailableError(
      `cannot resolve the guest kernel package: ${lastLine(error)}; ${HOW_TO_INSTALL}`,
    );
  }
  const dep = /Depends:\s*(linux-image-\S+)/.exec(stdout);
  if (!dep) throw new UnavailableError(`apt knows no ${KERNEL_PACKAGE}; ${HOW_TO_INSTALL}`);
  return dep[1]!;
}

async function ownKernel(path: string): Promise<GuestKernel> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile())
    throw new UnavailableError(
      `guest kernel ${path} (ABODE_VM_KERNEL) does not exist; unset ABODE_VM_KERNEL to use Debian's ${KERNEL_PACKAGE}, which abode fetches with apt-get`,
    );
  return { release: 'custom', image: path, modules: [], key: `custom-${path}-${info.mtimeMs}-${info.size}` };
}

function lastLine(error: unknown): string {
  const e = error as { stderr?: string; message?: string };
  const text = (e.stderr || e.message || String(error)).trim().split('\n');
  return text.filter((l) => !l.startsWith('W:')).pop() ?? text.pop() ?? '';
}
