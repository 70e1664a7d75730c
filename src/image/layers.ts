/** Unpacked layers: each layer applied once by chain ID into `<root>/layers/<chain hex>/fs`, shared by all images. */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, constants, openSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { createGunzip, type ZlibOptions } from 'node:zlib';
import { Digester, digestHex, isDigestHex, sha256Digest, type Digest } from '../core/digest.js';
import {
  AbodeError,
  AlreadyExistsError,
  ConflictError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from '../core/errors.js';
import type { BlobInfo, ContentStore } from './content-store.js';
import { layerCompression, type Descriptor } from './oci-image.js';
import { applyTar, writeAllSync, type ApplyOptions } from './tar-apply.js';
import { spreadSubdirectories } from '../platform/fs-placement.js';
import { isZstd, zstdDecompress } from './zstd.js';

/** What is recorded beside an unpacked layer in `meta.json`. */
export interface LayerInfo {
  chainId: Digest;
  diffId: Digest;
  parent?: Digest;
  /** Bytes of file contents in this layer. */
  size: number;
}

/** Chain IDs of a layer stack, bottom first: chain(L0) = diff(L0), chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln)). */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) out.push(out.length ? sha256Digest(`${out[out.length - 1]} ${d}`) : d);
  return out;
}

/** A Transform that hashes what passes through. */
export function hashingStream(digester: Digester): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      digester.update(chunk);
      cb(null, chunk);
    },
  });
}

/**
 * The gunzip stage of every layer unpack (a pull's streamed one, a stored blob's, the benchmark's): large
 * output chunks (zlib's default of 16 KiB makes gunzip twice as slow and the unpack issue many small
 * writes; 1 MiB took ~6% less CPU than 256 KiB, each chunk being a thread-pool round trip), and room to
 * decompress ahead while the unpack writes files.
 */
export function gunzipStream(): Transform {
  // zlib passes stream options on to its Transform, though its typings leave them out.
  const streamOptions = { readableHighWaterMark: 4 << 20 } as ZlibOptions;
  return createGunzip({ chunkSize: 1 << 20, ...streamOptions });
}

/** `input` through gunzipStream(), the input's errors passed on to what it returns. */
function gunzipped(input: NodeJS.ReadableStream): Transform {
  const gunzip = gunzipStream();
  input.on('error', (err) => gunzip.destroy(err));
  return input.pipe(gunzip);
}

/** Applies the tar stream to `target` while hashing it: the layer's diff ID and its file bytes. */
async function applyHashed(
  tar: NodeJS.ReadableStream,
  target: string,
  opts: ApplyOptions,
): Promise<{ diffId: Digest; size: number }> {
  const digester = new Digester();
  const hashing = hashingStream(digester);
  tar.on('error', (err) => hashing.destroy(err));
  const applied = await applyTar(tar.pipe(hashing), target, opts);
  return { diffId: digester.digest(), size: applied.size };
}

/** Wraps a possibly gzip-compressed stream so it reads uncompressed, detecting gzip by its magic bytes. */
export async function decompressed(input: NodeJS.ReadableStream): Promise<NodeJS.ReadableStream> {
  const it = (input as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
  let first: IteratorResult<Buffer | string>;
  do first = await it.next();
  while (!first.done && first.value.length === 0);
  if (first.done) throw new InvalidArgumentError('invalid tar archive: the stream is empty');
  const head = Buffer.from(first.value);
  async function* all(): AsyncGenerator<Buffer> {
    yield head;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield Buffer.from(r.value);
    }
  }
  const raw = Readable.from(all(), { objectMode: false });
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = gunzipped(raw);
    gunzip.on('error', () => raw.destroy());
    return gunzip.on('error', () => undefined);
  }
  if (isZstd(head)) return zstdDecompress(raw).on('error', () => undefined);
  return raw;
}

/**
 * A layer unpacked while its (compressed) bytes arrive: write the blob's bytes, then end() for the committed
 * layer (its diff ID checked), or cancel() to drop it; nothing counts as unpacked before end() resolves.
 * Given a content-store ingest file, it also writes the bytes into that file, hashing them.
 */
