/**
 * `abode build`: sends the context (minus what .dockerignore excludes) to the daemon as a tar and
 * prints the build's output as it streams back, as docker's classic builder does.
 */
import { createReadStream, promises as fs, type Stats } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { Header, Pax } from 'tar';
import type { Command } from '../args.js';
import { IgnoreMatcher, parseDockerignore } from '../../core/build/dockerignore.js';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { connectDaemon } from '../context.js';
import { humanSize } from '../format/units.js';
import { readJsonLines } from '../../client/json-lines.js';
import { collect } from '../options.js';

type Run = (work: () => Promise<number>) => void;

interface BuildFlags {
  tag?: string[];
  file?: string;
  buildArg?: string[];
  target?: string;
  cache?: boolean;
  noCache?: boolean;
  network?: string;
  quiet?: boolean;
  platform?: string;
}

/** One file of the context tar. */
interface Entry {
  name: string;
  path: string;
  st: Stats;
}

/** The name the Containerfile gets in the tar when it lives outside the context. */
const OUTSIDE_NAME = '.abode-containerfile';

/** Lists the context's files that .dockerignore keeps (the Containerfile and .dockerignore always go). */
export async function contextEntries(dir: string, keep: string[]): Promise<Entry[]> {
  const ignoreText = await fs.readFile(join(dir, '.dockerignore'), 'utf8').catch(() => '');
  const ignore = new IgnoreMatcher(parseDockerignore(ignoreText));
  const out: Entry[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await fs.readdir(rel ? join(dir, rel) : dir)).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const path = join(dir, r);
      const st = await fs.lstat(path);
      const kept = keep.includes(r);
      if (st.isDirectory()) {
        if (ignore.skipsDirectory(r) && !keep.some((k) => k.startsWith(`${r}/`))) continue;
        out.push({ name: r, path, st });
        await walk(r);
      } else if (kept || !ignore.excludes(r)) out.push({ name: r, path, st });
    }
  };
  await walk('');
  return out;
}

function headerBlocks(fields: Record<string, unknown>, path: string, linkpath = ''): Buffer[] {
  const h = new Header({ uname: '', gname: '', ...fields, path, linkpath });
  h.encode();
  const blocks: Buffer[] = [];
  if (h.needPax) blocks.push(new Pax({ path, linkpath, mtime: fields.mtime as Date }).encode());
  blocks.push(h.block!);
  return blocks;
}

/** The context as a tar stream, and its size in bytes. */
export async function contextTar(entries: Entry[]): Promise<{ stream: Readable; size: number }> {
  const links = new Map<string, string>();
  for (const e of entries) if (e.st.isSymbolicLink()) links.set(e.name, await fs.readlink(e.path));
  let size = 1024;
  for (const e of entries) {
    const long = Buffer.byteLength(e.name) > 99 || Buffer.byteLength(links.get(e.name) ?? '') > 99;
    size += 512 + (long ? 1024 + Math.ceil((e.name.length + 100) / 512) * 512 - 512 : 0);
    if (e.st.isFile()) size += Math.ceil(e.st.size / 512) * 512;
  }
  async function* gen(): AsyncGenerator<Buffer> {
    for (const e of entries) {
      const base = { mode: e.st.mode & 0o7777, uid: 0, gid: 0, mtime: e.st.mtime, size: 0 };
      if (e.st.isDirectory()) yield* headerBlocks({ ...base, type: 'Directory' }, `${e.name}/`);
      else if (e.st.isSymbolicLink())
        yield* headerBlocks({ ...base, type: 'SymbolicLink' }, e.name, links.get(e.name));
      else if (e.st.isFile()) {
        yield* headerBlocks({ ...base, type: 'File', size: e.st.size }, e.name);
        let written = 0;
        if (e.st.size > 0) {
          for await (const chunk of createReadStream(e.path, { end: e.st.size - 1 })) {
            const b = chunk as Buffer;
            yield b;
            written += b.length;
          }
        }
        if (written < e.st.size) yield Buffer.alloc(e.st.size - written);
        const pad = (512 - (e.st.size % 512)) % 512;
        if (pad) yield Buffer.alloc(pad);
      }
    }
    yield Buffer.alloc(1024);
  }
  return { stream: Readable.from(gen(), { objectMode: false }), size };
}

