/**
 * Root disks: an image's layers flattened into an ext4 file once per image (cached, never written
 * again) and a copy-on-write qcow2 overlay per instance on top of it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { InternalError, UnavailableError } from '../../core/errors.js';

const run = promisify(execFile);
const building = new Map<string, Promise<string>>();

/** The ext4 image of these layer directories (top first, as overlay's lowerdir lists them), built on first use. */
export function ensureBaseDisk(cacheDir: string, lowerdirs: string[]): Promise<string> {
  const key = createHash('sha256').update(lowerdirs.join(':')).digest('hex').slice(0, 24);
  const path = join(cacheDir, `${key}.ext4`);
  if (existsSync(path)) return Promise.resolve(path);
  let pending = building.get(path);
  if (!pending) {
    pending = buildBaseDisk(cacheDir, lowerdirs, path).finally(() => building.delete(path));
    building.set(path, pending);
  }
  return pending;
}

async function buildBaseDisk(cacheDir: string, lowerdirs: string[], path: string): Promise<string> {
  await mkdir(cacheDir, { recursive: true });
  const tmp = await mkdtemp(join(cacheDir, '.build-'));
  const view = join(tmp, 'view');
  let mounted = false;
  try {
    let source = lowerdirs[0] ?? view;
    await mkdir(view);
    if (lowerdirs.length > 1) {
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lowerdirs.join(':')}`, view]);
      mounted = true;
      source = view;
    }
    const { stdout } = await run('du', ['-s', '-B1', '-x', source]);
    const used = Number(stdout.split(/\s+/)[0]) || 0;
    // Room to write: the qcow2 overlay keeps only what the guest writes, and the file stays sparse.
    const size = Math.ceil((used * 1.2 + 1024 * 2 ** 20) / 2 ** 20);
    const image = join(tmp, 'disk.ext4');
    try {
      await run('mkfs.ext4', [
        '-q',
        '-F',
        '-d',
        source,
        '-L',
        'abode-root',
        '-O',
        '^has_journal',
        '-m',
        '0',
        '-E',
        // Inode tables zeroed now, so the guest never runs ext4lazyinit into the instance's overlay.
        'root_owner=0:0,lazy_itable_init=0,nodiscard',
        image,
        `${size}M`,
      ]);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT')
        throw new UnavailableError('mkfs.ext4 is missing: install it with apt-get install e2fsprogs');
      throw new InternalError(
        `cannot build the VM's root disk: ${(error as { stderr?: string }).stderr ?? error}`,
      );
    }
    await rename(image, path);
    return path;
  } finally {
    if (mounted) await run('umount', [view]).catch(() => run('umount', ['-l', view]).catch(() => undefined));
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Creates the instance's copy-on-write disk over base unless it exists (it survives restarts). */
export async function ensureOverlayDisk(qemuImg: string, base: string, path: string): Promise<void> {
  if (existsSync(path)) return;
  try {
    await run(qemuImg, ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, `${path}.tmp`]);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UnavailableError(`${qemuImg} is missing: install it with apt-get install qemu-utils`);
    throw new InternalError(`cannot create the VM's disk: ${(error as { stderr?: string }).stderr ?? error}`);
  }
  await rename(`${path}.tmp`, path);
}
