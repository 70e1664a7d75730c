/**
 * The file side of a build: mounting snapshots, finding COPY/ADD sources (globs, .dockerignore),
 * hashing them for the cache, and copying them into a mounted root without leaving it (every
 * destination path is resolved inside the root, as docker cp does).
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs, type Stats } from 'node:fs';
import { basename, join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extract as extractTar } from 'tar';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import type { SourceFile } from '../../core/build/cache-key.js';
import { cleanPath, globRegExp, type IgnoreMatcher } from '../../core/build/dockerignore.js';
import { resolveInRoot } from '../archive.js';

export { mountAll, unmountAll } from '../mounts.js';

/** One source of a COPY/ADD: where it is on the host and how it is named relative to its root. */
export interface Source {
  /** Path relative to the source root (`.` for the root itself). */
  rel: string;
  hostPath: string;
  st: Stats;
}

const GLOB = /[*?[]/;

/** All paths below `root` (relative), skipping what `ignore` excludes. */
async function walkAll(root: string, ignore: IgnoreMatcher | undefined): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    const names = (await fs.readdir(rel ? join(root, rel) : root).catch(() => [] as string[])).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await fs.lstat(join(root, r));
      if (st.isDirectory()) {
        if (!ignore?.skipsDirectory(r)) {
          if (!ignore?.excludes(r)) out.push(r);
          await walk(r);
        }
      } else if (!ignore?.excludes(r)) out.push(r);
    }
  };
  await walk('');
  return out;
}

/** Finds the sources a COPY/ADD names (globs expanded); NotFoundError naming the first one that is missing. */
export async function findSources(
  root: string,
  patterns: string[],
  ignore: IgnoreMatcher | undefined,
): Promise<Source[]> {
  const out: Source[] = [];
  let all: string[] | undefined;
  for (const raw of patterns) {
    const clean = cleanPath(raw);
    if (GLOB.test(clean)) {
      all ??= await walkAll(root, ignore);
      const re = globRegExp(clean, { doubleStar: false });
      const hits = all.filter((p) => re.test(p));
      if (hits.length === 0)
        throw new NotFoundError(`no source files were specified (no match for ${JSON.stringify(raw)})`, {
          path: raw,
        });
      for (const rel of hits)
        out.push({ rel, hostPath: join(root, rel), st: await fs.lstat(join(root, rel)) });
      continue;
    }
    const missing = () =>
      new NotFoundError(
        `file not found in build context or excluded by .dockerignore: stat ${clean}: file does not exist`,
        { path: raw },
      );
    if (clean !== '.' && ignore?.excludes(clean)) throw missing();
    let resolved;
    try {
      resolved = await resolveInRoot(root, `/${clean === '.' ? '' : clean}`, { followFinal: true });
    } catch {
      throw missing();
    }
    if (!resolved.exists) throw missing();
    out.push({ rel: clean, hostPath: resolved.hostPath, st: await fs.stat(resolved.hostPath) });
  }
  return out;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return `sha256:${h.digest('hex')}`;
}

/** What the cache sees of the sources: names, types, modes and content digests below each. */
export async function describeSources(
  sources: Source[],
  ignore: IgnoreMatcher | undefined,
): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  const visit = async (hostPath: string, rel: string, name: string, st: Stats): Promise<void> => {
    if (st.isDirectory()) {
      out.push({ path: name, type: 'dir', mode: st.mode, digest: '' });
      for (const n of (await fs.readdir(hostPath)).sort()) {
        const childRel = rel === '.' ? n : `${rel}/${n}`;
        if (ignore?.excludes(childRel)) continue;
        await visit(join(hostPath, n), childRel, `${name}/${n}`, await fs.lstat(join(hostPath, n)));
      }
    } else if (st.isSymbolicLink())
      out.push({ path: name, type: 'symlink', mode: 0o777, digest: await fs.readlink(hostPath) });
    else if (st.isFile())
      out.push({ path: name, type: 'file', mode: st.mode, digest: await sha256File(hostPath) });
  };
  for (const [i, s] of sources.entries()) await visit(s.hostPath, s.rel, `${i}:${s.rel}`, s.st);
  return out;
}

/** How copied files are owned and moded. */
export interface CopyOptions {
  uid: number;
  gid: number;
  /** --chmod: permission bits for every copied file and directory. */
  mode?: number;
  ignore?: IgnoreMatcher;
  /** ADD: local tar archives (plain or gzip) are extracted instead of copied. */
  extractArchives?: boolean;
}

/** Creates directory `path` (absolute inside root) and its missing parents; returns its resolved host path. */
export async function mkdirIn(root: string, path: string, uid: number, gid: number): Promise<string> {
  let cur = '/';
  let host = root;
  for (const part of path.split('/').filter((p) => p && p !== '.')) {
    const r = await resolveInRoot(root, posix.join(cur, part), { followFinal: true });
    if (!r.exists) {
      await fs.mkdir(r.hostPath, { mode: 0o755 });
      await fs.chmod(r.hostPath, 0o755);
      await fs.lchown(r.hostPath, uid, gid);
    } else if (!(await fs.stat(r.hostPath)).isDirectory())
      throw new InvalidArgumentError(`${posix.join(cur, part)} exists and is not a directory`);
    cur = r.path;
    host = r.hostPath;
  }
  return host;
}

