/**
 * docker cp's daemon side: stat a path in an instance, stream it out as a tar, extract a tar into it.
 *
 * Every path is resolved inside the instance's root file system without following a symlink out of
 * it (`resolveInRoot`). A running instance's root is `/proc/<pid>/root`; a stopped one's snapshot is
 * mounted on a private temporary directory for the duration of the call, and always unmounted.
 *
 * Known limit: resolution is done in user space, so a process inside a running instance that swaps a
 * directory for a symlink between resolution and use can still race us (as docker's own cp could).
 */
import { statfsSync, type Stats } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readlink, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { create as createTar, type ReadEntry, type WriteEntry } from 'tar';
import type { Mount } from '../core/image.js';
import type { InstanceRecord } from '../core/instance.js';
import { AbodeError, ConflictError, InvalidArgumentError, NotFoundError } from '../core/errors.js';
import type { Engine } from './engine.js';
import { mountAll, unmountAll } from './mounts.js';
import { extractSafely, rebase, safeEntryPath } from '../core/archive/extract.js';

export { safeEntryPath };

/** What `HEAD /archive` answers (X-Abode-Path-Stat, like docker's X-Docker-Container-Path-Stat). */
export interface PathStat {
  /** Base name of the requested path (`/` for the root). */
  name: string;
  size: number;
  /** st_mode: file type and permission bits. */
  mode: number;
  /** RFC 3339. */
  mtime: string;
  /** For a symlink: the absolute path inside the instance it resolves to; else empty. */
  linkTarget: string;
}

export interface ResolvedPath {
  /** The path on the host (under root). */
  hostPath: string;
  /** The resolved absolute path inside the instance (no symlinks left, unless the last one was kept). */
  path: string;
  /** Whether the final component exists (missing parents are an error). */
  exists: boolean;
}

const MAX_LINKS = 40;

function errno(code: string, message: string): NodeJS.ErrnoException {
  const error = new Error(`${code}: ${message}`) as NodeJS.ErrnoException;
  error.code = code;
  return error;
}

/**
 * Resolves `path` (absolute, as seen inside the instance) to a host path under `root`, component by
 * component with lstat + readlink: absolute link targets count from `root`, `..` stops at `root`.
 * The last component is followed only with `followFinal`. Errors carry ENOENT/ENOTDIR/ELOOP codes.
 */
export async function resolveInRoot(
  root: string,
  path: string,
  opts: { followFinal?: boolean } = {},
): Promise<ResolvedPath> {
  const resolved: string[] = [];
  const pending = path.split('/');
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const last = pending.every((p) => p === '' || p === '.');
    const hostPath = join(root, ...resolved, part);
    let st: Stats;
    try {
      st = await lstat(hostPath);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && last && !path.endsWith('/')) {
        resolved.push(part);
        return { hostPath, path: '/' + resolved.join('/'), exists: false };
      }
      throw error;
    }
    if (st.isSymbolicLink() && (!last || opts.followFinal || /\/\.?$/.test(path))) {
      if (++links > MAX_LINKS) throw errno('ELOOP', `too many levels of symbolic links: ${path}`);
      const target = await readlink(hostPath);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/'));
      continue;
    }
    if ((!last || /\/\.?$/.test(path)) && !st.isDirectory())
      throw errno('ENOTDIR', `not a directory: /${[...resolved, part].join('/')}`);
    resolved.push(part);
  }
  return { hostPath: join(root, ...resolved), path: '/' + resolved.join('/'), exists: true };
}

/** What archive.ts needs from the engine. */
function internals(engine: Engine) {
  return { ...engine.parts, locked: <T>(id: string, work: () => Promise<T>) => engine.locked(id, work) };
}

/**
 * Runs `work` with the instance's root file system at a host path: `/proc/<pid>/root` while it
 * runs, else its snapshot mounted on a private temporary directory (unmounted and removed after).
 * A never-started instance has no snapshot yet: reads see a throw-away snapshot of its image.
 */