/** Reads the daemon's JSON lines: output to `onText`, then the result (or the error, thrown). */
function consume(res: IncomingMessage, onText: (t: string) => void): Promise<{ id: string; tags: string[] }> {
  return readJsonLines(res, (msg) => {
    if (typeof msg.stream === 'string') onText(msg.stream);
  });
}

export function registerBuild(program: Command, run: Run): void {
  program
    .command('build')
    .description('Build an image from a Containerfile (or Dockerfile)')
    .argument('<context>', 'the build context directory')
    .option('-t, --tag <name>', 'name and optionally a tag (NAME[:TAG]); repeatable', collect)
    .option('-f, --file <path>', 'the Containerfile (default CONTEXT/Containerfile, else CONTEXT/Dockerfile)')
    .option('--build-arg <key=value>', 'set a build-time variable; repeatable', collect)
    .option('--target <stage>', 'build up to this stage')
    .option('--no-cache', 'do not use the layer cache')
    .option('-q, --quiet', 'print only the image ID')
    .option('--platform <os/arch>', 'platform of base images that are pulled')
    .option('--network <mode>', "RUN steps' network: none (the default) or host (e.g. for apt-get install)")
    .addHelpText(
      'after',
      '\nExamples:\n  abode build -t app .\n  abode build -t app:2 -f build/Containerfile --build-arg VERSION=2 --target runtime .',
    )
    .action((contextArg: string, flags: BuildFlags) =>
      run(async () => {
        const dir = resolve(contextArg);
        const st = await fs.stat(dir).catch(() => undefined);
        if (!st?.isDirectory())
          throw new NotFoundError(`unable to prepare context: path ${JSON.stringify(contextArg)} not found`);
        let fileInContext: string | undefined;
        if (flags.network !== undefined && flags.network !== 'none' && flags.network !== 'host') {
          throw new InvalidArgumentError(`invalid --network "${flags.network}": want none or host`);
        }
        let outside: string | undefined;
        if (flags.file) {
          const file = resolve(flags.file);
          if (!(await fs.stat(file).catch(() => undefined))?.isFile())
            throw new NotFoundError(
              `unable to prepare context: the Containerfile ${flags.file} does not exist`,
            );
          const rel = relative(dir, file);
          if (rel.startsWith('..') || rel.startsWith(sep)) outside = file;
          else fileInContext = rel.split(sep).join('/');
        } else {
          for (const name of ['Containerfile', 'Dockerfile']) {
            if ((await fs.stat(join(dir, name)).catch(() => undefined))?.isFile()) {
              fileInContext = name;
              break;
            }
          }
          if (!fileInContext)
            throw new NotFoundError(
              `unable to prepare context: no Containerfile or Dockerfile in ${contextArg}`,
            );
        }
        const entries = await contextEntries(dir, [
          ...(fileInContext ? [fileInContext] : []),
          '.dockerignore',
        ]);
        if (outside) entries.push({ name: OUTSIDE_NAME, path: outside, st: await fs.stat(outside) });
        const { stream, size } = await contextTar(entries);
        const quiet = Boolean(flags.quiet);
        if (!quiet) process.stdout.write(`Sending build context to abode daemon  ${humanSize(size)}\n`);
        const { client } = await connectDaemon();
        const res = await client.stream('POST', '/build', {
          query: {
            t: flags.tag ?? [],
            dockerfile: outside ? OUTSIDE_NAME : fileInContext,
            buildarg: (flags.buildArg ?? []).map((a) =>
              a.includes('=') ? a : `${a}=${process.env[a] ?? ''}`,
            ),
            target: flags.target,
            nocache: flags.cache === false || flags.noCache ? '1' : undefined,
            platform: flags.platform,
            networkmode: flags.network,
          },
          bodyStream: stream,
        });
        const result = await consume(res, (text) => {
          if (!quiet) process.stdout.write(text);
        });
        if (quiet) process.stdout.write(`${result.id}\n`);
        return 0;
      }),
    );
}