export interface LayerUnpacker {
  /**
   * Takes `chunk`, which must not be used afterwards (its memory may move to a worker); resolves when the
   * unpacker can take more (or has failed: its error comes out of end()).
   */
  write(chunk: Buffer): Promise<void>;
  /** Ends the input; resolves with what was written to the blob file (closed by then), if there is one. */
  endInput(): Promise<BlobInfo | undefined>;
  /** Ends the input, waits for the unpack and commits the layer under its chain ID. */
  end(): Promise<LayerInfo>;
  /** Abandons the unpack (and stops writing the blob file); its temp directory is removed. */
  cancel(): Promise<void>;
}

/**
 * Unpacking in worker threads. A pull's main thread was the bottleneck (hashing, tar parsing and file
 * creation of every layer at once, all on the one event loop, while the other core idled), so each
 * streamed layer is gunzipped, hashed and applied by a worker of its own; the main thread only hands
 * over the compressed bytes. Workers are kept for reuse (unref'd while idle).
 */
const WORKER_KIND = 'abode-layer-unpack';
/** Compressed bytes handed to a worker but not yet taken in by its gunzip. */
const WORKER_WINDOW = 8 << 20;
/**
 * Compressed bytes handed over in one message, and given to gunzip in one write: per 64 KiB network read,
 * the messages, their acknowledgements and gunzip's thread-pool round trips cost more than joining them.
 */
const WORKER_BATCH = 1 << 20;
/** Idle workers kept for the next pull, for up to IDLE_MS. */
const IDLE_WORKERS = 4;
const IDLE_MS = 60_000;

type ToWorker =
  | {
      t: 'start';
      job: number;
      target: string;
      gzip: boolean;
      preserveOwner: boolean | undefined;
      /** A content-store ingest file to write the (compressed) input into, hashing it. */
      blob?: string;
    }
  | { t: 'data'; job: number; chunks: Uint8Array[] }
  | { t: 'end'; job: number }
  | { t: 'cancel'; job: number };

interface SerializedError {
  message: string;
  code?: string;
  abode?: boolean;
  details?: Record<string, unknown>;
}

type FromWorker =
  | { t: 'ack'; job: number; bytes: number }
  /** The input has ended: what was written to the blob file (closed by then), or why that failed. */
  | { t: 'input'; job: number; blob?: BlobInfo; error?: SerializedError }
  | { t: 'done'; job: number; diffId: Digest; size: number }
  | { t: 'error'; job: number; error: SerializedError };

/**
 * A layer's compressed bytes written into a content-store ingest file and hashed as they pass, by the thread
 * that unpacks them: writing them on the main thread (a write stream, its hashing, a copy for the worker)
 * was a good part of what held up a pull there. Writes are direct: a worker has nothing else to do meanwhile.
 */
class BlobTee {
  private fd: number | undefined;
  private readonly digester = new Digester();
  private failure: unknown;

  /** Opens the file the content store made (never creates one: an aborted ingest stays gone). */
  constructor(path: string) {
    try {
      this.fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
    } catch (err) {
      this.failure = err;
    }
  }

  /** Appends and hashes `chunks`; after a failure, which close() reports, does nothing. */
  write(chunks: readonly Uint8Array[]): void {
    if (this.fd === undefined) return;
    try {
      writeAllSync(this.fd, chunks);
      for (const c of chunks) this.digester.update(c);
    } catch (err) {
      this.failure = err;
      this.discard();
    }
  }

  /** Closes the file: what was written, or the first failure. */
  close(): BlobInfo {
    this.discard();
    if (this.failure) throw this.failure;
    return { digest: this.digester.digest(), size: this.digester.size };
  }