export async function withInstanceRoot<T>(
  engine: Engine,
  record: InstanceRecord,
  access: 'read' | 'write',
  work: (root: string) => Promise<T>,
): Promise<T> {
  const running = () => {
    const current = engine.get(record.id);
    return (current.state.status === 'running' || current.state.status === 'paused') && current.state.pid > 0
      ? current
      : undefined;
  };
  const live = running();
  if (live) return work(`/proc/${live.state.pid}/root`);
  const deps = internals(engine);
  return deps.locked(record.id, async () => {
    // It may have started while we waited for the lock.
    const started = running();
    if (started) return work(`/proc/${started.state.pid}/root`);
    let mounts: Mount[];
    let scratch: string | undefined;
    try {
      mounts = await deps.snapshotter.mounts(record.id);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      if (access === 'write')
        throw new ConflictError(
          `cannot copy into instance ${record.name}: it has no file system until it is first started`,
        );
      scratch = `cp-${record.id.slice(0, 12)}-${Math.random().toString(36).slice(2, 10)}`;
      mounts = await deps.snapshotter.prepare(scratch, await deps.images.resolve(record.imageId));
    }
    const base = join(deps.root, 'tmp');
    await mkdir(base, { recursive: true, mode: 0o700 });
    const target = await mkdtemp(join(base, 'cp-'));
    await chmod(target, 0o700);
    try {
      await mountAll(mounts, target);
      return await work(target);
    } finally {
      await unmountAll(target);
      // rmdir, not rm -r: if the unmount failed, never delete through a mounted tree.
      await rmdir(target).catch(() => undefined);
      if (scratch) await deps.snapshotter.remove(scratch).catch(() => undefined);
    }
  });
}

