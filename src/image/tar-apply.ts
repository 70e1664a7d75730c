/** Applies a layer tar to a directory safely: nothing is written outside it, overlay whiteouts are made for `.wh.` entries. */
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  promises as fs,
  symlinkSync,
  write,
  writeSync,
  writev,
  writevSync,
} from 'node:fs';
import { join, posix } from 'node:path';
import { type ReadEntry } from 'tar';
import { InvalidArgumentError } from '../core/errors.js';
import { makeOverlayOpaque, makeOverlayWhiteout, mknod, setXattrBytes } from './fs-ops.js';
import { XattrTracker, type Xattrs } from './tar-xattrs.js';
import { readTar } from './tar-read.js';

const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_META_PREFIX = '.wh..wh.';
const WHITEOUT_OPAQUE = '.wh..wh..opq';
/** Files up to this size are written at once, directly; larger ones through the thread pool. */
const SYNC_WRITE_MAX = 256 << 10;
/** Larger files are written in writes of about this size, several at a time up to MAX_INFLIGHT_BYTES. */
const WRITE_BATCH = 1 << 20;
const MAX_INFLIGHT_BYTES = 32 << 20;
/** Large files at most being written in the background. */
const MAX_JOBS = 64;
/** Directories whose metadata is set at once, at the end. */
const DIR_META_CONCURRENCY = 16;

export interface ApplyOptions {
  /** chown entries to their uid/gid; default: when running as root. */
  preserveOwner?: boolean;
  /** Makes the whiteout for `path` (default: overlay char device 0/0). */
  whiteout?: (path: string) => Promise<void>;
  /** Marks `dir` opaque (default: `trusted.overlay.opaque=y` via setfattr). */
  opaque?: (dir: string) => Promise<void>;
  /** Sets an extended attribute from a `SCHILY.xattr.*` PAX record (default: setfattr). */
  xattr?: (path: string, name: string, value: Buffer) => Promise<void>;
}

export interface ApplyResult {
  /** Bytes of regular file contents written. */
  size: number;
  entries: number;
}

/** A write's byte count; a write of nothing (the disk full, most likely) is an error, not a loop. */
function writeFull(n: number): number {
  if (n === 0) throw new Error('short write to a layer file');
  return n;
}

/** Writes all of `chunks` to `fd`, at `position` or else at its offset (a short write is finished with the rest). */
export function writeAllSync(fd: number, chunks: readonly Uint8Array[], position?: number): void {
  if (chunks.length === 0) return;
  const total = chunks.reduce((n, c) => n + c.byteLength, 0);
  let written = position === undefined ? writevSync(fd, chunks) : writevSync(fd, chunks, position);
  if (written === total) return;
  const all = Buffer.concat(chunks);
  while (written < total)
    written += writeFull(
      writeSync(fd, all, written, total - written, position === undefined ? null : position + written),
    );
}

/** Writes all of `chunks` at `position` through the thread pool (a short write is finished with the rest). */
async function writeAt(fd: number, chunks: Buffer[], bytes: number, position: number): Promise<void> {
  let written = await new Promise<number>((resolve, reject) =>
    writev(fd, chunks, position, (err, n) => (err ? reject(err) : resolve(n))),
  );
  if (written === bytes) return;
  const all = Buffer.concat(chunks);
  while (written < bytes) {
    const n = await new Promise<number>((resolve, reject) =>
      write(fd, all, written, bytes - written, position + written, (err, n) =>
        err ? reject(err) : resolve(n),
      ),
    );
    written += writeFull(n);
  }
}

/** Cleans a tar path to a relative one inside the root; undefined when it climbs out (`../x`). */
export function cleanEntryPath(p: string): string | undefined {
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) return undefined;
      out.pop();
    } else out.push(part);
  }
  return out.join('/');
}

