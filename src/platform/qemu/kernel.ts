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
  // QMP's system_powerdown reaches the agent as the ACPI power button's key press (an input event).
  'drivers/input/evdev.ko',
  'drivers/acpi/button.ko',
];

/** Modules the agent loads only when the instance shares host directories (virtio-fs). */
export const VIRTIOFS_MODULES = ['fs/fuse/fuse.ko', 'fs/fuse/virtiofs.ko'];

/** Bumped when the cache's layout changes (a cache without what this version needs is fetched again). */
const CACHE_VERSION = 3;

export interface GuestKernel {
  /** The kernel's release (uname -r in the guest). */
  release: string;
  /** What QEMU boots: the uncompressed vmlinux (PVH) or the given image. */
  image: string;
  /** Module files in load order (absolute host paths); empty for a kernel brought without modules. */
  modules: string[];
  /** Modules for virtio-fs (loaded by the agent only when the instance has volumes); empty when built in or unknown. */
  virtiofsModules: string[];
  /** The compressed kernel (bzImage), when the cache holds one. */
  bzImage?: string;
  cacheVersion?: number;
  /** A key that changes when the kernel does (for caches built from it). */
  key: string;
}

const HOW_TO_INSTALL =
  `abode fetches Debian's ${KERNEL_PACKAGE} with apt-get; make sure apt works (apt-get update) ` +
  `and the package is available (apt-cache policy ${KERNEL_PACKAGE}), or point ABODE_VM_KERNEL at a kernel image`;

/** Returns the cached guest kernel, fetching and unpacking it on first use; `override` is a kernel image path. */
export async function ensureKernel(
  cacheDir: string,
  override?: string,
  source = 'ABODE_VM_KERNEL',
): Promise<GuestKernel> {
  if (override) return ownKernel(override, cacheDir, source);
  const current = join(cacheDir, 'current.json');
  const cached = await cachedKernel(cacheDir);
  if (cached) return cached;
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
    const bzImage = await readFile(join(tree, 'boot', vmlinuz));
    await writeFile(join(out, 'vmlinux'), extractVmlinux(bzImage));
    await writeFile(join(out, 'vmlinuz'), bzImage);
    for (const m of [...GUEST_MODULES, ...VIRTIOFS_MODULES]) {
      const src = join(tree, 'lib/modules', release, 'kernel', m);
      await writeFile(join(out, 'modules', m.split('/').pop()!), await readFile(src));
    }
    await rm(dir, { recursive: true, force: true });
    await rename(out, dir);
    const kernel: GuestKernel = {
      release,
      image: join(dir, 'vmlinux'),
      modules: GUEST_MODULES.map((m) => join(dir, 'modules', m.split('/').pop()!)),
      virtiofsModules: VIRTIOFS_MODULES.map((m) => join(dir, 'modules', m.split('/').pop()!)),
      bzImage: join(dir, 'vmlinuz'),
      key: `${pkg}-${release}`,
      cacheVersion: CACHE_VERSION,
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

/** The cached Debian kernel, if fetched (by this version of the cache layout). */
async function cachedKernel(cacheDir: string): Promise<GuestKernel | undefined> {
  try {
    const kernel = JSON.parse(await readFile(join(cacheDir, 'current.json'), 'utf8')) as GuestKernel;
    const files = [kernel.image, ...kernel.modules, ...(kernel.virtiofsModules ?? [])];
    if (kernel.cacheVersion === CACHE_VERSION && files.every((f) => existsSync(f))) return kernel;
  } catch {
    // not fetched yet
  }
  return undefined;
}

/**
 * A kernel brought by the user (--kernel, ABODE_VM_KERNEL): a bzImage or an ELF vmlinux. Its
 * modules come from the cached Debian kernel when the releases match, else from the host's
 * /lib/modules/RELEASE, else none (the kernel must have virtio-mmio and virtio-console built in).
 */
async function ownKernel(path: string, cacheDir: string, source: string): Promise<GuestKernel> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile())
    throw new UnavailableError(
      `guest kernel ${path} (${source}) does not exist or is not a file; ` +
        (source === '--kernel'
          ? 'give the path of a kernel image (bzImage or vmlinux), or leave --kernel out'
          : `unset ${source}`) +
        ` to use Debian's ${KERNEL_PACKAGE}, which abode fetches with apt-get`,
    );
  const release = (await kernelRelease(path)) ?? 'custom';
  const key = `custom-${path}-${info.mtimeMs}-${info.size}`;
  const debian = await cachedKernel(cacheDir);
  if (debian && debian.release === release)
    return { release, image: path, modules: debian.modules, virtiofsModules: debian.virtiofsModules, key };
  const hostDir = join('/lib/modules', release, 'kernel');
  const host = (list: string[]) => list.map((m) => join(hostDir, m));
  if (release !== 'custom' && host(GUEST_MODULES).every((m) => existsSync(m))) {
    const virtiofs = host(VIRTIOFS_MODULES);
    return {
      release,
      image: path,
      modules: host(GUEST_MODULES),
      virtiofsModules: virtiofs.every((m) => existsSync(m)) ? virtiofs : [],
      key,
    };
  }
  return { release, image: path, modules: [], virtiofsModules: [], key };
}

/** The release a kernel image says it is: a bzImage's header string, or "Linux version X" in a vmlinux. */
export async function kernelRelease(path: string): Promise<string | undefined> {
  const image = await readFile(path);
  if (image.length > 0x210 && image.toString('latin1', 0x202, 0x206) === 'HdrS') {
    const at = image.readUInt16LE(0x20e) + 0x200;
    const text = image.toString('latin1', at, Math.min(image.length, at + 256));
    return /^(\S+)/.exec(text)?.[1];
  }
  const at = image.indexOf('Linux version ');
  if (at < 0) return undefined;
  return /^Linux version (\S+)/.exec(image.toString('latin1', at, at + 256))?.[1];
}

function lastLine(error: unknown): string {
  const e = error as { stderr?: string; message?: string };
  const text = (e.stderr || e.message || String(error)).trim().split('\n');
  return text.filter((l) => !l.startsWith('W:')).pop() ?? text.pop() ?? '';
}