function pathError(error: unknown, path: string, record: InstanceRecord): AbodeError {
  if (error instanceof AbodeError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return new NotFoundError(`Could not find the file ${path} in container ${record.name}`, { path });
  if (code === 'ELOOP')
    return new InvalidArgumentError(`too many levels of symbolic links: ${path}`, { path });
  return new AbodeError('internal', `${path}: ${(error as Error).message}`);
}

function checkPath(path: string): void {
  if (!path.startsWith('/'))
    throw new InvalidArgumentError(`the path must be absolute (got ${JSON.stringify(path)})`);
}

async function statIn(
  root: string,
  path: string,
  follow: boolean,
): Promise<{ stat: PathStat; hostPath: string }> {
  const own = await resolveInRoot(root, path);
  if (!own.exists) throw errno('ENOENT', path);
  let hostPath = own.hostPath;
  // The root itself may be a link (/proc/<pid>/root): it is always the directory it stands for.
  let st = own.path === '/' ? await stat(root) : await lstat(hostPath);
  let linkTarget = '';
  if (st.isSymbolicLink()) {
    const target = await resolveInRoot(root, own.path, { followFinal: true });
    linkTarget = target.path;
    if (follow) {
      if (!target.exists) throw errno('ENOENT', path);
      hostPath = target.hostPath;
      st = target.path === '/' ? await stat(root) : await lstat(hostPath);
    }
  }
  const trimmed = path.replace(/(\/\.?)+$/, '');
  const name = trimmed === '' ? '/' : posix.basename(trimmed);
  return {
    stat: { name, size: st.size, mode: st.mode, mtime: st.mtime.toISOString(), linkTarget },
    hostPath,
  };
}

/** HEAD /archive: the stat of `path` in the instance (`follow`: of what a final symlink points to). */
export async function statPath(
  engine: Engine,
  record: InstanceRecord,
  path: string,
  opts: { follow?: boolean } = {},
): Promise<PathStat> {
  checkPath(path);
  return withInstanceRoot(engine, record, 'read', async (root) => {
    try {
      return (await statIn(root, path, opts.follow ?? false)).stat;
    } catch (error) {
      throw pathError(error, path, record);
    }
  });
}

const PSEUDO_FS = new Set([
  0x9fa0 /* proc */, 0x62656572 /* sysfs */, 0x27e0eb /* cgroup */, 0x63677270 /* cgroup2 */,
  0x64626720 /* debugfs */, 0x74726163 /* tracefs */, 0x73636673 /* securityfs */,
]);

function isPseudo(entryPath: string, cwd: string): boolean {
  try {
    return PSEUDO_FS.has(Number(statfsSync(join(cwd, entryPath)).type));
  } catch {
    return false;
  }
}

/**
 * GET /archive: a tar of `path` (a file, link or whole tree, never following links inside it) whose
 * top entry is named as the requested path's base name. `consume` gets the stat and the stream; the
 * root stays available until it returns.
 */
export async function exportPath(
  engine: Engine,
  record: InstanceRecord,
  path: string,
  opts: { follow?: boolean },
  consume: (stat: PathStat, tar: Readable) => Promise<void>,
): Promise<void> {
  checkPath(path);
  await withInstanceRoot(engine, record, 'read', async (root) => {
    let found: { stat: PathStat; hostPath: string };
    try {
      found = await statIn(root, path, opts.follow ?? false);
    } catch (error) {
      throw pathError(error, path, record);
    }
    // The root is packed by its children (it may be the /proc/<pid>/root link), as `./name`.
    const isRoot = found.hostPath === root;
    const top = found.stat.name;
    const cwd = isRoot ? root : dirname(found.hostPath);
    const topEntry = isRoot ? '' : basename(found.hostPath);
    const pack = createTar(
      {
        cwd,
        follow: false,
        portable: false,
        strict: false,
        // Kernel file systems below the copied path (/proc, /sys of a running instance) are left out.
        filter: (entryPath: string, st: Stats | ReadEntry) =>
          !('isDirectory' in st && st.isDirectory() && entryPath !== topEntry && isPseudo(entryPath, cwd)),
        onWriteEntry: (entry: WriteEntry) => {
          entry.path = isRoot ? `./${entry.path}` : rebase(entry.path, top);
          if (entry.type === 'Link' && entry.linkpath)
            entry.linkpath = isRoot ? `./${entry.linkpath}` : rebase(entry.linkpath, top);
        },
      },
      isRoot ? await readdir(root) : [basename(found.hostPath)],
    ) as unknown as Readable;
    await consume(found.stat, pack);
  });
}

export interface ImportOptions {
  /** Refuse to replace a directory with a non-directory or the other way round (docker's noOverwriteDirNonDir). */
  noOverwriteDirNonDir?: boolean;
  /** Keep the archive's uid/gid (docker cp -a); else files belong to the instance's root. */
  preserveOwner?: boolean;
}

/**
 * PUT /archive: extracts `tar` into the directory `path` (following symlinks inside the instance to
 * find it). Entries that are absolute, climb with `..`, or would pass through a symlink (one already
 * in the instance or one earlier in the archive) stop the extraction with an error.
 */
export async function importArchive(
  engine: Engine,
  record: InstanceRecord,
  path: string,
  tar: Readable,
  opts: ImportOptions = {},
): Promise<void> {
  checkPath(path);
  await withInstanceRoot(engine, record, 'write', async (root) => {
    let dir: string;
    try {
      const found = await resolveInRoot(root, path, { followFinal: true });
      if (!found.exists) throw errno('ENOENT', path);
      const st = found.path === '/' ? await stat(root) : await lstat(found.hostPath);
      if (!st.isDirectory())
        throw new InvalidArgumentError(`extraction point is not a directory: ${path}`, { path });
      dir = found.hostPath;
    } catch (error) {
      throw pathError(error, path, record);
    }
    await extractSafely(tar, dir, {
      preserveOwner: opts.preserveOwner ?? false,
      noOverwriteDirNonDir: opts.noOverwriteDirNonDir ?? false,
      shown: path,
    });
  });
}
