/**
 * docker save: images as one tar stream, either
 * - docker-archive (`docker save`'s classic layout, read by `docker load`, `podman load`, skopeo's
 *   `docker-archive:`): `<config hex>.json`, `<diff id hex>/layer.tar` (uncompressed, as docker writes it,
 *   checked against the diff ID on the way), `<diff id hex>/VERSION` and `json`, `manifest.json`, `repositories`;
 * - an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`): the stored blobs as they are, each
 *   named manifest annotated with `org.opencontainers.image.ref.name` (the tag, as docker 25 does) and
 *   `io.containerd.image.name` (the full name).
 */
import { createGunzip } from 'node:zlib';
import { Digester, digestHex, sha256Digest, type Digest } from '../../core/digest.js';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { parseNormalizedTagged } from '../../core/reference.js';
import type { ContentStore } from '../content-store.js';
import type { LoadedImage } from '../image-store.js';
import { canonicalJson, layerCompression, MediaType, type Descriptor, type Manifest } from '../oci-image.js';
import { zstdDecompress } from '../zstd.js';
import { TarWriter } from './tar-stream.js';

export type ArchiveFormat = 'docker' | 'oci';

/** One image to save and the references (normalized) to name it by in the archive. */
export interface SaveItem {
  image: LoadedImage;
  refs: string[];
}

/** A layer blob as an uncompressed tar stream. */
async function uncompressed(content: ContentStore, desc: Descriptor): Promise<NodeJS.ReadableStream> {
  const blob = await content.openRead(desc.digest);
  const kind = layerCompression(desc.mediaType);
  if (kind === 'gzip') {
    const gunzip = createGunzip();
    blob.on('error', (err) => gunzip.destroy(err));
    return blob.pipe(gunzip);
  }
  if (kind === 'zstd') return zstdDecompress(blob);
  return blob;
}

/** The uncompressed size of a layer, checking it against its diff ID. */
async function measure(content: ContentStore, desc: Descriptor, diffId: Digest): Promise<number> {
  if (layerCompression(desc.mediaType) === 'none') {
    if (desc.digest !== diffId)
      throw new InvalidArgumentError(
        `layer ${desc.digest}: an uncompressed layer whose digest is not ${diffId}`,
      );
    return (await content.stat(desc.digest))?.size ?? desc.size;
  }
  const digester = new Digester();
  for await (const chunk of (await uncompressed(content, desc)) as AsyncIterable<Buffer>)
    digester.update(chunk);
  if (digester.digest() !== diffId)
    throw new InvalidArgumentError(
      `layer ${desc.digest}: uncompresses to ${digester.digest()}, not ${diffId}`,
    );
  return digester.size;
}

/** OCI media type of a layer (docker's are renamed; the bytes stay). */
function ociLayerType(mediaType: string): string {
  switch (mediaType) {
    case MediaType.DockerLayerGzip:
      return MediaType.OciLayerGzip;
    case MediaType.DockerForeignLayerGzip:
      return MediaType.OciLayerNondistributableGzip;
    default:
      return mediaType;
  }
}

/** Fails before any byte is sent when a blob an image needs is missing from the content store. */
export async function checkBlobs(content: ContentStore, items: SaveItem[]): Promise<void> {
  for (const { image } of items) {
    for (const d of [image.stored.manifest.digest, image.id, ...image.manifest.layers.map((l) => l.digest)]) {
      if (!(await content.has(d)))
        throw new NotFoundError(`image ${image.id}: blob ${d} is missing from the content store`);
    }
  }
}

/** Writes the archive into a stream; errors while writing break the stream (never a complete-looking tar). */
export function saveArchive(
  content: ContentStore,
  items: SaveItem[],
  format: ArchiveFormat,
): NodeJS.ReadableStream {
  const writer = new TarWriter();
  const work = format === 'oci' ? writeOci(content, items, writer) : writeDocker(content, items, writer);
  work.then(
    () => writer.finish(),
    (err: Error) => writer.fail(err),
  );
  return writer.stream;
}

