/** Streaming tar writing for image archives (save): one entry at a time, with backpressure; reading is tar-read.ts. */
import { PassThrough } from 'node:stream';
import { Header, Pax } from 'tar';

/** The mtime of entries in written archives when none is given (docker save uses the epoch too). */
const EPOCH = new Date(0);

/** Writes a tar archive into `stream`, entry by entry; callers await each add so memory stays bounded. */
export class TarWriter {
  readonly stream = new PassThrough({ highWaterMark: 1 << 20 });
  private readonly dirs = new Set<string>();

  private async push(chunk: Buffer): Promise<void> {
    if (this.stream.destroyed) throw new Error('the archive stream was closed');
    if (!this.stream.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          this.stream.off('drain', done);
          this.stream.off('close', closed);
          resolve();
        };
        const closed = () => {
          this.stream.off('drain', done);
          reject(new Error('the archive stream was closed'));
        };
        this.stream.once('drain', done);
        this.stream.once('close', closed);
      });
    }
  }

  private async header(
    path: string,
    type: 'File' | 'Directory' | 'SymbolicLink',
    size: number,
    mode: number,
    linkpath = '',
    mtime = EPOCH,
  ): Promise<void> {
    const fields = { path, mode, uid: 0, gid: 0, size, mtime, type, linkpath, uname: '', gname: '' };
    const header = new Header(fields);
    header.encode();
    if (header.needPax) await this.push(new Pax({ path, linkpath, mtime, size }).encode());
    await this.push(header.block!);
  }

  /** Adds the parent directories of `path` once each (tools that extract archives expect them). */
  private async parents(path: string): Promise<void> {
    const parts = path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (this.dirs.has(dir)) continue;
      this.dirs.add(dir);
      await this.header(`${dir}/`, 'Directory', 0, 0o755);
    }
  }

  /** Adds a file whose bytes are `data`. */
  async addBuffer(path: string, data: Buffer | string, mode = 0o644): Promise<void> {
    const buf = Buffer.from(data);
    await this.parents(path);
    await this.header(path, 'File', buf.length, mode);
    await this.push(buf);
    await this.pad(buf.length);
  }

  /** Adds a file of exactly `size` bytes read from `source`; a source giving another size fails. */
  async addStream(path: string, size: number, source: NodeJS.ReadableStream, mode = 0o644): Promise<void> {
    await this.parents(path);
    await this.header(path, 'File', size, mode);
    let written = 0;
    for await (const chunk of source as AsyncIterable<Buffer>) {
      written += chunk.length;
      if (written > size) throw new Error(`${path}: the source has more than ${size} bytes`);
      await this.push(chunk);
    }
    if (written !== size) throw new Error(`${path}: expected ${size} bytes, got ${written}`);
    await this.pad(size);
  }

  private async pad(size: number): Promise<void> {
    const pad = (512 - (size % 512)) % 512;
    if (pad) await this.push(Buffer.alloc(pad));
  }

  /** Writes the two zero blocks that end an archive and ends the stream. */
  async finish(): Promise<void> {
    await this.push(Buffer.alloc(1024));
    this.stream.end();
  }

  /** Ends the stream with an error (the reader sees a broken archive, never a complete-looking one). */
  fail(err: Error): void {
    this.stream.destroy(err);
  }
}

/** Archive paths compared without `./` or a leading `/`. */
export function archivePath(p: string): string {
  return p.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
}
