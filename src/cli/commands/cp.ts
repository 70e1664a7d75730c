/** abode cp: copy files between an instance and the host, as docker cp (tar over the archive API). */
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { IncomingMessage } from 'node:http';
import type { Command } from '../args.js';
import { create as createTar, type WriteEntry } from 'tar';
import { AbodeError } from '../../core/errors.js';
import { DaemonUnreachableError, type Client } from '../../client/client.js';
import { connectDaemon } from '../context.js';
import { humanSize } from '../format/units.js';
import { extractSafely, rebase } from '../../core/archive/extract.js';

type Run = (work: () => Promise<number>) => void;

export interface CpFlags {
  archive?: boolean;
  followLink?: boolean;
  quiet?: boolean;
}

/** The daemon's X-Abode-Path-Stat. */
interface PathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

/** A mistake found on this side (docker prints these without "from daemon"). */
class CpError extends Error {}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const isDirMode = (mode: number) => (mode & S_IFMT) === S_IFDIR;

/** docker's splitCpArg: `name:path` is in an instance unless the part before ':' looks like a path. */
export function splitCpArg(arg: string): { instance?: string; path: string } {
  if (arg.startsWith('/')) return { path: arg };
  const colon = arg.indexOf(':');
  if (colon < 0 || arg.slice(0, colon).startsWith('.')) return { path: arg };
  return { instance: arg.slice(0, colon), path: arg.slice(colon + 1) };
}

/** Paths in an instance are relative to its root; trailing `/` and `/.` keep their meaning. */
function instancePath(path: string): string {
  return path.startsWith('/') ? path : `/${path}`;
}

const endsWithDot = (p: string) => /(^|\/)\.$/.test(p);
const endsWithSep = (p: string) => p.endsWith('/') || endsWithDot(p);

function decodeStat(res: IncomingMessage): PathStat {
  const header = res.headers['x-abode-path-stat'];
  if (typeof header !== 'string') throw new CpError('the daemon sent no path stat');
  return JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as PathStat;
}

const archiveUrl = (ref: string) => `/instances/${encodeURIComponent(ref)}/archive`;

/** The stat of a path in an instance (following a final link), undefined when it does not exist. */
async function statRemote(client: Client, ref: string, path: string): Promise<PathStat | undefined> {
  const query = { path, follow: true };
  try {
    const res = await client.stream('HEAD', archiveUrl(ref), { query });
    res.resume();
    return decodeStat(res);
  } catch (error) {
    if (!(error instanceof AbodeError) || error instanceof DaemonUnreachableError) throw error;
  }
  // A HEAD answer has no body, so its error message is lost: ask again with GET to learn it.
  try {
    const res = await client.stream('GET', archiveUrl(ref), { query });
    res.destroy();
    return decodeStat(res);
  } catch (error) {
    if (error instanceof AbodeError && error.code === 'not_found' && error.details?.path !== undefined)
      return undefined;
    throw error;
  }
}

async function localStat(path: string, follow: boolean): Promise<Stats | undefined> {
  try {
    return follow ? await stat(path) : await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function counted(stream: Readable, onBytes: (n: number) => void): Readable {
  stream.on('data', (chunk: Buffer) => onBytes(chunk.length));
  return stream;
}

/** Instance → host. */
async function copyOut(
  client: Client,
  ref: string,
  srcPath: string,
  dest: string,
  flags: CpFlags,
): Promise<number> {
  const res = await client.stream('GET', archiveUrl(ref), {
    query: { path: srcPath, follow: flags.followLink },
  });
  const src = decodeStat(res);
  let bytes = 0;
  if (dest === '-') {
    await pipeline(res, process.stdout).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error; // the reader stopped early (cp … - | head)
    });
    return 0;
  }
  const srcIsDir = isDirMode(src.mode);
  const destStat = await localStat(dest, true);
  let target: string;
  if (!destStat) {
    if (endsWithSep(dest) && !srcIsDir) {
      res.destroy();
      throw new CpError(`no such directory: ${dest}`);
    }
    const parent = await localStat(dirname(resolve(dest)), true);
    if (!parent?.isDirectory()) {
      res.destroy();
      throw new CpError(`no such directory: ${dirname(dest)}`);
    }
    target = resolve(dest);
  } else if (destStat.isDirectory()) {
    target =
      srcIsDir && endsWithDot(srcPath) ? resolve(dest) : resolve(dest, src.name === '/' ? '.' : src.name);
  } else {
    if (srcIsDir) {
      res.destroy();
      throw new CpError(`cannot copy a directory to a file: ${dest}`);
    }
    target = resolve(dest);
  }
  const top = target === '/' ? '.' : basename(target);
  await extractSafely(
    counted(res, (n) => (bytes += n)),
    target === '/' ? '/' : dirname(target),
    {
      preserveOwner: flags.archive ?? false,
      noOverwriteDirNonDir: false,
      rename: top,
      shown: dirname(target),
      error: (message) => new CpError(message),
    },
  );
  if (!flags.quiet && process.stderr.isTTY)
    process.stderr.write(`Successfully copied ${humanSize(bytes)} to ${dest}\n`);
  return 0;
}