async function isArchive(path: string): Promise<boolean> {
  const fh = await fs.open(path, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    if (bytesRead >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) return true;
    return bytesRead >= 262 && buf.toString('latin1', 257, 262) === 'ustar';
  } finally {
    await fh.close();
  }
}

/** Copies one source entry to `destHost` (a host path inside the root whose parent exists). */
async function copyEntry(
  src: string,
  st: Stats,
  destHost: string,
  rel: string,
  o: CopyOptions,
): Promise<void> {
  const existing = await fs.lstat(destHost).catch(() => undefined);
  if (st.isDirectory()) {
    if (existing && !existing.isDirectory()) await fs.rm(destHost, { force: true });
    if (!existing || !existing.isDirectory()) await fs.mkdir(destHost);
    await copyDirContents(src, destHost, rel, o);
    await fs.chmod(destHost, o.mode ?? st.mode & 0o7777);
    await fs.lchown(destHost, o.uid, o.gid);
    await fs.utimes(destHost, st.atime, st.mtime);
    return;
  }
  if (existing?.isDirectory()) throw new InvalidArgumentError(`cannot replace directory ${rel} with a file`);
  if (existing) await fs.rm(destHost, { force: true });
  if (st.isSymbolicLink()) {
    await fs.symlink(await fs.readlink(src), destHost);
    await fs.lchown(destHost, o.uid, o.gid);
    return;
  }
  if (!st.isFile()) return; // devices, fifos and sockets in a context are not copied
  await fs.copyFile(src, destHost);
  await fs.chmod(destHost, o.mode ?? st.mode & 0o7777);
  await fs.lchown(destHost, o.uid, o.gid);
  await fs.utimes(destHost, st.atime, st.mtime);
}

async function copyDirContents(srcDir: string, destDir: string, rel: string, o: CopyOptions): Promise<void> {
  for (const n of (await fs.readdir(srcDir)).sort()) {
    const childRel = rel === '.' ? n : `${rel}/${n}`;
    if (o.ignore?.excludes(childRel)) continue;
    const st = await fs.lstat(join(srcDir, n));
    await copyEntry(join(srcDir, n), st, join(destDir, n), childRel, o);
  }
}

/**
 * COPY/ADD semantics: a directory's contents go into `dest`; a file goes to `dest` or, when `dest` ends
 * with `/` or is an existing directory, into it; several sources need a `dest/`.
 */
export async function copyInto(root: string, sources: Source[], dest: string, o: CopyOptions): Promise<void> {
  const destIsDir = dest.endsWith('/') || dest.endsWith('/.');
  if (sources.length > 1 && !destIsDir)
    throw new InvalidArgumentError(
      'When using COPY with more than one source file, the destination must be a directory and end with a /',
    );
  for (const s of sources) {
    if (s.st.isDirectory()) {
      const host = await mkdirIn(root, dest, o.uid, o.gid);
      await copyDirContents(s.hostPath, host, s.rel, o);
      continue;
    }
    if (o.extractArchives && s.st.isFile() && (await isArchive(s.hostPath))) {
      const host = await mkdirIn(root, dest, o.uid, o.gid);
      await extractTar({ file: s.hostPath, cwd: host, preserveOwner: true, unlink: true, strict: true });
      continue;
    }
    let target = posix.normalize(dest);
    const resolved = await resolveInRoot(root, target, { followFinal: true }).catch(() => undefined);
    if (destIsDir || (resolved?.exists && (await fs.stat(resolved.hostPath)).isDirectory()))
      target = posix.join(target, basename(s.rel));
    const parent = await mkdirIn(root, posix.dirname(target), o.uid, o.gid);
    await copyEntry(s.hostPath, s.st, join(parent, posix.basename(target)), s.rel, o);
  }
}

/** --chown's `user[:group]`, names looked up in the root's /etc/passwd and /etc/group; a lone user gives gid = uid. */
export async function resolveChown(
  root: string,
  spec: string | undefined,
): Promise<{ uid: number; gid: number }> {
  if (!spec) return { uid: 0, gid: 0 };
  const [user, group] = spec.split(':') as [string, string | undefined];
  const lookup = async (file: string, name: string, what: string): Promise<number> => {
    if (/^\d+$/.test(name)) return Number(name);
    let text = '';
    try {
      const r = await resolveInRoot(root, file, { followFinal: true });
      text = await fs.readFile(r.hostPath, 'utf8');
    } catch {
      // no such file
    }
    for (const line of text.split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2] !== undefined) return Number(f[2]);
    }
    throw new InvalidArgumentError(
      `unable to convert uid/gid chown string to host mapping: can't find ${what} ${name} in ${file}`,
    );
  };
  const uid = await lookup('/etc/passwd', user, 'uid for user');
  const gid = group === undefined ? uid : await lookup('/etc/group', group, 'gid for group');
  return { uid, gid };
}
