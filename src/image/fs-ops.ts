/** File operations node cannot do natively (mknod, xattrs), through coreutils' mknod and the attr package's setfattr. */
// These belong behind platform/ (an fs helper or the native helper) once that module exists.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { UnavailableError } from '../core/errors.js';

const run = promisify(execFile);

async function tool(cmd: string, args: string[], pkg: string): Promise<void> {
  try {
    await run(cmd, args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new UnavailableError(`${cmd} not found: install the ${pkg} package (apt-get install ${pkg})`);
    }
    throw new UnavailableError(`${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
  }
}

/** Creates a device node or FIFO (`mknod`); devices need CAP_MKNOD. */
export async function mknod(
  path: string,
  kind: 'c' | 'b' | 'p',
  mode: number,
  major = 0,
  minor = 0,
): Promise<void> {
  const args = ['-m', (mode & 0o7777).toString(8), '--', path, kind];
  if (kind !== 'p') args.push(String(major), String(minor));
  await tool('mknod', args, 'coreutils');
}

/** Sets an extended attribute on a path without following a final symlink (`setfattr -h`). */
export async function setXattr(path: string, name: string, value: string): Promise<void> {
  await tool('setfattr', ['-h', '-n', name, '-v', value, '--', path], 'attr');
}

/** Sets an extended attribute to raw bytes (hex-encoded for setfattr), without following a final symlink. */
export async function setXattrBytes(path: string, name: string, value: Buffer): Promise<void> {
  await tool(
    'setfattr',
    ['-h', '-n', name, '-v', value.length ? `0x${value.toString('hex')}` : '', '--', path],
    'attr',
  );
}

/** An overlayfs whiteout: a character device 0/0 that hides the same name in lower layers. */
export async function makeOverlayWhiteout(path: string): Promise<void> {
  await mknod(path, 'c', 0o000, 0, 0);
}

/** Marks a directory opaque for overlayfs (`trusted.overlay.opaque=y`): lower layers' contents are hidden. */
export async function makeOverlayOpaque(dir: string): Promise<void> {
  await setXattr(dir, 'trusted.overlay.opaque', 'y');
}
