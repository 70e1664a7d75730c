/**
 * Extended attributes of layer entries: PAX records `SCHILY.xattr.NAME=VALUE` (values are raw bytes, e.g.
 * `security.capability`). node-tar drops unknown PAX keys and decodes records as UTF-8, so a pass-through
 * Transform reads the headers itself, binary-safe, and queues each entry's attributes by path.
 */
import { Transform } from 'node:stream';

const XATTR_PREFIX = 'SCHILY.xattr.';

/** Attributes by name, raw values. */
export type Xattrs = Map<string, Buffer>;

function cString(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end >= 0 && end < start + len ? end : start + len);
}

function tarNumber(buf: Buffer, start: number, len: number): number {
  if (buf[start]! & 0x80) {
    // base-256 (GNU): big endian, first byte's high bit is the marker
    let n = buf[start]! & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + buf[start + i]!;
    return n;
  }
  const text = cString(buf, start, len).trim();
  return text ? parseInt(text, 8) : 0;
}

/** Parses PAX records (`LEN KEY=VALUE\n`), keeping values as bytes. */
export function parsePaxRecords(body: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < body.length) {
    const space = body.indexOf(0x20, pos);
    if (space < 0) break;
    const len = parseInt(body.toString('ascii', pos, space), 10);
    if (!Number.isFinite(len) || len <= 0 || pos + len > body.length) break;
    const record = body.subarray(space + 1, pos + len - 1); // without the trailing newline
    const eq = record.indexOf(0x3d);
    if (eq > 0) out.set(record.toString('utf8', 0, eq), Buffer.from(record.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

/** Encodes PAX records for the given keys (binary values kept as bytes). */
export function encodePaxRecords(records: Map<string, Buffer | string>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const v = Buffer.from(value);
    const rest = Buffer.byteLength(` ${key}=`) + v.length + 1;
    let len = rest + String(rest).length;
    if (String(len).length !== String(rest).length) len = rest + String(len).length;
    parts.push(Buffer.from(`${len} ${key}=`), v, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** Cleans a path for matching (no `./`, no leading or trailing `/`). */
function key(p: string): string {
  return p
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');
}

/** A pass-through that records each entry's xattrs; `xattrsOf(path)` hands them to the entry's handler. */
export class XattrTracker extends Transform {
  private readonly queue = new Map<string, Xattrs[]>();
  private head = Buffer.alloc(0);
  private skip = 0;
  private collecting: { type: string; need: number; parts: Buffer[]; pad: number } | undefined;
  private pendingPath: string | undefined;
  private pendingXattrs: Xattrs | undefined;
  private pendingSize: number | undefined;
  private globalXattrs: Xattrs | undefined;

  /** The xattrs of the next entry at `path` (in archive order), if it has any. */
  xattrsOf(path: string): Xattrs | undefined {
    const k = key(path);
    const list = this.queue.get(k);
    const x = list?.shift();
    if (list && list.length === 0) this.queue.delete(k);
    return x;
  }

  override _transform(
    chunk: Buffer,
    _enc: BufferEncoding,
    cb: (err?: Error | null, data?: Buffer) => void,
  ): void {
    try {
      this.scan(chunk);
    } catch {
      // a malformed archive is node-tar's to report; stop tracking
      this.skip = Number.POSITIVE_INFINITY;
    }
    cb(null, chunk);
  }

  private scan(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - pos);
        this.skip -= n;
        pos += n;
        continue;
      }
      if (this.collecting) {
        const c = this.collecting;
        const n = Math.min(c.need, chunk.length - pos);
        c.parts.push(chunk.subarray(pos, pos + n));
        c.need -= n;
        pos += n;
        if (c.need === 0) {
          this.collecting = undefined;
          this.skip = c.pad;
          this.meta(c.type, Buffer.concat(c.parts));
        }
        continue;
      }
      const n = Math.min(512 - this.head.length, chunk.length - pos);
      this.head = Buffer.concat([this.head, chunk.subarray(pos, pos + n)]);
      pos += n;
      if (this.head.length === 512) {
        const block = this.head;
        this.head = Buffer.alloc(0);
        this.header(block);
      }
    }
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) return;
    const type = String.fromCharCode(block[156] || 0x30);
    const size = this.pendingSize ?? tarNumber(block, 124, 12);
    const padded = Math.ceil(size / 512) * 512;
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > 16 << 20) {
        this.skip = padded;
        return;
      }
      if (size === 0) return;
      this.collecting = { type, need: size, parts: [], pad: padded - size };
      return;
    }
    let path = this.pendingPath;
    if (path === undefined) {
      const name = cString(block, 0, 100);
      const ustar = block.toString('latin1', 257, 263) === 'ustar\0';
      const prefix = ustar ? cString(block, 345, 155) : '';
      path = prefix ? `${prefix}/${name}` : name;
    }
    const xattrs = new Map([...(this.globalXattrs ?? []), ...(this.pendingXattrs ?? [])]);
    if (xattrs.size > 0) {
      const k = key(path);
      const list = this.queue.get(k) ?? [];
      list.push(xattrs);
      this.queue.set(k, list);
    }
    this.pendingPath = undefined;
    this.pendingXattrs = undefined;
    this.pendingSize = undefined;
    this.skip = padded;
  }

  private meta(type: string, body: Buffer): void {
    if (type === 'L') {
      this.pendingPath = cString(body, 0, body.length);
      return;
    }
    if (type === 'K') return;
    const records = parsePaxRecords(body);
    const xattrs: Xattrs = new Map();
    for (const [k, v] of records) if (k.startsWith(XATTR_PREFIX)) xattrs.set(k.slice(XATTR_PREFIX.length), v);
    if (type === 'g') {
      this.globalXattrs = xattrs.size ? xattrs : undefined;
      return;
    }
    const path = records.get('path');
    if (path) this.pendingPath = path.toString('utf8');
    const size = records.get('size');
    if (size) this.pendingSize = Number(size.toString('ascii'));
    if (xattrs.size) this.pendingXattrs = xattrs;
  }
}