async function writeDocker(content: ContentStore, items: SaveItem[], w: TarWriter): Promise<void> {
  const written = new Set<string>();
  const manifest: { Config: string; RepoTags: string[] | null; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const { image, refs } of items) {
    const configPath = `${digestHex(image.id)}.json`;
    if (!written.has(configPath)) {
      await w.addBuffer(configPath, await content.read(image.id));
      written.add(configPath);
    }
    const diffIds = image.config.rootfs.diff_ids;
    const layers: string[] = [];
    let parent: string | undefined;
    for (let i = 0; i < image.manifest.layers.length; i++) {
      const desc = image.manifest.layers[i]!;
      const dir = digestHex(diffIds[i]!);
      if (!written.has(dir)) {
        const size = await measure(content, desc, diffIds[i]!);
        await w.addStream(`${dir}/layer.tar`, size, await uncompressed(content, desc));
        await w.addBuffer(`${dir}/VERSION`, '1.0');
        await w.addBuffer(`${dir}/json`, JSON.stringify({ id: dir, ...(parent ? { parent } : {}) }));
        written.add(dir);
      }
      layers.push(`${dir}/layer.tar`);
      parent = dir;
    }
    // Full names (as podman writes them): docker load takes them too, and podman would read
    // `busybox:latest` as `localhost/busybox:latest`.
    const tags = [...refs];
    manifest.push({ Config: configPath, RepoTags: tags.length ? tags : null, Layers: layers });
    for (const ref of refs) {
      const r = parseNormalizedTagged(ref);
      const repo = ref.replace(/:[^:/]+$/, '');
      if (r.tag !== undefined && parent) (repositories[repo] ??= {})[r.tag] = parent;
    }
  }
  await w.addBuffer('manifest.json', JSON.stringify(manifest));
  await w.addBuffer('repositories', JSON.stringify(repositories));
}

async function writeOci(content: ContentStore, items: SaveItem[], w: TarWriter): Promise<void> {
  await w.addBuffer('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const written = new Set<string>();
  const index: Descriptor[] = [];
  const blob = async (digest: Digest, bytes?: Buffer) => {
    if (written.has(digest)) return;
    written.add(digest);
    const path = `blobs/sha256/${digestHex(digest)}`;
    if (bytes) return w.addBuffer(path, bytes);
    const info = await content.stat(digest);
    if (!info) throw new InvalidArgumentError(`blob ${digest} is missing from the content store`);
    await w.addStream(path, info.size, await content.openRead(digest));
  };
  for (const { image, refs } of items) {
    let bytes = await content.read(image.stored.manifest.digest);
    let descriptor: Descriptor = { ...image.stored.manifest };
    const m = image.manifest;
    const oci =
      descriptor.mediaType === MediaType.OciManifest &&
      m.config.mediaType === MediaType.OciConfig &&
      m.layers.every((l) => ociLayerType(l.mediaType) === l.mediaType);
    if (!oci) {
      // docker schema 2 → OCI: the same config and layer bytes under OCI media types (as skopeo --format oci).
      const converted: Manifest = {
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, digest: m.config.digest, size: m.config.size },
        layers: m.layers.map((l) => ({ ...l, mediaType: ociLayerType(l.mediaType) })),
        ...(m.annotations ? { annotations: m.annotations } : {}),
      };
      bytes = canonicalJson(converted);
      descriptor = { mediaType: MediaType.OciManifest, digest: sha256Digest(bytes), size: bytes.length };
    }
    await blob(m.config.digest);
    for (const l of m.layers) await blob(l.digest);
    await blob(descriptor.digest, bytes);
    const platform = { architecture: image.config.architecture, os: image.config.os };
    const base = {
      mediaType: descriptor.mediaType,
      digest: descriptor.digest,
      size: descriptor.size,
      platform,
    };
    if (refs.length === 0) index.push(base);
    for (const ref of refs) {
      const r = parseNormalizedTagged(ref);
      index.push({
        ...base,
        annotations: {
          'io.containerd.image.name': ref,
          ...(r.tag !== undefined ? { 'org.opencontainers.image.ref.name': r.tag } : {}),
        },
      });
    }
  }
  await w.addBuffer(
    'index.json',
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: index }),
  );
}
