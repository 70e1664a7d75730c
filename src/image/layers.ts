/** Unpacked layers: each layer applied once by chain ID into `<root>/layers/<chain hex>/fs`, shared by all images. */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { createGunzip, type ZlibOptions } from 'node:zlib';
import { Digester, digestHex, isDigestHex, sha256Digest, type Digest } from '../core/digest.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { ContentStore } from './content-store.js';
import { layerCompression, type Descriptor } from './oci-image.js';
import { applyTar, type ApplyOptions } from './tar-apply.js';
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
 * writes), and room to decompress ahead while the unpack writes files.
 */
export function gunzipStream(): Transform {
  // zlib passes stream options on to its Transform, though its typings leave them out.
  const streamOptions = { readableHighWaterMark: 4 << 20 } as ZlibOptions;
  return createGunzip({ chunkSize: 256 << 10, ...streamOptions });
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
    const gunzip = gunzipStream();
    raw.on('error', (err) => gunzip.destroy(err));
    gunzip.on('error', () => raw.destroy());
    return raw.pipe(gunzip).on('error', () => undefined);
  }
  if (isZstd(head)) return zstdDecompress(raw).on('error', () => undefined);
  return raw;
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
    else if (compression === 'gzip') {
      const gunzip = gunzipStream();
      blob.on('error', (err) => gunzip.destroy(err));
      tar = blob.pipe(gunzip);
    }
    return this.apply(parent, tar, diffId);
  }

  /** Applies an uncompressed layer tar on top of `parent` into a fresh directory, then commits it under its chain ID. */
  async apply(
    parent: Digest | undefined,
    tar: NodeJS.ReadableStream,
    expectedDiffId?: Digest,
  ): Promise<LayerInfo> {
    await fs.mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.tmp-${Date.now()}-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(join(tmp, 'fs'), { recursive: true, mode: 0o755 });
    try {
      const digester = new Digester();
      const hashing = hashingStream(digester);
      tar.on('error', (err) => hashing.destroy(err));
      const applied = await applyTar(tar.pipe(hashing), join(tmp, 'fs'), this.applyOptions);
      const diffId = digester.digest();
      if (expectedDiffId && diffId !== expectedDiffId) {
        throw new InvalidArgumentError(`layer diff ID mismatch: expected ${expectedDiffId}, got ${diffId}`);
      }
      const chainId = parent ? sha256Digest(`${parent} ${diffId}`) : diffId;
      const info: LayerInfo = { chainId, diffId, ...(parent ? { parent } : {}), size: applied.size };
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
