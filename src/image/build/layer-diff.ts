/**
 * An overlay upper directory as a layer tar (what docker commit and build do with a container's
 * writable layer): whiteouts (char devices 0/0) become `.wh.NAME`, opaque directories
 * (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry, hard links inside the layer stay links.
 * Entries are written in sorted order, so the same tree gives the same bytes.
 */
import { execFile } from 'node:child_process';
import { createReadStream, promises as fs, type Stats } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { Header, Pax } from 'tar';

const run = promisify(execFile);

/** Directories of `root` marked opaque, as relative paths. */
async function opaqueDirs(root: string): Promise<Set<string>> {
  let stdout = '';
  try {
    ({ stdout } = await run(
      'getfattr',
      ['-R', '-h', '--absolute-names', '-n', 'trusted.overlay.opaque', '-e', 'text', root],
      { maxBuffer: 64 << 20 },
    ));
  } catch (err) {
    // getfattr exits 1 when some files lack the attribute; what it printed still counts.
    stdout = (err as { stdout?: string }).stdout ?? '';
  }
  const out = new Set<string>();
  let file: string | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) file = line.slice(8);
    else if (file && /^trusted\.overlay\.opaque="y"/.test(line)) {
      out.add(file === root ? '' : file.slice(root.length + 1));
    }
  }
  return out;
}

interface Item {
  rel: string;
  st: Stats;
}

async function walk(root: string, rel: string, out: Item[]): Promise<void> {
  const names = (await fs.readdir(join(root, rel))).sort();
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    const st = await fs.lstat(join(root, r));
    out.push({ rel: r, st });
    if (st.isDirectory()) await walk(root, r, out);
  }
}

function header(fields: Record<string, unknown>, path: string, linkpath = ''): Buffer[] {
  const h = new Header({ uname: '', gname: '', ...fields, path, linkpath });
  h.encode();
  const blocks: Buffer[] = [];
  if (h.needPax)
    blocks.push(
      new Pax({ path, linkpath, mtime: fields.mtime as Date, size: fields.size as number }).encode(),
    );
  blocks.push(h.block!);
  return blocks;
}

/** Whether the directory has any entry at all. */
export async function isEmptyDir(dir: string): Promise<boolean> {
  return (await fs.readdir(dir).catch(() => [])).length === 0;
}

/** The layer tar of `upper` (relative paths in `excludeEmptyFiles` are skipped when they are empty files). */
export async function upperDirTar(
  upper: string,
  opts: { excludeEmptyFiles?: string[] } = {},
): Promise<Readable> {
  const items: Item[] = [];
  await walk(upper, '', items);
  const opaque = await opaqueDirs(upper);
  const exclude = new Set(opts.excludeEmptyFiles ?? []);
  const links = new Map<string, string>();
  async function* gen(): AsyncGenerator<Buffer> {
    if (opaque.has('')) yield* header(fileFields(0o644, 0, new Date(0)), '.wh..wh..opq');
    for (const { rel, st } of items) {
      const base = {
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        mtime: st.mtime,
        size: 0,
      };
      const slash = rel.lastIndexOf('/');
      const dir = slash < 0 ? '' : rel.slice(0, slash);
      const name = rel.slice(slash + 1);
      if (st.isCharacterDevice() && st.rdev === 0) {
        yield* header({ ...base, mode: 0o644, type: 'File' }, `${dir ? `${dir}/` : ''}.wh.${name}`);
        continue;
      }
      if (st.isDirectory()) {
        yield* header({ ...base, type: 'Directory' }, `${rel}/`);
        if (opaque.has(rel)) yield* header({ ...base, mode: 0o644, type: 'File' }, `${rel}/.wh..wh..opq`);
        continue;
      }
      if (st.isSymbolicLink()) {
        yield* header(
          { ...base, mode: 0o777, type: 'SymbolicLink' },
          rel,
          await fs.readlink(join(upper, rel)),
        );
        continue;
      }
      if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
        const type = st.isFIFO() ? 'FIFO' : st.isCharacterDevice() ? 'CharacterDevice' : 'BlockDevice';
        const devmaj = Math.floor(st.rdev / 256) & 0xfff;
        const devmin = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
        yield* header({ ...base, type, devmaj, devmin }, rel);
        continue;
      }
      if (!st.isFile()) continue; // sockets are not kept in layers
      if (st.size === 0 && exclude.has(rel)) continue;
      const ino = `${st.dev}:${st.ino}`;
      if (st.nlink > 1) {
        const first = links.get(ino);
        if (first) {
          yield* header({ ...base, type: 'Link' }, rel, first);
          continue;
        }
        links.set(ino, rel);
      }
      yield* header({ ...base, type: 'File', size: st.size }, rel);
      let written = 0;
      for await (const chunk of createReadStream(join(upper, rel), { end: Math.max(0, st.size - 1) })) {
        const b = chunk as Buffer;
        const take = Math.min(b.length, st.size - written);
        if (take <= 0) break;
        yield take === b.length ? b : b.subarray(0, take);
        written += take;
      }
      if (written < st.size) yield Buffer.alloc(st.size - written); // the file shrank meanwhile: keep the tar valid
      const pad = (512 - (st.size % 512)) % 512;
      if (pad) yield Buffer.alloc(pad);
    }
    yield Buffer.alloc(1024);
  }
  return Readable.from(gen(), { objectMode: false });
}

function fileFields(mode: number, size: number, mtime: Date): Record<string, unknown> {
  return { mode, uid: 0, gid: 0, size, mtime, type: 'File' };
}
