/**
 * Pull: resolve a manifest (OCI or Docker schema 2; an index → platform selection), download the
 * config and the layers in parallel through the content store's verified writer (a broken transfer is
 * resumed with Range), and unpack each layer as soon as it and the ones below it are in.
 */
import { once } from 'node:events';
import { shortId, sha256Digest, type Digest } from '../../core/digest.js';
import { AbodeError, InternalError, InvalidArgumentError, UnavailableError } from '../../core/errors.js';
import type { ProgressEvent } from '../../core/image.js';
import { familiarString, referenceName, type Reference } from '../../core/reference.js';
import type { ContentStore, ContentWriter, Expected, ExternalIngest } from '../content-store.js';
import type { LayerStore, LayerUnpacker } from '../layers.js';
import {
  hostPlatform,
  layerCompression,
  MediaType,
  parseImageConfig,
  parseManifestOrIndex,
  selectPlatform,
  type Descriptor,
  type ImageConfigDocument,
  type Manifest,
  type Platform,
} from '../oci-image.js';
import type { Credentials } from './auth.js';
import { RegistryClient, RegistryError } from './client.js';
import { TransportError } from './http.js';

/** Every manifest media type abode reads, for the Accept header. */
export const MANIFEST_ACCEPT = [
  MediaType.OciIndex,
  MediaType.OciManifest,
  MediaType.DockerManifestList,
  MediaType.DockerManifest,
];

export interface PullContext {
  content: ContentStore;
  layers: LayerStore;
  credentials: Credentials | undefined;
  tlsVerify?: boolean;
  /** Simultaneous layer downloads (docker: 3). */
  concurrency?: number;
  /** Attempts per blob before giving up (default 5). */
  attempts?: number;
  /** Pause before a retry, times the attempt number (ms, default 250). */
  retryDelayMs?: number;
  timeoutMs?: number;
}

/** What a pull fetched: the documents to store (the layers are already committed and unpacked). */
export interface PulledImage {
  /** The platform manifest as the registry sent it. */
  manifest: { bytes: Buffer; descriptor: Descriptor; parsed: Manifest };
  /** The index it was selected from, if the reference named one. */
  index?: { bytes: Buffer; descriptor: Descriptor };
  config: { bytes: Buffer; digest: Digest; parsed: ImageConfigDocument };
  /** The digest the reference resolved to (the index's when there is one): docker's RepoDigest. */
  digest: Digest;
}

/** Parses `os[/arch[/variant]]` (docker's --platform). */
export function parsePlatform(s: string | undefined): Platform {
  const host = hostPlatform();
  if (!s) return host;
  const parts = s.toLowerCase().split('/');
  if (parts.length > 3 || parts.some((p) => p === ''))
    throw new InvalidArgumentError(`invalid platform: ${s}`);
  const alias: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64' };
  const os = parts[0]!;
  const arch = parts[1] ? (alias[parts[1]] ?? parts[1]) : host.architecture;
  const p: Platform = { os, architecture: arch };
  if (parts[2]) p.variant = parts[2];
  else if (arch === 'arm64' && parts.length === 2) p.variant = 'v8';
  return p;
}

function withWhere(err: unknown, where: string): unknown {
  if (err instanceof AbodeError && !err.message.includes(where))
    return new AbodeError(err.code, `${where}: ${err.message}`, err.details);
  return err;
}

/** Parses a manifest or index, naming where it came from in any error. */
function parseDoc(bytes: Buffer, mediaType: string | undefined, where: string) {
  try {
    return parseManifestOrIndex(bytes, mediaType);
  } catch (err) {
    throw withWhere(err, where);
  }
}