  discard(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function serializeError(err: unknown): SerializedError {
  if (err instanceof AbodeError) {
    let details = err.details;
    try {
      structuredClone(details);
    } catch {
      details = undefined;
    }
    return { abode: true, code: err.code, message: err.message, ...(details ? { details } : {}) };
  }
  const e = err as NodeJS.ErrnoException | undefined;
  return { message: e?.message ?? String(err), ...(typeof e?.code === 'string' ? { code: e.code } : {}) };
}

function deserializeError(s: SerializedError): Error {
  if (s.abode) {
    const classes: Record<string, new (m: string, d?: Record<string, unknown>) => AbodeError> = {
      not_found: NotFoundError,
      already_exists: AlreadyExistsError,
      conflict: ConflictError,
      invalid_argument: InvalidArgumentError,
      unavailable: UnavailableError,
      internal: InternalError,
    };
    const C = classes[s.code ?? ''];
    return C ? new C(s.message, s.details) : new InternalError(s.message, s.details);
  }
  const err = new Error(s.message) as NodeJS.ErrnoException;
  if (s.code) err.code = s.code;
  return err;
}

/** Starts an unpack of `m.target` from a PassThrough that it returns; reports the result for job `m.job`. */
function startApply(m: Extract<ToWorker, { t: 'start' }>, post: (msg: FromWorker) => void): PassThrough {
  const inp = new PassThrough({ highWaterMark: 1 << 20 });
  inp.on('error', () => undefined);
  const tar = m.gzip ? gunzipped(inp) : inp;
  const opts: ApplyOptions = m.preserveOwner === undefined ? {} : { preserveOwner: m.preserveOwner };
  applyHashed(tar, m.target, opts).then(
    (r) => post({ t: 'done', job: m.job, diffId: r.diffId, size: r.size }),
    (err: unknown) => {
      inp.destroy(); // the blob's bytes may still come; they are not unpacked
      post({ t: 'error', job: m.job, error: serializeError(err) });
    },
  );
  return inp;
}

/**
 * The worker's side: one job at a time, its input written to the blob file (if any) and unpacked. The blob
 * goes on after a failed unpack: its digest, checked first, says whether the registry sent bad bytes.
 */
function runUnpackWorker(): void {
  const port = parentPort!;
  const post = (msg: FromWorker) => port.postMessage(msg);
  let job = -1;
  let input: PassThrough | undefined;
  let blob: BlobTee | undefined;
  port.on('message', (m: ToWorker) => {
    if (m.t === 'start') {
      job = m.job;
      blob = m.blob === undefined ? undefined : new BlobTee(m.blob);
      input = startApply(m, post);
      return;
    }
    if (m.job !== job || !input) return;
    const inp = input;
    if (m.t === 'data') {
      blob?.write(m.chunks);
      const data = joined(m.chunks);
      const ack = () => post({ t: 'ack', job: m.job, bytes: data.length });
      if (inp.destroyed) return ack();
      inp.write(data, () => ack());
    } else if (m.t === 'end') {
      if (blob) post(blobResult(m.job, blob));
      blob = undefined;
      if (!inp.destroyed) inp.end();
    } else if (m.t === 'cancel') {
      blob?.discard();
      blob = undefined;
      inp.destroy(new Error('cancelled'));
    }
  });
}

/** The chunks of a message as one Buffer (a copy only when there are several). */
function joined(chunks: readonly Uint8Array[]): Buffer {
  if (chunks.length === 1)
    return Buffer.from(chunks[0]!.buffer, chunks[0]!.byteOffset, chunks[0]!.byteLength);
  return Buffer.concat(chunks);
}

function blobResult(job: number, blob: BlobTee): FromWorker {
  try {
    return { t: 'input', job, blob: blob.close() };
  } catch (err) {
    return { t: 'input', job, error: serializeError(err) };
  }
}

const idleWorkers: Worker[] = [];
let jobCounter = 0;
let idleTimer: NodeJS.Timeout | undefined;

/** Ends the idle workers once none has been used for IDLE_MS. */
function expireIdle(): void {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    for (const w of idleWorkers.splice(0)) void w.terminate();
  }, IDLE_MS);
  idleTimer.unref();
}

