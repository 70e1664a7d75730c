/**
 * Safe tar extraction for `cp`: into an instance (the engine) and onto the host (the CLI). It lives in
 * core because core is the one layer both may import.
 */
import { lstatSync, type Stats } from 'node:fs';
import { lchown, lstat, readlink, rename, symlink } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as extractTar, type ReadEntry } from 'tar';
import { AbodeError, InvalidArgumentError } from '../errors.js';

/** Renames the first component of a tar path (`a/b` → `name/b`). */
export function rebase(p: string, name: string): string {
  const slash = p.indexOf('/');
  return slash < 0 ? name : name + p.slice(slash);
}

/** Cleans a relative tar entry path; undefined when absolute or with a `..` component. */
export function safeEntryPath(p: string): string | undefined {
  if (p.startsWith('/') || p.includes('\0')) return undefined;
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.includes('..')) return undefined;
  return parts.join('/');
}

export interface ExtractOptions {
  preserveOwner: boolean;
  noOverwriteDirNonDir: boolean;
  /** Renames every entry's first component (docker's rebase); none keeps the names. */
  rename?: string;
  /** How `dir` is shown in error messages. */
  shown: string;
  /** The error a refusal or a broken archive becomes (default InvalidArgumentError). */
  error?: (message: string) => Error;
}

/**
 * Extracts a tar into `dir` without ever writing outside it: entries that are absolute, climb with
 * `..`, or pass through a symlink (one already under `dir`, or one made earlier by the archive) stop
 * the extraction with an error. node-tar's own checks (preservePaths: false) stay on; as they would
 * rewrite symlink targets (`/bin/busybox` → `bin/busybox`), links are made with a placeholder target
 * and given their real one at the end.
 */
export async function extractSafely(tar: Readable, dir: string, opts: ExtractOptions): Promise<void> {
  const fail = opts.error ?? ((message: string) => new InvalidArgumentError(message));
  const maybeLinks = new Set<string>();
  const symlinks = new Map<string, { target: string; uid?: number; gid?: number }>();
  let refused: Error | undefined;
  const refuse = (entryPath: string, why: string) => {
    refused ??= fail(`refusing to extract ${JSON.stringify(entryPath)}: ${why}`);
    unpack.abort(refused);
    return false;
  };
  // Whether a parent of `rel` is a symlink (made by the archive so far, or already under dir).
  const throughLink = (rel: string): boolean => {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (maybeLinks.has(parent)) return true;
      try {
        if (lstatSync(join(dir, parent)).isSymbolicLink()) return true;
      } catch {
        // missing: it will be made as a directory
      }
    }
    return false;
  };
  const unpack = extractTar({
    cwd: dir,
    preservePaths: false,
    unlink: true,
    strict: true,
    chmod: true,
    processUmask: 0,
    preserveOwner: opts.preserveOwner,
    filter: (entryPath: string, stat: ReadEntry | Stats) => {
      const entry = stat as ReadEntry;
      if (refused) return false;
      const rel = safeEntryPath(opts.rename === undefined ? entryPath : rebase(entryPath, opts.rename));
      if (rel === undefined) return refuse(entryPath, 'absolute or outside the destination');
      if (rel === '') return false;
      entry.path = rel;
      if (throughLink(rel)) return refuse(entryPath, 'a parent is a symbolic link');
      if (entry.type === 'Link') {
        const raw = String(entry.linkpath ?? '');
        const target = safeEntryPath(opts.rename === undefined ? raw : rebase(raw, opts.rename));
        if (!target || throughLink(target) || maybeLinks.has(target))
          return refuse(entryPath, 'hard link target outside the destination');
        entry.linkpath = target;
      }
      symlinks.delete(rel);
      // A hard link may be to a symlink: nothing may be written under either.
      if (entry.type === 'SymbolicLink' || entry.type === 'Link') maybeLinks.add(rel);
      else maybeLinks.delete(rel);
      if (entry.type === 'SymbolicLink') {
        symlinks.set(rel, { target: String(entry.linkpath ?? ''), uid: entry.uid, gid: entry.gid });
        entry.linkpath = '.';
      }
      if (opts.noOverwriteDirNonDir) {
        let existing: Stats | undefined;
        try {
          existing = lstatSync(join(dir, rel));
        } catch {
          existing = undefined;
        }
        const isDir = entry.type === 'Directory';
        const shown = posix.join(opts.shown, rel);
        if (existing?.isDirectory() && !isDir)
          return refuse(entryPath, `cannot overwrite directory "${shown}" with non-directory`);
        if (existing && !existing.isDirectory() && isDir)
          return refuse(entryPath, `cannot overwrite non-directory "${shown}" with directory`);
      }
      return true;
    },
  });
  try {
    await pipeline(tar, unpack as unknown as NodeJS.WritableStream);
  } catch (error) {
    if (refused) throw refused;
    if (error instanceof AbodeError) throw error;
    throw fail(`cannot extract the archive: ${(error as Error).message}`);
  } finally {
    await retarget(dir, symlinks, throughLink, opts.preserveOwner);
  }
  if (refused) throw refused;
}

/** Gives the placeholder links made by extractSafely their real targets (also after a failure). */
async function retarget(
  dir: string,
  symlinks: Map<string, { target: string; uid?: number; gid?: number }>,
  throughLink: (rel: string) => boolean,
  preserveOwner: boolean,
): Promise<void> {
  for (const [rel, link] of symlinks) {
    const at = join(dir, rel);
    if (throughLink(rel)) continue;
    const st = await lstat(at).catch(() => undefined);
    if (!st?.isSymbolicLink() || (await readlink(at)) !== '.') continue;
    const tmp = join(dirname(at), `.abode-link-${process.pid}-${Math.random().toString(36).slice(2)}`);
    await symlink(link.target, tmp);
    if (preserveOwner && link.uid !== undefined && link.gid !== undefined)
      await lchown(tmp, link.uid, link.gid).catch(() => undefined);
    await rename(tmp, at);
  }
}
