/** Mounting an instance's or a build step's snapshot on the host for a moment (cp, COPY/ADD). */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Mount } from '../core/image.js';

const run = promisify(execFile);

/** Mounts a snapshot's mounts on `target`. */
export async function mountAll(mounts: Mount[], target: string): Promise<void> {
  for (const m of mounts) {
    const opts = m.options.join(',');
    const args =
      m.type === 'bind'
        ? ['-o', opts || 'rbind', m.source, target]
        : ['-t', m.type, '-o', opts, m.source, target];
    await run('mount', args);
  }
}

/** Unmounts everything at `target` (lazily if busy). */
export async function unmountAll(target: string): Promise<void> {
  try {
    await run('umount', ['-R', target]);
  } catch {
    await run('umount', ['-R', '-l', target]).catch(() => undefined);
  }
}
