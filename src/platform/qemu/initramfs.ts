/**
 * The guest's initramfs: abode-agent as /init and the virtio modules, uncompressed, cached per agent
 * and kernel. The agent loads them in groups: /modules first (the virtio bus), then at once
 * /modules.port (its channel, then READY) and, in a child, /modules.root (the root disk, then its
 * mount) and /modules.late (the balloon); /modules.virtiofs only for an instance with volumes.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { UnavailableError } from '../../core/errors.js';
import { CPIO_CHAR, CPIO_DIR, CPIO_FILE, writeCpio, type CpioEntry } from './cpio.js';
import type { GuestKernel } from './kernel.js';

/** Changes when the initramfs's files change shape (a cached one of another layout is not reused). */
const LAYOUT = 'abode-initramfs-5';

/** The agent channel's driver. */
const PORT_MODULES: ReadonlySet<string> = new Set(['virtio_console.ko']);
/** The root disk's driver. */
const ROOT_MODULES: ReadonlySet<string> = new Set(['virtio_blk.ko']);
/** Not needed to run the process (free page reporting, the power button). */
const LATE_MODULES: ReadonlySet<string> = new Set(['virtio_balloon.ko', 'evdev.ko', 'button.ko']);
const GROUPED = [PORT_MODULES, ROOT_MODULES, LATE_MODULES];

/**
 * Module parameters. virtio-mmio offers 1024-entry queues, and virtio_blk would keep a request (with
 * its scatter list, ~4 KiB) for each: 4 MiB of guest memory for a disk that never has 64 requests out.
 */
const MODULE_PARAMS: Record<string, string> = { 'virtio_blk.ko': 'queue_depth=64' };

/** Builds (or reuses) the initramfs for this agent binary and kernel; returns its path. */
export async function ensureInitramfs(
  cacheDir: string,
  agentPath: string,
  kernel: GuestKernel,
): Promise<string> {
  let agent: Buffer;
  try {
    agent = await readFile(agentPath);
  } catch {
    throw new UnavailableError(`the guest agent ${agentPath} is missing; build it with: make -C native`);
  }
  const hash = createHash('sha256')
    .update(LAYOUT)
    .update(agent)
    .update(kernel.key)
    .update([...kernel.modules, ...kernel.virtiofsModules].join('\n'))
    .digest('hex')
    .slice(0, 16);
  const path = join(cacheDir, `initramfs-${hash}.cpio`);
  if (existsSync(path)) return path;
  await mkdir(cacheDir, { recursive: true });
  const load = (list: string[]) =>
    Promise.all(list.map(async (m) => ({ name: basename(m), data: await readFile(m) })));
  const modules = await load(kernel.modules);
  const virtiofs = await load(kernel.virtiofsModules);
  const group = (names: ReadonlySet<string> | undefined) =>
    modules.filter((m) => (names ? names.has(m.name) : !GROUPED.some((group) => group.has(m.name))));
  const list = (path: string, files: { name: string }[]): CpioEntry => ({
    path,
    mode: CPIO_FILE | 0o644,
    data: Buffer.from(
      files.map((m) => `${[m.name, MODULE_PARAMS[m.name]].filter(Boolean).join(' ')}\n`).join(''),
    ),
  });
  const entries: CpioEntry[] = [
    { path: 'dev', mode: CPIO_DIR | 0o755 },
    { path: 'dev/console', mode: CPIO_CHAR | 0o600, rdevMajor: 5, rdevMinor: 1 },
    { path: 'proc', mode: CPIO_DIR | 0o755 },
    { path: 'sys', mode: CPIO_DIR | 0o755 },
    { path: 'newroot', mode: CPIO_DIR | 0o755 },
    { path: 'lib', mode: CPIO_DIR | 0o755 },
    { path: 'lib/modules', mode: CPIO_DIR | 0o755 },
    ...[...modules, ...virtiofs].map((m) => ({
      path: `lib/modules/${m.name}`,
      mode: CPIO_FILE | 0o644,
      data: m.data,
    })),
    list('modules', group(undefined)),
    list('modules.port', group(PORT_MODULES)),
    list('modules.root', group(ROOT_MODULES)),
    list('modules.late', group(LATE_MODULES)),
    // Loaded on demand (an instance with volumes): the agent keeps them open across the switch of root.
    list('modules.virtiofs', virtiofs),
    { path: 'init', mode: CPIO_FILE | 0o755, data: agent },
  ];
  await writeFile(`${path}.tmp`, writeCpio(entries));
  await rename(`${path}.tmp`, path);
  return path;
}
