/**
 * Push: every blob the registry already has in the repository is skipped (HEAD); a blob it has in
 * another repository is mounted (`?mount=&from=`); the others are uploaded, monolithically (one PUT)
 * up to `chunkSize` bytes and in chunks (PATCH with Content-Range, then PUT) above; then the manifest.
 */
import { createReadStream, promises as fs } from 'node:fs';
import { sha256Digest, shortId, type Digest } from '../../core/digest.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { ProgressEvent } from '../../core/image.js';
import { referenceName, type Reference } from '../../core/reference.js';
import type { ContentStore } from '../content-store.js';
import type { Descriptor } from '../oci-image.js';
import type { Credentials } from './auth.js';
import { RegistryClient } from './client.js';

export interface PushContext {
  content: ContentStore;
  credentials: Credentials | undefined;
  tlsVerify?: boolean;
  /** Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size (default 8 MiB). */
  chunkSize?: number;
  concurrency?: number;
  timeoutMs?: number;
}

/** The local image to push: the manifest exactly as stored (its digest stays the same). */
export interface PushSource {
  manifestBytes: Buffer;
  manifestMediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  /** Other repositories on the same registry that hold a blob (for cross-repo mounts). */
  mountFrom: (digest: Digest) => string[];
}

export async function pushImage(
  ctx: PushContext,
  target: Reference & { tag: string },
  src: PushSource,
  onProgress: (e: ProgressEvent) => void,
): Promise<{ digest: string; size: number }> {
  const repo = target.path;
  const name = referenceName(target);
  const blobs = [...src.layers, src.config];
  const sources = new Set<string>();
  for (const b of blobs) for (const r of src.mountFrom(b.digest)) if (r !== repo) sources.add(r);
  const client = await RegistryClient.open(target.domain, {
    credentials: ctx.credentials,
    tlsVerify: ctx.tlsVerify,
    scopes: [`repository:${repo}:pull,push`, ...[...sources].map((r) => `repository:${r}:pull`)],
    timeoutMs: ctx.timeoutMs,
  });
  onProgress({ status: `The push refers to repository [${name}]` });
  const chunkSize = ctx.chunkSize ?? 8 << 20;

  const pushBlob = async (desc: Descriptor, isLayer: boolean) => {
    const id = shortId(desc.digest);
    const what = `blob ${desc.digest} to ${name}`;
    const info = await ctx.content.stat(desc.digest);
    if (!info) throw new Error(`${what}: the blob is missing from the local content store`);
    if (await client.headBlob(repo, desc.digest, what)) {
      if (isLayer) onProgress({ id, status: 'Layer already exists' });
      return;
    }
    let location: URL | undefined;
    for (const from of src.mountFrom(desc.digest)) {
      if (from === repo) continue;
      const r = await client.startUpload(repo, what, { digest: desc.digest, from }).catch(() => undefined);
      if (!r) continue;
      if (r.mounted) {
        if (isLayer) onProgress({ id, status: `Mounted from ${from}` });
        return;
      }
      location = r.location; // the registry declined the mount and opened an upload instead
      break;
    }
    if (!location) {
      const r = await client.startUpload(repo, what);
      if (r.mounted) return;
      location = r.location;
    }
    const path = ctx.content.blobPath(desc.digest);
    const total = info.size;
    if (isLayer) onProgress({ id, status: 'Pushing', progress: { current: 0, total } });
    if (total <= chunkSize) {
      await client.finishUpload(location, desc.digest, what, {
        size: total,
        open: () => createReadStream(path),
      });
    } else {
      const fh = await fs.open(path, 'r');
      try {
        for (let offset = 0; offset < total; offset += chunkSize) {
          const len = Math.min(chunkSize, total - offset);
          const chunk = Buffer.alloc(len);
          const { bytesRead } = await fh.read(chunk, 0, len, offset);
          if (bytesRead !== len) throw new Error(`${what}: short read of the local blob`);
          location = await client.patchChunk(location, chunk, offset, what);
          if (isLayer) onProgress({ id, status: 'Pushing', progress: { current: offset + len, total } });
        }
      } finally {
        await fh.close();
      }
      await client.finishUpload(location, desc.digest, what);
    }
    if (isLayer) onProgress({ id, status: 'Pushed' });
  };

  for (const l of src.layers) onProgress({ id: shortId(l.digest), status: 'Preparing' });
  const limit = Math.max(1, ctx.concurrency ?? 5);
  const queue = [...src.layers];
  const errors: unknown[] = [];
  const worker = async () => {
    for (let l = queue.shift(); l; l = queue.shift()) {
      if (errors.length) return;
      try {
        await pushBlob(l, true);
      } catch (err) {
        errors.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, queue.length) }, worker));
  if (errors.length) throw errors[0];
  await pushBlob(src.config, false);
  const what = `manifest ${name}:${target.tag}`;
  const digest = sha256Digest(src.manifestBytes);
  const theirs = await client.putManifest(repo, target.tag, src.manifestBytes, src.manifestMediaType, what);
  if (theirs && theirs !== digest)
    throw new InvalidArgumentError(`${what}: the registry stored digest ${theirs}, expected ${digest}`);
  return { digest, size: src.manifestBytes.length };
}