export async function pullImage(
  ctx: PullContext,
  ref: Reference,
  platformText: string | undefined,
  onProgress: (e: ProgressEvent) => void,
): Promise<PulledImage> {
  const platform = parsePlatform(platformText);
  const repo = ref.path;
  const name = referenceName(ref);
  const shown = familiarString(ref);
  const client = await RegistryClient.open(ref.domain, {
    credentials: ctx.credentials,
    tlsVerify: ctx.tlsVerify,
    scopes: [`repository:${repo}:pull`],
    timeoutMs: ctx.timeoutMs,
  });
  const reference = ref.digest ?? ref.tag ?? 'latest';
  onProgress({ id: ref.digest ?? ref.tag, status: `Pulling from ${repo}` });

  const fetchManifest = async (r: string, expect: Digest | undefined, what: string) => {
    const got = await client.getManifest(repo, r, MANIFEST_ACCEPT, what);
    const digest = sha256Digest(got.bytes);
    if (expect && digest !== expect) {
      throw new InvalidArgumentError(
        `${what}: digest mismatch: the registry sent content with digest ${digest}`,
      );
    }
    return { ...got, digest };
  };

  const top = await fetchManifest(
    reference,
    ref.digest,
    `manifest ${name}:${reference}`.replace(':sha256', '@sha256'),
  );
  let doc = parseDoc(top.bytes, top.mediaType, `manifest ${shown}`);
  let index: PulledImage['index'];
  let manifestBytes = top.bytes;
  let manifestDesc: Descriptor;
  if (doc.kind === 'index') {
    const indexType = doc.index.mediaType ?? top.mediaType ?? MediaType.OciIndex;
    index = {
      bytes: top.bytes,
      descriptor: { mediaType: indexType, digest: top.digest, size: top.bytes.length },
    };
    let pick: Descriptor;
    try {
      pick = selectPlatform(doc.index, platform);
    } catch (err) {
      throw withWhere(err, shown);
    }
    const m = await fetchManifest(pick.digest, pick.digest, `manifest ${name}@${pick.digest}`);
    if (m.bytes.length !== pick.size)
      throw new InvalidArgumentError(
        `manifest ${name}@${pick.digest}: size ${m.bytes.length} differs from the index's ${pick.size}`,
      );
    doc = parseDoc(m.bytes, m.mediaType ?? pick.mediaType, `manifest ${name}@${pick.digest}`);
    if (doc.kind !== 'manifest')
      throw new InvalidArgumentError(
        `manifest ${name}@${pick.digest}: an index inside an index is not supported`,
      );
    manifestBytes = m.bytes;
    manifestDesc = {
      mediaType: doc.manifest.mediaType ?? pick.mediaType,
      digest: m.digest,
      size: m.bytes.length,
    };
  } else {
    manifestDesc = {
      mediaType: doc.manifest.mediaType ?? top.mediaType ?? MediaType.OciManifest,
      digest: top.digest,
      size: top.bytes.length,
    };
  }
  const manifest = doc.manifest;

  // The config: small, read into memory, verified.
  const configWhat = `config ${manifest.config.digest} of ${name}`;
  const configBytes = await fetchSmallBlob(client, repo, manifest.config, configWhat, ctx);
  let config: ImageConfigDocument;
  try {
    config = parseImageConfig(configBytes);
  } catch (err) {
    throw withWhere(err, configWhat);
  }
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new InvalidArgumentError(
      `${configWhat}: ${config.rootfs.diff_ids.length} diff_ids for ${manifest.layers.length} layers`,
    );
  }
  if (
    platformText &&
    !index &&
    (config.os !== platform.os || config.architecture !== platform.architecture)
  ) {
    throw new InvalidArgumentError(
      `image with reference ${shown} was found but does not match the specified platform: wanted ${platform.os}/${platform.architecture}, actual: ${config.os}/${config.architecture}`,
    );
  }

  // Layers: download in parallel (bounded), largest first (it takes longest to unpack), each unpacked
  // as it arrives.
  const abort = new AbortController();
  const limit = Math.max(1, ctx.concurrency ?? 3);
  const present = await Promise.all(manifest.layers.map((l) => ctx.content.has(l.digest)));
  const missing = manifest.layers.filter((_, i) => !present[i]);
  const bySize = [...missing].sort((a, b) => b.size - a.size);
  ctx.layers.prepareUnpackers(Math.min(limit, missing.length));
  let active = 0;
  const waiting: { size: number; go: () => void }[] = [];
  const pump = () => {
    while (active < limit && waiting.length) {
      let best = 0;
      for (let k = 1; k < waiting.length; k++) if (waiting[k]!.size > waiting[best]!.size) best = k;
      active++;
      waiting.splice(best, 1)[0]!.go();
    }
  };
  const slot = (size: number) => {
    const p = new Promise<void>((go) => waiting.push({ size, go }));
    queueMicrotask(pump);
    return p;
  };
  const release = () => {
    active--;
    pump();
  };
  const downloads = manifest.layers.map(async (layer, i) => {
    const id = shortId(layer.digest);
    if (present[i]) return 'present' as const;
    onProgress({ id, status: 'Pulling fs layer' });
    if (bySize.indexOf(layer) >= limit) onProgress({ id, status: 'Waiting' });
    await slot(layer.size);
    try {
      if (abort.signal.aborted) throw new UnavailableError('cancelled');
      if (await ctx.content.has(layer.digest)) return 'present' as const;
      // Streamed unpack: the bytes go to the content store and, through gunzip, into the layer store at once.
      const chain = chainOf(config.rootfs.diff_ids, i);
      const parent = i > 0 ? chainOf(config.rootfs.diff_ids, i - 1) : undefined;
      const stream = !(await ctx.layers.get(chain));
      await downloadBlob(
        ctx,
        client,
        repo,
        layer,
        `blob ${layer.digest} of ${name}`,
        abort.signal,
        (cur) => onProgress({ id, status: 'Downloading', progress: { current: cur, total: layer.size } }),
        stream
          ? (blobFile) =>
              ctx.layers.unpacker(
                parent,
                layerCompression(layer.mediaType),
                config.rootfs.diff_ids[i]!,
                blobFile,
              )
          : undefined,
        `layer ${layer.digest} of ${name}`,
      );
      onProgress({ id, status: 'Verifying Checksum' });
      onProgress({ id, status: 'Download complete' });
      return 'downloaded' as const;
    } finally {
      release();
    }
  });
  downloads.forEach((d) => d.catch(() => undefined));
  try {
    const diffIds = config.rootfs.diff_ids;
    for (let i = 0; i < manifest.layers.length; i++) {
      const layer = manifest.layers[i]!;
      const id = shortId(layer.digest);
      const how = await downloads[i]!;
      const unpacked = await ctx.layers.get(chainOf(diffIds, i));
      if (how === 'present' && unpacked) {
        onProgress({ id, status: 'Already exists' });
        continue;
      }
      onProgress({ id, status: 'Extracting' });
      try {
        await ctx.layers.ensure(manifest.layers.slice(0, i + 1), diffIds.slice(0, i + 1));
      } catch (err) {
        throw withWhere(err, `layer ${layer.digest} of ${name}`);
      }
      onProgress({ id, status: 'Pull complete' });
    }
  } catch (err) {
    abort.abort();
    await Promise.allSettled(downloads);
    throw err;
  }
  return {
    manifest: { bytes: manifestBytes, descriptor: manifestDesc, parsed: manifest },
    ...(index ? { index } : {}),
    config: { bytes: configBytes, digest: manifest.config.digest, parsed: config },
    digest: index ? index.descriptor.digest : manifestDesc.digest,
  };
}