function spawnWorker(): Worker {
  return new Worker(new URL(import.meta.url), { workerData: { kind: WORKER_KIND } });
}

function takeWorker(): Worker {
  const w = idleWorkers.pop() ?? spawnWorker();
  w.removeAllListeners('exit');
  w.removeAllListeners('error');
  w.ref();
  return w;
}

/** Parks a worker for reuse; one that dies while parked leaves the pool. */
function park(w: Worker): void {
  w.unref();
  idleWorkers.push(w);
  w.on('error', () => undefined); // it exits too
  w.once('exit', () => {
    const k = idleWorkers.indexOf(w);
    if (k >= 0) idleWorkers.splice(k, 1);
  });
}

function returnWorker(w: Worker): void {
  w.removeAllListeners('message');
  w.removeAllListeners('error');
  w.removeAllListeners('exit');
  if (idleWorkers.length < IDLE_WORKERS) park(w);
  else void w.terminate();
  expireIdle();
}

/** Starts workers ahead of a pull (loading the unpack code takes a few tens of milliseconds). */
function prepareUnpackWorkers(n: number): void {
  while (idleWorkers.length < Math.min(n, IDLE_WORKERS)) park(spawnWorker());
  expireIdle();
}

/** Hands `chunk` over for postMessage: its own memory when it has that alone, else a copy of its own. */
function transferable(chunk: Buffer): Uint8Array<ArrayBuffer> {
  // A chunk that spans its whole ArrayBuffer (as a socket read's does) shares it with nothing else: the
  // HTTP parser gives slices of a read only when it holds more than the body (headers, chunked encoding).
  // Node's pooled buffers are never whole (the pool is larger than what it hands out).
  const ab = chunk.buffer;
  if (ab instanceof ArrayBuffer && chunk.byteOffset === 0 && chunk.byteLength === ab.byteLength)
    return new Uint8Array(ab, 0, chunk.byteLength);
  const copy = new Uint8Array(chunk.length);
  copy.set(chunk);
  return copy;
}

/**
 * Runs one unpack of a tar (gzip or not) into `target` on a worker, which also writes the input to the
 * ingest file `blob` when given one: `input` settles with what it wrote once the input has ended, and
 * `result` once the worker has stopped writing into target, whatever happened.
 */
