/**
 * Root disks: an image's layers flattened into an ext4 file once per image (cached, never written
 * again) and a copy-on-write qcow2 overlay per instance on top of it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { InternalError, UnavailableError } from '../../core/errors.js';

const run = promisify(execFile);
const building = new Map<string, Promise<string>>();

/** Changes when what a base disk holds beside the layers changes (older disks are then rebuilt). */
const DISK_LAYOUT = 'abode-disk-2';

/**
 * The init layer, as docker's: mount points the agent needs, and the files it bind-mounts its own
 * over (/etc/hostname, /etc/hosts), so that booting never has to write the image's disk.
 */
const INIT_DIRS: [string, number][] = [
  ['dev', 0o755],
  ['proc', 0o555],
  ['sys', 0o555],
  ['tmp', 0o1777],
  ['etc', 0o755],
];
const INIT_FILES = ['etc/hostname', 'etc/hosts'];

/** The ext4 image of these layer directories (top first, as overlay's lowerdir lists them), built on first use. */
export function ensureBaseDisk(cacheDir: string, lowerdirs: string[]): Promise<string> {
  const key = createHash('sha256').update(DISK_LAYOUT).update(lowerdirs.join(':')).digest('hex').slice(0, 24);
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
  const init = join(tmp, 'init');
  let mounted = false;
  try {
    for (const [dir, mode] of INIT_DIRS) {
      await mkdir(join(init, dir), { recursive: true });
      await chmod(join(init, dir), mode); // exact, whatever the umask
    }
    for (const file of INIT_FILES) await writeFile(join(init, file), '', { mode: 0o644 });
    let source = init;
    if (lowerdirs.length > 0) {
      await mkdir(view);
      await run('mount', [
        '-t',
        'overlay',
        'overlay',
        '-o',
        `ro,lowerdir=${[init, ...lowerdirs].join(':')}`,
        view,
      ]);
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
    // What the disk was made of, for sweepBaseDisks.
    await writeFile(`${path}.json`, JSON.stringify({ lowerdirs }));
    await rename(image, path);
    return path;
  } finally {
    if (mounted) await run('umount', [view]).catch(() => run('umount', ['-l', view]).catch(() => undefined));
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Removes the base disks (with their empty overlay and record) whose layers are gone: the image was
 * removed, and no instance can use them any more (an instance keeps its image's layers). Disks that
 * have no record are left alone.
 */
export async function sweepBaseDisks(cacheDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(cacheDir).catch(() => [] as string[])) {
    if (!name.endsWith('.ext4')) continue;
    const disk = join(cacheDir, name);
    const record = await readFile(`${disk}.json`, 'utf8').catch(() => undefined);
    if (record === undefined) continue;
    const { lowerdirs } = JSON.parse(record) as { lowerdirs: string[] };
    if (lowerdirs.every((dir) => existsSync(dir))) continue;
    await rm(disk, { force: true });
    await Promise.all([`${disk}.overlay.qcow2`, `${disk}.json`].map((f) => rm(f, { force: true })));
    removed.push(disk);
  }
  return removed;
}

/**
 * Creates the instance's copy-on-write disk over base unless it exists (it survives restarts): a copy
 * of an empty overlay made once per base disk (qemu-img costs a process start per instance; the
 * qcow2 header names the base by its absolute path, the same for every copy).
 */
export async function ensureOverlayDisk(qemuImg: string, base: string, path: string): Promise<void> {
  if (existsSync(path)) return;
  const template = `${base}.overlay.qcow2`;
  if (!existsSync(template)) await createQcow2(qemuImg, template, ['-F', 'raw', '-b', base]);
  await copyFile(template, `${path}.tmp`, constants.COPYFILE_FICLONE);
  await rename(`${path}.tmp`, path);
}

/** An empty 1 MiB qcow2 disk at `path`: what a VM template boots with (its guest never reads it). */
export function createPlaceholderDisk(qemuImg: string, path: string): Promise<void> {
  return createQcow2(qemuImg, path, [], '1M');
}

/** `qemu-img create -f qcow2` under a temporary name, renamed into place when made. */
async function createQcow2(qemuImg: string, path: string, options: string[], size?: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await run(qemuImg, ['create', '-q', '-f', 'qcow2', ...options, tmp, ...(size ? [size] : [])]);
  } catch (error) {
    await rm(tmp, { force: true });
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UnavailableError(`${qemuImg} is missing: install it with apt-get install qemu-utils`);
    throw new InternalError(`cannot create the VM's disk: ${(error as { stderr?: string }).stderr ?? error}`);
  }
  await rename(tmp, path);
}
