/** A small deterministic tar writer: entries sorted by path, fixed metadata, ustar headers with PAX when needed. */
import { Header, Pax } from 'tar';

export type TarEntry =
  | { type: 'dir'; path: string; mode: number; uid?: number; gid?: number }
  | { type: 'file'; path: string; mode: number; data: Buffer | string; uid?: number; gid?: number }
  | { type: 'symlink'; path: string; target: string; uid?: number; gid?: number }
  | { type: 'hardlink'; path: string; target: string; uid?: number; gid?: number };

/** The mtime written for every entry unless given (2024-01-01T00:00:00Z). */
export const FIXED_MTIME = new Date('2024-01-01T00:00:00Z');

const TYPES = { dir: 'Directory', file: 'File', symlink: 'SymbolicLink', hardlink: 'Link' } as const;

/** Serializes entries into an uncompressed tar; the same input always gives the same bytes. */
export function writeTar(entries: TarEntry[], mtime: Date = FIXED_MTIME): Buffer {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const blocks: Buffer[] = [];
  for (const e of sorted) {
    const data = e.type === 'file' ? Buffer.from(e.data) : Buffer.alloc(0);
    const path = e.type === 'dir' && !e.path.endsWith('/') ? `${e.path}/` : e.path;
    const fields = {
      path,
      mode: e.type === 'symlink' ? 0o777 : e.type === 'hardlink' ? 0o644 : e.mode,
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      size: data.length,
      mtime,
      type: TYPES[e.type],
      linkpath: e.type === 'symlink' || e.type === 'hardlink' ? e.target : '',
      uname: '',
      gname: '',
    };
    const header = new Header(fields);
    header.encode();
    if (header.needPax) blocks.push(new Pax({ path, linkpath: fields.linkpath, mtime }).encode());
    blocks.push(header.block!);
    if (data.length) {
      blocks.push(data);
      const pad = (512 - (data.length % 512)) % 512;
      if (pad) blocks.push(Buffer.alloc(pad));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