function workerUnpack(target: string, gzip: boolean, preserveOwner: boolean | undefined, blob?: string) {
  const worker = takeWorker();
  const job = ++jobCounter;
  let inflight = 0;
  let settled = false;
  /** The worker still takes input: it is alive and its unpack or its blob file wants the bytes. */
  let taking = true;
  let alive = true;
  let inputOpen = blob !== undefined;
  let wake: (() => void) | undefined;
  const wakeUp = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  let inputSettle: { resolve: (b: BlobInfo | undefined) => void; reject: (e: unknown) => void };
  const input = new Promise<BlobInfo | undefined>((resolve, reject) => (inputSettle = { resolve, reject }));
  input.catch(() => undefined);
  if (!blob) inputSettle!.resolve(undefined);
  /** Back to the pool once the worker is done with this job's unpack and its blob file. */
  const maybeReturn = () => {
    if (!settled || inputOpen || !alive) return;
    taking = false;
    returnWorker(worker);
  };
  const crashed = (why: string) => {
    alive = false;
    taking = false;
    worker.removeAllListeners('message');
    void worker.terminate();
    wakeUp();
    const err = new InternalError(`layer unpack worker ${why}`);
    if (inputOpen) inputSettle.reject(err);
    inputOpen = false;
    return err;
  };
  const result = new Promise<{ diffId: Digest; size: number }>((resolve, reject) => {
    const finish = () => {
      settled = true;
      taking = inputOpen;
      wakeUp();
      maybeReturn();
    };
    worker.on('message', (m: FromWorker) => {
      if (m.job !== job) return;
      if (m.t === 'ack') {
        inflight -= m.bytes;
        if (inflight <= WORKER_WINDOW) wakeUp();
      } else if (m.t === 'input') {
        inputOpen = false;
        if (m.error) inputSettle.reject(deserializeError(m.error));
        else inputSettle.resolve(m.blob);
        maybeReturn();
      } else if (m.t === 'done') {
        finish();
        resolve({ diffId: m.diffId, size: m.size });
      } else {
        finish();
        reject(deserializeError(m.error));
      }
    });
    const died = (why: string) => {
      if (!alive) return;
      const err = crashed(why);
      if (!settled) reject(err);
      settled = true;
    };
    worker.on('error', (err) => died(`failed: ${err.message}`));
    worker.on('exit', (code) => died(`exited (${code})`));
  });
  result.catch(() => undefined);
  worker.postMessage({
    t: 'start',
    job,
    target,
    gzip,
    preserveOwner,
    ...(blob ? { blob } : {}),
  } satisfies ToWorker);
  let batch: Uint8Array<ArrayBuffer>[] = [];
  let batchBytes = 0;
  const flush = () => {
    if (!batch.length) return;
    const chunks = batch;
    inflight += batchBytes;
    batch = [];
    batchBytes = 0;
    worker.postMessage(
      { t: 'data', job, chunks } satisfies ToWorker,
      chunks.map((c) => c.buffer),
    );
  };
  return {
    result,
    input,
    async write(chunk: Buffer): Promise<void> {
      if (!taking) return;
      const data = transferable(chunk);
      batch.push(data);
      batchBytes += data.byteLength;
      if (batchBytes < WORKER_BATCH) return;
      flush();
      while (inflight > WORKER_WINDOW && taking) await new Promise<void>((r) => (wake = r));
    },
    end(): void {
      if (!alive) return;
      if (taking) flush();
      worker.postMessage({ t: 'end', job } satisfies ToWorker);
    },
    cancel(): void {
      if (!alive) return;
      worker.postMessage({ t: 'cancel', job } satisfies ToWorker);
      if (inputOpen) inputSettle.reject(new UnavailableError('cancelled'));
      inputOpen = false; // the worker closes the file before it reads another message
      taking = false;
      maybeReturn();
    },
  };
}

/** The store of unpacked layers. */
export class LayerStore {
  private readonly dir: string;
  private readonly inflight = new Map<string, Promise<LayerInfo>>();

  constructor(
    root: string,
    private readonly content: ContentStore,
    private readonly applyOptions: ApplyOptions = {},
  ) {
    this.dir = join(root, 'layers');
  }

  /** The directory holding a layer's files (an overlay lowerdir). */
  fsPath(chainId: Digest): string {
    return join(this.dir, digestHex(chainId), 'fs');
  }

