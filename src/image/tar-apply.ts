/** Applies a layer tar to a directory safely: nothing is written outside it, overlay whiteouts are made for `.wh.` entries. */
import { constants, promises as fs } from 'node:fs';
import { join, posix } from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { InvalidArgumentError } from '../core/errors.js';
import { makeOverlayOpaque, makeOverlayWhiteout, mknod, setXattrBytes } from './fs-ops.js';
import { XattrTracker, type Xattrs } from './tar-xattrs.js';

const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_META_PREFIX = '.wh..wh.';
const WHITEOUT_OPAQUE = '.wh..wh..opq';

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

  /** Creates the directories of `rel` (relative, cleaned) below target, refusing to pass through a symlink or file. */
  const ensureDir = async (rel: string, original: string): Promise<string> => {
    let cur = target;
    for (const part of rel === '' ? [] : rel.split('/')) {
      cur = join(cur, part);
      let st;
      try {
        st = await fs.lstat(cur);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await fs.mkdir(cur, { mode: 0o755 });
        continue;
      }
      if (st.isSymbolicLink()) throw breakout(original, 'passes through a symbolic link');
      if (!st.isDirectory()) throw breakout(original, 'passes through a non-directory');
    }
    return cur;
  };

  const removeExisting = async (abs: string, keepDir: boolean): Promise<boolean> => {
    const st = await fs.lstat(abs).catch(() => undefined);
    if (!st) return false;
    if (keepDir && st.isDirectory()) return true;
    await fs.rm(abs, { recursive: true, force: true });
    return false;
  };

  const setMeta = async (abs: string, entry: ReadEntry, chmod: boolean) => {
    if (owner) await fs.lchown(abs, entry.uid ?? 0, entry.gid ?? 0);
    if (chmod) await fs.chmod(abs, (entry.mode ?? 0o644) & 0o7777);
    if (entry.mtime) await fs.lutimes(abs, entry.atime ?? entry.mtime, entry.mtime);
  };

  const handle = async (entry: ReadEntry): Promise<void> => {
    result.entries++;
    const rel = cleanEntryPath(entry.path);
    if (rel === undefined) throw breakout(entry.path, 'is outside the root');
    if (rel === '') return; // the root itself keeps the target's metadata
    const dirRel = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
    const base = posix.basename(rel);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      const parent = await ensureDir(dirRel, entry.path);
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

    const parent = await ensureDir(dirRel, entry.path);
    const abs = join(parent, base);
    const xattrs = tracker.xattrsOf(entry.path);
    switch (entry.type) {
      case 'Directory': {
        if (!(await removeExisting(abs, true))) await fs.mkdir(abs, { mode: 0o700 });
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
      case 'ContiguousFile': {
        await removeExisting(abs, false);
        const fh = await fs.open(
          abs,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const chunk of entry as AsyncIterable<Buffer>) {
            await fh.write(chunk);
            result.size += chunk.length;
          }
        } finally {
          await fh.close();
        }
        await setMeta(abs, entry, true);
        await applyXattrs(abs, xattrs);
        return;
      }
      case 'SymbolicLink': {
        await removeExisting(abs, false);
        // The target is kept verbatim: it is resolved inside the instance's root, never here.
        await fs.symlink(entry.linkpath ?? '', abs);
        if (owner) await fs.lchown(abs, entry.uid ?? 0, entry.gid ?? 0);
        if (entry.mtime) await fs.lutimes(abs, entry.mtime, entry.mtime);
        await applyXattrs(abs, xattrs);
        return;
      }
      case 'Link': {
        const linkRel = cleanEntryPath(entry.linkpath ?? '');
        if (!linkRel)
          throw breakout(entry.path, `links to ${JSON.stringify(entry.linkpath)} outside the root`);
        const linkParent = posix.dirname(linkRel) === '.' ? '' : posix.dirname(linkRel);
        const src = join(await ensureDir(linkParent, entry.path), posix.basename(linkRel));
        const st = await fs.lstat(src).catch(() => undefined);
        if (!st) throw breakout(entry.path, `links to missing ${JSON.stringify(entry.linkpath)}`);
        if (st.isDirectory()) throw breakout(entry.path, 'is a hard link to a directory');
        await removeExisting(abs, false);
        await fs.link(src, abs);
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

  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({ strict: true });
    let chain = Promise.resolve();
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      const src = input as NodeJS.ReadableStream & { destroy?: () => void };
      tracker.unpipe(parser as unknown as NodeJS.WritableStream);
      src.unpipe(tracker);
      src.destroy?.();
      tracker.destroy();
      const code = String((err as NodeJS.ErrnoException)?.code);
      if (/^TAR_/.test(code))
        reject(new InvalidArgumentError(`invalid tar archive: ${(err as Error).message}`));
      else if (/^Z_/.test(code))
        reject(new InvalidArgumentError(`invalid gzip stream: ${(err as Error).message}`));
      else reject(err);
    };
    parser.on('entry', (entry: ReadEntry) => {
      chain = chain.then(async () => {
        if (failed) return void entry.resume();
        try {
          await handle(entry);
        } catch (err) {
          fail(err);
        }
        entry.resume();
      });
    });
    parser.on('error', fail);
    parser.on('end', () => chain.then(() => (failed ? undefined : resolve())));
    input.on('error', fail);
    input.pipe(tracker).pipe(parser as unknown as NodeJS.WritableStream);
  });

  for (const dir of opaques) await opaque(dir);
  // Directory metadata last, deepest first, so writing their contents does not change mtimes or lock us out.
  for (const d of dirs.reverse()) {
    if (owner) await fs.lchown(d.abs, d.uid, d.gid);
    await fs.chmod(d.abs, d.mode);
    if (d.mtime) await fs.utimes(d.abs, d.mtime, d.mtime);
  }
  return result;
}
