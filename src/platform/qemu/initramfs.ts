/** The guest's initramfs: abode-agent as /init and the virtio modules, uncompressed, cached per agent and kernel. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { UnavailableError } from '../../core/errors.js';
import { CPIO_CHAR, CPIO_DIR, CPIO_FILE, writeCpio, type CpioEntry } from './cpio.js';
import type { GuestKernel } from './kernel.js';

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
    {
      path: 'modules',
      mode: CPIO_FILE | 0o644,
      data: Buffer.from(modules.map((m) => `${m.name}\n`).join('')),
    },
    // Loaded on demand (an instance with volumes): the agent keeps them open across the switch of root.
    {
      path: 'modules.virtiofs',
      mode: CPIO_FILE | 0o644,
      data: Buffer.from(virtiofs.map((m) => `${m.name}\n`).join('')),
    },
    { path: 'init', mode: CPIO_FILE | 0o755, data: agent },
  ];
  await writeFile(`${path}.tmp`, writeCpio(entries));
  await rename(`${path}.tmp`, path);
  return path;
}