  /** The layer's metadata, or undefined when it is not unpacked (a layer counts only once fully unpacked). */
  async get(chainId: Digest): Promise<LayerInfo | undefined> {
    try {
      return JSON.parse(
        await fs.readFile(join(this.dir, digestHex(chainId), 'meta.json'), 'utf8'),
      ) as LayerInfo;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Chain IDs of all unpacked layers. */
  async list(): Promise<Digest[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    return names.filter(isDigestHex).map((n) => `sha256:${n}` as Digest);
  }

  /** Makes sure every layer of an image is unpacked (blobs from the content store); returns their infos bottom first. */
  async ensure(layers: readonly Descriptor[], diffIds: readonly Digest[]): Promise<LayerInfo[]> {
    if (layers.length !== diffIds.length) {
      throw new InvalidArgumentError(`image has ${layers.length} layers but ${diffIds.length} diff_ids`);
    }
    const chains = chainIds(diffIds);
    const out: LayerInfo[] = [];
    for (let i = 0; i < layers.length; i++) {
      const chainId = chains[i]!;
      const have = await this.get(chainId);
      if (have) {
        out.push(have);
        continue;
      }
      let p = this.inflight.get(chainId);
      if (!p) {
        p = this.applyBlob(i ? chains[i - 1] : undefined, layers[i]!, diffIds[i]!).finally(() =>
          this.inflight.delete(chainId),
        );
        this.inflight.set(chainId, p);
      }
      out.push(await p);
    }
    return out;
  }

  /** Unpacks one layer blob from the content store on top of `parent`, checking its diff ID. */
  private async applyBlob(parent: Digest | undefined, desc: Descriptor, diffId: Digest): Promise<LayerInfo> {
    const compression = layerCompression(desc.mediaType);
    const blob = await this.content.openRead(desc.digest);
    let tar: NodeJS.ReadableStream = blob;
    if (compression === 'zstd') tar = zstdDecompress(blob);
    else if (compression === 'gzip') tar = gunzipped(blob);
    return this.apply(parent, tar, diffId);
  }

  /** Applies an uncompressed layer tar on top of `parent` into a fresh directory, then commits it under its chain ID. */
  async apply(
    parent: Digest | undefined,
    tar: NodeJS.ReadableStream,
    expectedDiffId?: Digest,
  ): Promise<LayerInfo> {
    // The stream may fail while the directory is made (zstd rejects a corrupt blob at once): keep the
    // error, which would otherwise have no listener.
    let early: unknown;
    const keep = (err: unknown) => (early ??= err);
    tar.on('error', keep);
    const tmp = await this.makeTemp();
    try {
      if (early) throw early;
      tar.off('error', keep);
      const applied = await applyHashed(tar, join(tmp, 'fs'), this.applyOptions);
      return await this.commit(tmp, parent, applied.diffId, applied.size, expectedDiffId);
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Unpacks a layer from its blob's bytes as they arrive (gzip or uncompressed; undefined for other
   * compressions): in a worker thread, unless the store was given apply hooks, which only run here. With
   * `blobFile` (a content-store ingest), the same thread writes the bytes there too (see endInput()).
   */
  unpacker(
    parent: Digest | undefined,
    compression: string | undefined,
    expectedDiffId?: Digest,
    blobFile?: string,
  ): LayerUnpacker | undefined {
    if (compression !== 'gzip' && compression !== 'none') return undefined;
    const o = this.applyOptions;
    if (o.whiteout || o.opaque || o.xattr)
      return this.localUnpacker(parent, compression, expectedDiffId, blobFile);
    const tmpP = this.makeTemp();
    tmpP.catch(() => undefined);
    let unpack: ReturnType<typeof workerUnpack> | undefined;
    let failed: unknown;
    const started = tmpP.then(
      (tmp) => {
        unpack = workerUnpack(join(tmp, 'fs'), compression === 'gzip', o.preserveOwner, blobFile);
      },
      (err: unknown) => {
        failed = err;
      },
    );
    /** Waits for the worker to stop, then removes the temp directory. */
    const discard = async () => {
      await started;
      if (unpack) await unpack.result.catch(() => undefined);
      const tmp = await tmpP.catch(() => undefined);
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    };
    let ended = false;
    const endInput = async () => {
      await started;
      if (failed || !unpack) throw failed;
      if (!ended) unpack.end();
      ended = true;
      return unpack.input;
    };
    return {
      write: async (chunk) => {
        if (!unpack) await started;
        if (unpack && !ended) await unpack.write(chunk);
      },
      endInput,
      end: async () => {
        await endInput().catch(() => undefined); // a blob file's failure is endInput()'s to report
        const tmp = await tmpP;
        try {
          const r = await unpack!.result;
          return await this.commit(tmp, parent, r.diffId, r.size, expectedDiffId);
        } catch (err) {
          await discard();
          throw err;
        }
      },
      cancel: async () => {
        await started;
        ended = true;
        unpack?.cancel();
        await discard();
      },
    };
  }

  /** Starts the workers for `n` unpackers ahead of time (a pull does, while it fetches the config). */
  prepareUnpackers(n: number): void {
    const o = this.applyOptions;
    if (!(o.whiteout || o.opaque || o.xattr)) prepareUnpackWorkers(n);
  }

  /** unpacker() on this thread. */
  private localUnpacker(
    parent: Digest | undefined,
    compression: 'gzip' | 'none',
    expectedDiffId?: Digest,
    blobFile?: string,
  ): LayerUnpacker {
    // Room for a few network chunks, so that the download does not wait on each one being unpacked.
    const input = new PassThrough({ highWaterMark: 1 << 20 });
    input.on('error', () => undefined);
    const tar: NodeJS.ReadableStream = compression === 'gzip' ? gunzipped(input) : input;
    const blob = blobFile === undefined ? undefined : new BlobTee(blobFile);
    let failed = false;
    const done = this.apply(parent, tar, expectedDiffId).catch((err: unknown) => {
      failed = true;
      input.destroy();
      throw err;
    });
    const settled = done.catch(() => undefined);
    let inputEnded = false;
    let inputDone: Promise<BlobInfo | undefined> | undefined;
    const endInput = () =>
      (inputDone ??= (async () => {
        inputEnded = true;
        if (!failed && !input.destroyed) input.end();
        return blob?.close();
      })());
    return {
      async write(chunk) {
        if (inputEnded) return;
        blob?.write([chunk]); // also after a failed unpack: the blob's digest is checked first
        if (failed || input.destroyed) return;
        if (!input.write(chunk)) await Promise.race([once(input, 'drain').catch(() => undefined), settled]);
      },
      endInput,
      async end() {
        await endInput().catch(() => undefined); // a blob file's failure is endInput()'s to report
        return done;
      },
      async cancel() {
        inputEnded = true;
        blob?.discard();
        if (!input.writableEnded) input.destroy(new Error('cancelled'));
        await settled;
      },
    };
  }

  private prepared?: Promise<unknown>;

  private async makeTemp(): Promise<string> {
    this.prepared ??= fs
      .mkdir(this.dir, { recursive: true })
      .then(() => spreadSubdirectories(this.dir))
      .catch((error: unknown) => {
        this.prepared = undefined;
        throw error;
      });
    await this.prepared;
    const tmp = join(this.dir, `.tmp-${Date.now()}-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(join(tmp, 'fs'), { recursive: true, mode: 0o755 });
    return tmp;
  }

  /** Checks an unpacked layer's diff ID, records it and renames it into place (removes tmp on failure). */
  private async commit(
    tmp: string,
    parent: Digest | undefined,
    diffId: Digest,
    size: number,
    expectedDiffId: Digest | undefined,
  ): Promise<LayerInfo> {
    try {
      if (expectedDiffId && diffId !== expectedDiffId) {
        throw new InvalidArgumentError(`layer diff ID mismatch: expected ${expectedDiffId}, got ${diffId}`);
      }
      const chainId = parent ? sha256Digest(`${parent} ${diffId}`) : diffId;
      const info: LayerInfo = { chainId, diffId, ...(parent ? { parent } : {}), size };
      await fs.writeFile(join(tmp, 'meta.json'), JSON.stringify(info));
      const final = join(this.dir, digestHex(chainId));
      try {
        await fs.rename(tmp, final);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
        await fs.rm(tmp, { recursive: true, force: true }); // unpacked meanwhile by someone else
      }
      return info;
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Deletes an unpacked layer; absent is fine. */
  async delete(chainId: Digest): Promise<void> {
    const dir = join(this.dir, digestHex(chainId));
    const trash = join(this.dir, `.tmp-rm-${randomBytes(6).toString('hex')}`);
    try {
      await fs.rename(dir, trash); // the layer stops counting at once, then goes away
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await fs.rm(trash, { recursive: true, force: true });
  }

  /** Removes leftovers of interrupted unpacks and deletions. */
  async cleanup(): Promise<void> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    for (const n of names)
      if (n.startsWith('.tmp-')) await fs.rm(join(this.dir, n), { recursive: true, force: true });
  }
}

if (!isMainThread && (workerData as { kind?: string } | null)?.kind === WORKER_KIND) runUnpackWorker();