function breakout(path: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid layer: entry ${JSON.stringify(path)} ${why}`, { path });
}

/** Applies one uncompressed tar stream to `target` (an existing directory); rejects the layer on any unsafe entry. */
export async function applyTar(
  input: NodeJS.ReadableStream,
  target: string,
  opts: ApplyOptions = {},
): Promise<ApplyResult> {
  const owner = opts.preserveOwner ?? process.getuid?.() === 0;
  const whiteout = opts.whiteout ?? makeOverlayWhiteout;
  const opaque = opts.opaque ?? makeOverlayOpaque;
  const setXattr = opts.xattr ?? setXattrBytes;
  const tracker = new XattrTracker();
  /** Applies an entry's xattrs (after chown, which clears security.capability); overlay's own names are refused. */
  const applyXattrs = async (abs: string, xattrs: Xattrs | undefined) => {
    for (const [name, value] of xattrs ?? []) {
      if (name.startsWith('trusted.overlay.')) continue;
      await setXattr(abs, name, value);
    }
  };
  const dirs: { abs: string; mode: number; uid: number; gid: number; mtime: Date | undefined }[] = [];
  const opaques = new Set<string>();
  const result: ApplyResult = { size: 0, entries: 0 };
  /** Directories below target known to be real directories (made or checked here); see forget(). */
  const knownDirs = new Set<string>();
  /** Large files whose data is still being written (see writeFile). */
  const jobs = new Set<Promise<void>>();
  let jobError: unknown;
  let inflightBytes = 0;
  let wakeWriter: (() => void) | undefined;

  /** Something at `abs` was removed: it and what was below it are no longer known directories. */
  const forget = (abs: string) => {
    knownDirs.delete(abs);
    const below = `${abs}/`;
    for (const d of knownDirs) if (d.startsWith(below)) knownDirs.delete(d);
  };

  /** Creates the directories of `rel` (relative, cleaned) below target, refusing to pass through a symlink or file. */
  const ensureDir = (rel: string, original: string): string => {
    if (rel === '') return target;
    const full = join(target, rel);
    if (knownDirs.has(full)) return full;
    let cur = target;
    for (const part of rel.split('/')) {
      cur = join(cur, part);
      if (knownDirs.has(cur)) continue;
      const st = lstatSync(cur, { throwIfNoEntry: false });
      if (!st) mkdirSync(cur, { mode: 0o755 });
      else if (st.isSymbolicLink()) throw breakout(original, 'passes through a symbolic link');
      else if (!st.isDirectory()) throw breakout(original, 'passes through a non-directory');
      knownDirs.add(cur);
    }
    return cur;
  };

  const removeExisting = async (abs: string, keepDir: boolean): Promise<boolean> => {
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (!st) return false;
    if (keepDir && st.isDirectory()) return true;
    await fs.rm(abs, { recursive: true, force: true });
    forget(abs);
    return false;
  };

  /** Runs `create`; when something is in the way (EEXIST), removes it and runs `create` again. */
  const replacing = async <T>(abs: string, create: () => T): Promise<T> => {
    try {
      return create();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    await removeExisting(abs, false);
    return create();
  };

  const setMeta = async (abs: string, entry: ReadEntry, chmod: boolean) => {
    if (owner) await fs.lchown(abs, entry.uid ?? 0, entry.gid ?? 0);
    if (chmod) await fs.chmod(abs, (entry.mode ?? 0o644) & 0o7777);
    if (entry.mtime) await fs.lutimes(abs, entry.atime ?? entry.mtime, entry.mtime);
  };

  /** Ownership (first: it clears set-id bits), mode and times of a written file, then closes it. */
  const finishFile = (fd: number, entry: ReadEntry) => {
    try {
      if (owner) fchownSync(fd, entry.uid ?? 0, entry.gid ?? 0);
      fchmodSync(fd, (entry.mode ?? 0o644) & 0o7777);
      if (entry.mtime) futimesSync(fd, entry.atime ?? entry.mtime, entry.mtime);
    } finally {
      closeSync(fd);
    }
  };

  /**
   * A regular file. Creating it and setting its metadata are a few system calls of microseconds each,
   * made directly: through the thread pool each would cost ten times that in hand-offs, and they were
   * what bounded the unpack rate. Small files are written the same way; larger ones in writes of
   * WRITE_BATCH through the thread pool, without waiting for each, and finished in the background
   * (through the descriptor: a later entry that replaces or links the path does not disturb them)
   * while the next entries are read.
   */
  const writeFile = async (abs: string, entry: ReadEntry, xattrs: Xattrs | undefined) => {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const fd = await replacing(abs, () => openSync(abs, flags, 0o600));
    if ((entry.size ?? 0) <= SYNC_WRITE_MAX) {
      try {
        const chunks: Buffer[] = [];
        let bytes = 0;
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          chunks.push(chunk);
          bytes += chunk.length;
        }
        writeAllSync(fd, chunks, 0);
        result.size += bytes;
      } catch (err) {
        closeSync(fd);
        throw err;
      }
      finishFile(fd, entry);
      await applyXattrs(abs, xattrs);
      return;
    }

    const writes: Promise<void>[] = [];
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let position = 0;
    const flush = () => {
      const chunks = batch;
      const bytes = batchBytes;
      const at = position;
      batch = [];
      batchBytes = 0;
      position += bytes;
      inflightBytes += bytes;
      const write = writeAt(fd, chunks, bytes, at).finally(() => {
        inflightBytes -= bytes;
        const wake = wakeWriter;
        wakeWriter = undefined;
        wake?.();
      });
      write.catch(() => undefined);
      writes.push(write);
    };
    const job = (async () => {
      try {
        try {
          for await (const chunk of entry as AsyncIterable<Buffer>) {
            batch.push(chunk);
            batchBytes += chunk.length;
            result.size += chunk.length;
            if (batchBytes >= WRITE_BATCH || batch.length >= 256) {
              flush();
              while (inflightBytes > MAX_INFLIGHT_BYTES) await new Promise<void>((r) => (wakeWriter = r));
            }
          }
          if (batchBytes > 0) flush();
        } finally {
          await Promise.allSettled(writes);
        }
        await Promise.all(writes);
      } catch (err) {
        closeSync(fd);
        throw err;
      }
      finishFile(fd, entry);
    })();
    // The data must be read now, in archive order; the job goes on in the background once it has been.
    const read = new Promise<void>((resolve) => {
      if (entry.emittedEnd) resolve();
      else entry.once('end', () => resolve());
    });
    await Promise.race([read, job.catch(() => undefined)]);
    if (xattrs?.size) {
      await job;
      await applyXattrs(abs, xattrs); // after the chown, which clears security.capability
      return;
    }
    const tracked = job.then(
      () => void jobs.delete(tracked),
      (err: unknown) => {
        jobs.delete(tracked);
        jobError ??= err;
      },
    );
    jobs.add(tracked);
    while (jobs.size >= MAX_JOBS) await Promise.race(jobs);
    if (jobError) throw jobError;
  };

  /** Waits for every file still being written; throws the first failure. */
  const drain = async () => {
    while (jobs.size > 0) await Promise.all(jobs);
    if (jobError) throw jobError;
  };

  const handle = async (entry: ReadEntry): Promise<void> => {
    result.entries++;
    const rel = cleanEntryPath(entry.path);
    if (rel === undefined) throw breakout(entry.path, 'is outside the root');
    if (rel === '') return; // the root itself keeps the target's metadata
    const dirRel = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
    const base = posix.basename(rel);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      const parent = ensureDir(dirRel, entry.path);
      if (base === WHITEOUT_OPAQUE) opaques.add(parent);
      else if (!base.startsWith(WHITEOUT_META_PREFIX)) {
        const name = base.slice(WHITEOUT_PREFIX.length);
        if (name === '' || name === '.' || name === '..')
          throw breakout(entry.path, 'is not a valid whiteout');
        const abs = join(parent, name);
        await removeExisting(abs, false);
        await whiteout(abs);
      }
      return;
    }

    const parent = ensureDir(dirRel, entry.path);
    const abs = join(parent, base);
    const xattrs = tracker.xattrsOf(entry.path);
    switch (entry.type) {
      case 'Directory': {
        try {
          mkdirSync(abs, { mode: 0o700 });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          if (!(await removeExisting(abs, true))) mkdirSync(abs, { mode: 0o700 });
        }
        knownDirs.add(abs);
        await applyXattrs(abs, xattrs);
        dirs.push({
          abs,
          mode: (entry.mode ?? 0o755) & 0o7777,
          uid: entry.uid ?? 0,
          gid: entry.gid ?? 0,
          mtime: entry.mtime,
        });
        return;
      }
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        return writeFile(abs, entry, xattrs);
      case 'SymbolicLink': {
        // The target is kept verbatim: it is resolved inside the instance's root, never here.
        await replacing(abs, () => symlinkSync(entry.linkpath ?? '', abs));
        if (owner) lchownSync(abs, entry.uid ?? 0, entry.gid ?? 0);
        if (entry.mtime) lutimesSync(abs, entry.mtime, entry.mtime);
        await applyXattrs(abs, xattrs);
        return;
      }
      case 'Link': {
        const linkRel = cleanEntryPath(entry.linkpath ?? '');
        if (!linkRel)
          throw breakout(entry.path, `links to ${JSON.stringify(entry.linkpath)} outside the root`);
        const linkParent = posix.dirname(linkRel) === '.' ? '' : posix.dirname(linkRel);
        const src = join(ensureDir(linkParent, entry.path), posix.basename(linkRel));
        const st = lstatSync(src, { throwIfNoEntry: false });
        if (!st) throw breakout(entry.path, `links to missing ${JSON.stringify(entry.linkpath)}`);
        if (st.isDirectory()) throw breakout(entry.path, 'is a hard link to a directory');
        if (xattrs?.size) await drain(); // the linked file's pending chown would clear them
        await replacing(abs, () => linkSync(src, abs));
        await applyXattrs(abs, xattrs);
        return;
      }
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO': {
        await removeExisting(abs, false);
        const kind = entry.type === 'FIFO' ? 'p' : entry.type === 'CharacterDevice' ? 'c' : 'b';
        const h = entry.header as unknown as { devmaj?: number; devmin?: number };
        await mknod(abs, kind, entry.mode ?? 0o600, h.devmaj ?? 0, h.devmin ?? 0);
        await setMeta(abs, entry, true);
        await applyXattrs(abs, xattrs);
        return;
      }
      default:
        return; // GNU dump dirs, sparse and other exotic types carry nothing a root fs needs
    }
  };

  try {
    await readTar(input, handle, { through: tracker, emptyIsValid: true });
    await drain();
  } finally {
    while (jobs.size > 0) await Promise.allSettled(jobs); // no descriptor left open, whatever happened
  }

  for (const dir of opaques) await opaque(dir);
  // Directory metadata last, deepest first (a level at a time), so writing their contents does not change
  // mtimes or lock us out.
  const byDepth = new Map<number, typeof dirs>();
  for (const d of dirs) {
    const depth = d.abs.split('/').length;
    byDepth.set(depth, [...(byDepth.get(depth) ?? []), d]);
  }
  for (const depth of [...byDepth.keys()].sort((a, b) => b - a)) {
    const level = byDepth.get(depth)!;
    for (let i = 0; i < level.length; i += DIR_META_CONCURRENCY) {
      await Promise.all(
        level.slice(i, i + DIR_META_CONCURRENCY).map(async (d) => {
          if (owner) await fs.lchown(d.abs, d.uid, d.gid);
          await fs.chmod(d.abs, d.mode);
          if (d.mtime) await fs.utimes(d.abs, d.mtime, d.mtime);
        }),
      );
    }
  }
  return result;
}
