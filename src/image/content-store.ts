/** Content store: blobs by digest under `<root>/content/blobs/sha256/<hex>`, verified on write, committed atomically. */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs, type ReadStream } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { Digester, digestHex, isDigest, type Digest } from '../core/digest.js';
import { InvalidArgumentError, NotFoundError } from '../core/errors.js';

/** What a writer checks before committing; a mismatch aborts the write. */
export interface Expected {
  digest?: Digest;
  size?: number;
}

/** A committed blob. */
export interface BlobInfo {
  digest: Digest;
  size: number;
}

/** An open ingest: write bytes, then commit (verify + rename) or abort; the blob counts as present only after commit. */
export interface ContentWriter {
  /** Where to pipe the bytes; hashing happens as they pass. */
  readonly stream: Writable;
  /** Flushes, verifies digest and size, and renames into place; the temp file is removed on any failure. */
  commit(expected?: Expected): Promise<BlobInfo>;
  /** Drops the temp file; safe to call after commit or twice. */
  abort(): Promise<void>;
}

/**
 * An ingest whose bytes another writer puts into `path` and measures as it writes (a layer worker, which
 * already reads every byte): the store checks what it measured and commits it as a writer's commit would.
 */
export interface ExternalIngest {
  /** The temp file (created empty) for the writer to fill; it must not create, rename or remove it. */
  readonly path: string;
  /**
   * Checks `measured` (what the writer wrote, its file closed) against `expected` and against the file's
   * size, syncs the file and renames it into place; the temp file is removed on any failure.
   */
  commit(measured: BlobInfo, expected?: Expected): Promise<BlobInfo>;
  /** Drops the temp file; safe to call after commit or twice. */
  abort(): Promise<void>;
}

/** Rejects a blob that is not what was expected. */
function verify(got: BlobInfo, expected: Expected): void {
  if (expected.digest && expected.digest !== got.digest) {
    throw new InvalidArgumentError(
      `content digest mismatch: expected ${expected.digest}, got ${got.digest}`,
      {
        expected: expected.digest,
        actual: got.digest,
      },
    );
  }
  if (expected.size !== undefined && expected.size !== got.size) {
    throw new InvalidArgumentError(
      `content size mismatch for ${got.digest}: expected ${expected.size}, got ${got.size}`,
    );
  }
}

/** Blobs by sha256 digest; a bad byte or a crash never leaves a partial blob that counts as present. */
export class ContentStore {
  private readonly blobsDir: string;
  private readonly ingestDir: string;

  constructor(readonly root: string) {
    this.blobsDir = join(root, 'content', 'blobs', 'sha256');
    this.ingestDir = join(root, 'content', 'ingest');
  }

  /** Path of a committed blob (whether or not it exists). */
  blobPath(digest: Digest): string {
    return join(this.blobsDir, digestHex(digest));
  }

  /** Size of a committed blob, or undefined when absent. */
  async stat(digest: Digest): Promise<BlobInfo | undefined> {
    try {
      const st = await fs.stat(this.blobPath(digest));
      return { digest, size: st.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.stat(digest)) !== undefined;
  }

  /** Whole blob in memory (for manifests and configs); NotFoundError when absent. */
  async read(digest: Digest): Promise<Buffer> {
    try {
      return await fs.readFile(this.blobPath(digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new NotFoundError(`content ${digest}: not found`);
      throw err;
    }
  }

  /** A stream of a blob; NotFoundError when absent. */
  async openRead(digest: Digest): Promise<ReadStream> {
    if (!(await this.has(digest))) throw new NotFoundError(`content ${digest}: not found`);
    return createReadStream(this.blobPath(digest));
  }

  /** Starts an ingest into a private temp file. */
  async writer(): Promise<ContentWriter> {
    const tmp = await this.newIngestPath();
    const file = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    const digester = new Digester();
    let done = false;
    let failure: Error | undefined;
    const fileDone = new Promise<void>((resolve, reject) => {
      file.on('close', resolve);
      file.on('error', (err) => {
        failure = err;
        reject(err);
      });
    });
    fileDone.catch(() => undefined);
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        digester.update(chunk);
        if (!file.write(chunk)) file.once('drain', () => cb());
        else cb();
      },
      final(cb) {
        file.end();
        fileDone.then(() => cb(), cb);
      },
      destroy(err, cb) {
        if (!file.closed) file.destroy();
        cb(err);
      },
    });
    const abort = async () => {
      done = true;
      if (!file.closed) {
        const closed = new Promise<void>((resolve) => file.once('close', () => resolve()));
        file.destroy();
        await closed; // a destroyed stream still finishes opening; remove the file only after that
      }
      await fs.rm(tmp, { force: true });
    };
    const commit = async (expected: Expected = {}): Promise<BlobInfo> => {
      if (done) throw new Error('content writer already finished');
      try {
        if (!stream.writableEnded) stream.end();
        await finished(stream);
        await fileDone;
        if (failure) throw failure;
        const digest = digester.digest();
        const size = digester.size;
        verify({ digest, size }, expected);
        await this.place(tmp, digest);
        done = true;
        return { digest, size };
      } catch (err) {
        await abort();
        throw err;
      }
    };
    return { stream, commit, abort };
  }

