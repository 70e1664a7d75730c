/** A cpio "newc" archive writer (the initramfs format the kernel unpacks). */

export interface CpioEntry {
  path: string;
  /** File type and permission bits, e.g. 0o100755 (file), 0o40755 (dir), 0o20600 (char device). */
  mode: number;
  data?: Buffer;
  /** Device numbers for device nodes. */
  rdevMajor?: number;
  rdevMinor?: number;
  /** Symlink target (mode 0o120777). */
  linkTarget?: string;
}

export const CPIO_FILE = 0o100000;
export const CPIO_DIR = 0o40000;
export const CPIO_CHAR = 0o20000;
export const CPIO_SYMLINK = 0o120000;

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function pad4(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}

/** Encodes entries (in order; parents before children) as a newc archive ending with TRAILER!!!. */
export function writeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const put = (e: CpioEntry): void => {
    const body = e.linkTarget !== undefined ? Buffer.from(e.linkTarget) : (e.data ?? Buffer.alloc(0));
    const name = Buffer.from(`${e.path.replace(/^\/+/, '')}\0`);
    const isDir = (e.mode & 0o170000) === CPIO_DIR;
    const header =
      '070701' +
      hex8(e.path === 'TRAILER!!!' ? 0 : ino++) +
      hex8(e.mode) +
      hex8(0) +
      hex8(0) +
      hex8(isDir ? 2 : 1) +
      hex8(0) +
      hex8(body.length) +
      hex8(0) +
      hex8(0) +
      hex8(e.rdevMajor ?? 0) +
      hex8(e.rdevMinor ?? 0) +
      hex8(name.length) +
      hex8(0);
    const head = Buffer.concat([Buffer.from(header, 'latin1'), name]);
    parts.push(head, pad4(head.length), body, pad4(body.length));
  };
  for (const e of entries) put(e);
  put({ path: 'TRAILER!!!', mode: 0 });
  return Buffer.concat(parts);
}