/** Host → instance. */
async function copyIn(
  client: Client,
  src: string,
  ref: string,
  destPath: string,
  flags: CpFlags,
): Promise<number> {
  const query = (path: string) => ({ path, noOverwriteDirNonDir: true, copyUIDGID: flags.archive });
  if (src === '-') {
    await client.call('PUT', archiveUrl(ref), { query: query(destPath), bodyStream: process.stdin });
    return 0;
  }
  const srcStat = await localStat(src, flags.followLink ?? false);
  if (!srcStat) throw new CpError(`lstat ${resolve(src)}: no such file or directory`);
  const srcIsDir = srcStat.isDirectory();
  if (endsWithSep(src) && !srcIsDir) throw new CpError(`not a directory: ${src}`);
  // -L follows the source link itself, not links inside a copied tree.
  const source = flags.followLink ? await realpath(src) : resolve(src);

  const dest = await statRemote(client, ref, destPath);
  let putDir: string;
  let name: string | undefined; // undefined: copy a directory's contents
  if (dest && isDirMode(dest.mode)) {
    putDir = destPath;
    name = srcIsDir && endsWithDot(src) ? undefined : basename(source === '/' ? '.' : resolve(src));
  } else if (dest) {
    if (srcIsDir) throw new CpError(`cannot copy a directory to a file: ${destPath}`);
    const real = dest.linkTarget || destPath;
    putDir = posix.dirname(real);
    name = posix.basename(real);
    if (name === '') throw new CpError(`cannot copy to ${destPath}`);
  } else {
    if (endsWithSep(destPath) && !srcIsDir) throw new CpError(`no such directory: ${destPath}`);
    putDir = posix.dirname(destPath.replace(/\/+$/, '')) || '/';
    const parent = await statRemote(client, ref, putDir);
    if (!parent || !isDirMode(parent.mode))
      throw new CpError(`no such directory: ${putDir} in instance ${ref}`);
    name = posix.basename(destPath.replace(/\/+$/, ''));
  }

  const files = name === undefined ? await readdir(source) : [basename(source)];
  if (files.length === 0) return 0;
  const rename = name;
  const pack = createTar(
    {
      cwd: name === undefined ? source : dirname(source),
      portable: !flags.archive,
      follow: false,
      onWriteEntry: (entry: WriteEntry) => {
        if (rename === undefined) return;
        entry.path = rebase(entry.path, rename);
        if (entry.type === 'Link' && entry.linkpath) entry.linkpath = rebase(entry.linkpath, rename);
      },
    },
    files,
  ) as unknown as Readable;
  let bytes = 0;
  await client.call('PUT', archiveUrl(ref), {
    query: query(putDir),
    bodyStream: counted(pack, (n) => (bytes += n)),
  });
  if (!flags.quiet && process.stderr.isTTY)
    process.stderr.write(`Successfully copied ${humanSize(bytes)} to ${ref}:${destPath}\n`);
  return 0;
}

export async function cpCommand(from: string, to: string, flags: CpFlags): Promise<number> {
  try {
    const a = from === '-' ? { path: '-' } : splitCpArg(from);
    const b = to === '-' ? { path: '-' } : splitCpArg(to);
    if (a.instance !== undefined && b.instance !== undefined)
      throw new CpError('copying between containers is not supported');
    if (a.instance === undefined && b.instance === undefined)
      throw new CpError('must specify at least one container source');
    if (a.path === '' || b.path === '') throw new CpError('filepath can not be empty');
    const { client } = await connectDaemon();
    if (a.instance !== undefined)
      return await copyOut(client, a.instance, instancePath(a.path), b.path, flags);
    return await copyIn(client, a.path, b.instance as string, instancePath(b.path), flags);
  } catch (error) {
    const fromDaemon = error instanceof AbodeError && !(error instanceof DaemonUnreachableError);
    process.stderr.write(
      `${fromDaemon ? 'Error response from daemon' : 'Error'}: ${(error as Error).message}\n`,
    );
    return 1;
  }
}

export function registerCp(program: Command, run: Run): void {
  program
    .command('cp')
    .description('Copy files/folders between an instance and the local file system')
    .usage('[OPTIONS] INSTANCE:SRC_PATH DEST_PATH|-\n       abode cp [OPTIONS] SRC_PATH|- INSTANCE:DEST_PATH')
    .argument('<source>', 'INSTANCE:SRC_PATH, SRC_PATH, or - (a tar on stdin)')
    .argument('<destination>', 'DEST_PATH, INSTANCE:DEST_PATH, or - (a tar on stdout)')
    .option('-a, --archive', 'archive mode (copy all uid/gid information)')
    .option('-L, --follow-link', 'always follow symbol link in SRC_PATH')
    .option('-q, --quiet', 'suppress progress output during copy')
    .addHelpText(
      'after',
      [
        '',
        'A directory is copied recursively; SRC_PATH/. copies its contents. With - the data is a tar stream.',
        '',
        'Examples:',
        '  abode cp web:/etc/hostname ./hostname',
        '  abode cp ./site web:/var/www',
        '  abode cp web:/var/log/. ./logs',
        '  abode cp web:/etc - | tar -tv',
      ].join('\n'),
    )
    .action((from: string, to: string, flags: CpFlags) => run(() => cpCommand(from, to, flags)));
}