  /** Starts an ingest that another writer fills and measures (see ExternalIngest). */
  async ingest(): Promise<ExternalIngest> {
    const tmp = await this.makeIngestFile();
    let done = false;
    const abort = async () => {
      done = true;
      await fs.rm(tmp, { force: true });
    };
    const commit = async (measured: BlobInfo, expected: Expected = {}): Promise<BlobInfo> => {
      if (done) throw new Error('content ingest already finished');
      try {
        if (!isDigest(measured.digest)) throw new InvalidArgumentError(`not a digest: ${measured.digest}`);
        verify(measured, expected);
        const st = await fs.stat(tmp);
        if (st.size !== measured.size) {
          throw new InvalidArgumentError(
            `content size mismatch for ${measured.digest}: ${measured.size} bytes measured, ${st.size} in the file`,
          );
        }
        await this.place(tmp, measured.digest);
        done = true;
        return { digest: measured.digest, size: measured.size };
      } catch (err) {
        await abort();
        throw err;
      }
    };
    return { path: tmp, commit, abort };
  }

  /** Creates an empty, private temp file in the ingest directory. */
  private async makeIngestFile(): Promise<string> {
    const tmp = await this.newIngestPath();
    await (await fs.open(tmp, 'wx', 0o644)).close();
    return tmp;
  }

  /** A fresh ingest file's path, with the directories an ingest and its commit need made. */
  private async newIngestPath(): Promise<string> {
    await fs.mkdir(this.ingestDir, { recursive: true });
    await fs.mkdir(this.blobsDir, { recursive: true });
    return this.ingestPath();
  }

  private ingestPath(): string {
    return join(this.ingestDir, `${Date.now()}-${randomBytes(8).toString('hex')}`);
  }

  /** Makes a verified temp file durable, then renames it into place: it counts as present from then on. */
  private async place(tmp: string, digest: Digest): Promise<void> {
    const fh = await fs.open(tmp, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, this.blobPath(digest));
  }

  /** Writes a whole stream or buffer and commits it, verifying `expected`. */
  async write(data: NodeJS.ReadableStream | Buffer | string, expected?: Expected): Promise<BlobInfo> {
    const w = await this.writer();
    try {
      if (typeof data === 'string' || Buffer.isBuffer(data)) {
        w.stream.end(data);
      } else {
        await pipeline(data, w.stream);
      }
      return await w.commit(expected);
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  /** Deletes a blob; absent is fine. */
  async delete(digest: Digest): Promise<void> {
    await fs.rm(this.blobPath(digest), { force: true });
  }

  /** Digests of all committed blobs. */
  async list(): Promise<Digest[]> {
    let names: string[] = [];
    try {
      names = await fs.readdir(this.blobsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return names.map((n) => `sha256:${n}`).filter(isDigest);
  }

  /** Removes leftover ingests (from crashes) older than maxAgeMs. */
  async cleanIngest(maxAgeMs = 60 * 60 * 1000): Promise<void> {
    let names: string[] = [];
    try {
      names = await fs.readdir(this.ingestDir);
    } catch {
      return;
    }
    const now = Date.now();
    for (const n of names) {
      const p = join(this.ingestDir, n);
      const st = await fs.stat(p).catch(() => undefined);
      if (st && now - st.mtimeMs > maxAgeMs) await fs.rm(p, { force: true });
    }
  }
}