function chainOf(diffIds: readonly Digest[], i: number): Digest {
  let chain = diffIds[0]!;
  for (let k = 1; k <= i; k++) chain = sha256Digest(`${chain} ${diffIds[k]}`);
  return chain;
}

/** Reads a small blob (a config) into memory, checking digest and size, with retries. */
async function fetchSmallBlob(
  client: RegistryClient,
  repo: string,
  desc: Descriptor,
  what: string,
  ctx: PullContext,
): Promise<Buffer> {
  if (desc.size > 16 << 20)
    throw new InvalidArgumentError(`${what}: ${desc.size} bytes is too large for a config`);
  const attempts = ctx.attempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await client.getBlob(repo, desc.digest, 0, what);
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        for await (const c of res as AsyncIterable<Buffer>) {
          size += c.length;
          if (size > desc.size) {
            res.destroy();
            throw new InvalidArgumentError(
              `${what}: the registry sent more than the ${desc.size} bytes announced`,
            );
          }
          chunks.push(c);
        }
      } catch (err) {
        if (err instanceof AbodeError) throw err;
        throw new TransportError(`${what}: the transfer broke off: ${(err as Error).message}`);
      }
      const bytes = Buffer.concat(chunks);
      if (bytes.length < desc.size)
        throw new TransportError(`${what}: truncated: got ${bytes.length} of ${desc.size} bytes`);
      const got = sha256Digest(bytes);
      if (got !== desc.digest)
        throw new InvalidArgumentError(
          `${what}: digest mismatch: the registry sent content with digest ${got}`,
        );
      return bytes;
    } catch (err) {
      if (!retryable(err) || attempt >= attempts) throw finalError(err, what);
      await sleep((ctx.retryDelayMs ?? 250) * attempt);
    }
  }
}

function retryable(err: unknown): boolean {
  if (err instanceof TransportError) return true;
  return err instanceof RegistryError && err.status >= 500;
}

function finalError(err: unknown, what: string): unknown {
  if (err instanceof TransportError)
    return new UnavailableError(err.message.startsWith(what) ? err.message : `${what}: ${err.message}`);
  return err;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where a downloading blob's bytes go: the content store, and the layer's unpacker when it streams. */
interface BlobTarget {
  /** Takes a chunk, which must not be used afterwards; resolves when more can come. */
  write(chunk: Buffer): Promise<void>;
  /** Verifies the blob against `expected` and commits it. */
  commit(expected: Expected): Promise<void>;
  /** Waits for the streamed unpack, if there is one, which commits the layer. */
  unpacked(): Promise<void>;
  /** Drops whatever is not committed. */
  abort(): Promise<void>;
}

/**
 * With a streamed unpack, the unpacker writes and hashes the blob's ingest file on its own thread (the
 * main thread only hands the bytes over) and the store commits what it measured; else the store's writer.
 */
async function openTarget(
  ctx: PullContext,
  signal: AbortSignal,
  sinkFactory: ((blobFile: string) => LayerUnpacker | undefined) | undefined,
): Promise<BlobTarget> {
  if (sinkFactory) {
    const ingest = await ctx.content.ingest();
    const sink = sinkFactory(ingest.path);
    if (sink) return unpackerTarget(ingest, sink);
    await ingest.abort();
  }
  return writerTarget(await ctx.content.writer(), signal);
}

function writerTarget(w: ContentWriter, signal: AbortSignal): BlobTarget {
  return {
    async write(chunk) {
      if (!w.stream.write(chunk)) await once(w.stream, 'drain', { signal });
    },
    async commit(expected) {
      await w.commit(expected);
    },
    async unpacked() {},
    abort: () => w.abort(),
  };
}

function unpackerTarget(ingest: ExternalIngest, sink: LayerUnpacker): BlobTarget {
  let unpacking = true;
  return {
    write: (chunk) => sink.write(chunk),
    async commit(expected) {
      const measured = await sink.endInput();
      if (!measured) throw new InternalError('the layer unpacker wrote no blob');
      await ingest.commit(measured, expected);
    },
    async unpacked() {
      unpacking = false; // end() removes what it unpacked when it fails
      await sink.end();
    },
    async abort() {
      if (unpacking) await sink.cancel(); // first: the unpacker stops writing the ingest file
      await ingest.abort();
    },
  };
}

/**
 * Streams one blob into the content store; on a broken transfer asks for the rest with
 * `Range: bytes=N-` (starting over when the registry answers 200). The blob's size and digest are
 * verified; on any failure nothing is committed.
 */
async function downloadBlob(
  ctx: PullContext,
  client: RegistryClient,
  repo: string,
  desc: Descriptor,
  what: string,
  signal: AbortSignal,
  onBytes: (current: number) => void,
  sinkFactory?: (blobFile: string) => LayerUnpacker | undefined,
  unpackWhere = what,
): Promise<void> {
  const attempts = ctx.attempts ?? 5;
  let target = await openTarget(ctx, signal, sinkFactory);
  let written = 0;
  let lastReport = 0;
  const report = (force = false) => {
    const now = Date.now();
    if (force || now - lastReport >= 100) {
      lastReport = now;
      onBytes(written);
    }
  };
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await client.getBlob(repo, desc.digest, written, what, signal);
        if (written > 0 && res.statusCode === 200) {
          await target.abort(); // the registry ignored the Range: start over
          target = await openTarget(ctx, signal, sinkFactory);
          written = 0;
        }
        try {
          for await (const chunk of res as AsyncIterable<Buffer>) {
            if (written + chunk.length > desc.size) {
              res.destroy();
              throw new InvalidArgumentError(
                `${what}: the registry sent more than the ${desc.size} bytes announced`,
              );
            }
            written += chunk.length;
            await target.write(chunk);
            report();
          }
        } catch (err) {
          if (err instanceof AbodeError || signal.aborted) throw err;
          throw new TransportError(
            `${what}: the transfer broke off after ${written} bytes: ${(err as Error).message}`,
          );
        }
        if (written < desc.size)
          throw new TransportError(`${what}: truncated: got ${written} of ${desc.size} bytes`);
        break;
      } catch (err) {
        if (signal.aborted) throw err;
        if (!retryable(err) || attempt >= attempts) throw finalError(err, what);
        await sleep((ctx.retryDelayMs ?? 250) * attempt);
      }
    }
    report(true);
    try {
      await target.commit({ digest: desc.digest, size: desc.size });
    } catch (err) {
      // An unpack worker that died is an internal error, not a bad blob.
      if (err instanceof AbodeError && err.code === 'internal') throw withWhere(err, what);
      const m = /got (sha256:[a-f0-9]+)/.exec((err as Error).message);
      throw new InvalidArgumentError(
        m
          ? `${what}: digest mismatch: the registry sent content with digest ${m[1]}`
          : `${what}: ${(err as Error).message}`,
      );
    }
    try {
      await target.unpacked();
    } catch (err) {
      throw withWhere(
        err instanceof AbodeError ? err : new InternalError((err as Error)?.message ?? String(err)),
        unpackWhere,
      );
    }
  } catch (err) {
    await target.abort();
    throw err;
  }
}
