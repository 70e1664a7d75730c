/**
 * docker load: reads a docker-archive (`docker save`: manifest.json, repositories, config and layer tars)
 * or an OCI image layout (oci-layout, index.json, blobs/sha256/…) from one tar stream, told apart by
 * their files. Every file is ingested into the content store as it streams by (hashed on the way) but
 * only committed once the whole archive checked out: a tar that is not an archive, a missing blob or a
 * digest mismatch aborts everything, and a layer that does not unpack to its diff ID removes what this
 * load added.
 */
import { Digester, digestHex, isDigest, sha256Digest, type Digest } from '../../core/digest.js';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { formatReference, parseNormalizedTagged } from '../../core/reference.js';
import type { ContentStore, ContentWriter } from '../content-store.js';
import type { ImageStore } from '../image-store.js';
import { decompressed, hashingStream, type LayerStore } from '../layers.js';
import {
  canonicalJson,
  MediaType,
  parseImageConfig,
  parseManifestOrIndex,
  selectPlatform,
  type Descriptor,
  type ImageConfigDocument,
  type Manifest,
} from '../oci-image.js';
import { isZstd } from '../zstd.js';
import { archivePath } from './tar-stream.js';
import { readTar } from '../tar-read.js';

/** Files up to this size that start like JSON are also kept in memory (manifests, configs, indexes). */
const MAX_DOCUMENT = 4 << 20;

interface ArchiveFile {
  digest: Digest;
  size: number;
  head: Buffer;
  writer: ContentWriter;
  data?: Buffer;
}

/** One image found in an archive, ready to commit. */
interface Candidate {
  config: ImageConfigDocument;
  configDigest: Digest;
  layers: Descriptor[];
  /** The manifest as stored in the archive (OCI), kept byte for byte so its digest stays; else one is made. */
  manifest?: { bytes: Buffer; descriptor: Descriptor };
  refs: string[];
  /** Archive path of each blob this image needs, by digest. */
  blobs: Map<Digest, string>;
}

export interface LoadContext {
  content: ContentStore;
  store: ImageStore;
  layers: LayerStore;
}

export interface LoadResult {
  images: { id: Digest; refs: string[] }[];
  /** docker's lines: `Loaded image: busybox:latest` or `Loaded image ID: sha256:…`. */
  lines: string[];
  format: 'docker-archive' | 'oci';
}

function familiarRef(ref: string): string {
  return ref.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
}

/** A reference as stored (`docker.io/library/busybox:latest`), or undefined when `name` is not one. */
function normalizeRef(name: string | undefined | null): string | undefined {
  if (!name) return undefined;
  try {
    const r = parseNormalizedTagged(name);
    if (r.digest) return undefined;
    return formatReference(r);
  } catch {
    return undefined;
  }
}

function layerMediaType(head: Buffer): string {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return MediaType.OciLayerGzip;
  if (isZstd(head)) return MediaType.OciLayerZstd;
  return MediaType.OciLayer;
}

/** Reads an archive and commits its images; see the module comment. */
export async function loadArchive(ctx: LoadContext, input: NodeJS.ReadableStream): Promise<LoadResult> {
  const files = new Map<string, ArchiveFile>();
  const links = new Map<string, string>();
  const abortAll = async () => {
    for (const f of files.values()) await f.writer.abort();
  };
  try {
    const tar = await decompressed(input); // docker load also takes a gzip- or zstd-compressed archive
    await readTar(tar, async (entry) => {
      const path = archivePath(entry.path);
      if (entry.type === 'SymbolicLink' || entry.type === 'Link') {
        const target =
          entry.type === 'Link'
            ? archivePath(entry.linkpath ?? '')
            : archivePath(
                [...path.split('/').slice(0, -1), ...(entry.linkpath ?? '').split('/')]
                  .reduce<string[]>((acc, p) => {
                    if (p === '..') acc.pop();
                    else if (p !== '.' && p !== '') acc.push(p);
                    return acc;
                  }, [])
                  .join('/'),
              );
        links.set(path, target);
        return;
      }
      if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile') return;
      const writer = await ctx.content.writer();
      const digester = new Digester();
      let head = Buffer.alloc(0);
      const keep: Buffer[] | undefined = (entry.size ?? 0) <= MAX_DOCUMENT ? [] : undefined;
      const previous = files.get(path);
      if (previous) await previous.writer.abort();
      files.set(path, { digest: '' as Digest, size: 0, head, writer });
      const hashing = hashingStream(digester);
      hashing.pipe(writer.stream);
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        if (head.length < 16) head = Buffer.concat([head, chunk.subarray(0, 16 - head.length)]);
        keep?.push(chunk);
        if (!hashing.write(chunk)) await new Promise((resolve) => hashing.once('drain', resolve));
      }
      hashing.end();
      await new Promise<void>((resolve, reject) => {
        writer.stream.once('finish', resolve);
        writer.stream.once('error', reject);
      });
      const data = keep && (head[0] === 0x7b || head[0] === 0x5b) ? Buffer.concat(keep) : undefined;
      files.set(path, { digest: digester.digest(), size: digester.size, head, writer, data });
    });

    const resolveLink = (p: string): string => {
      for (let i = 0; i < 16 && !files.has(p) && links.has(p); i++) p = links.get(p)!;
      return p;
    };
    const file = (p: string, what: string): ArchiveFile => {
      const f = files.get(resolveLink(archivePath(p)));
      if (!f) throw new NotFoundError(`invalid archive: ${what} ${JSON.stringify(p)} is missing`);
      return f;
    };
    const documentOf = (f: ArchiveFile, p: string): Buffer => {
      if (!f.data) throw new InvalidArgumentError(`invalid archive: ${p} is not a JSON document`);
      return f.data;
    };

    let candidates: Candidate[];
    let format: LoadResult['format'];
    if (files.has('manifest.json')) {
      format = 'docker-archive';
      candidates = dockerArchive(files, file, documentOf);
    } else if (files.has('index.json')) {
      format = 'oci';
      candidates = ociLayout(files, file, documentOf);
    } else {
      throw new InvalidArgumentError(
        'invalid archive: not a docker-archive (no manifest.json) or an OCI image layout (no index.json)',
      );
    }
    if (candidates.length === 0) throw new InvalidArgumentError('invalid archive: it holds no image');

    // Commit the blobs the images need; everything else in the archive is dropped.
    const needed = new Map<Digest, string>();
    for (const c of candidates) for (const [d, p] of c.blobs) needed.set(d, p);
    const added: Digest[] = [];
    const usedPaths = new Set<string>();
    for (const [digest, p] of needed) {
      const real = resolveLink(p);
      if (usedPaths.has(real)) continue;
      usedPaths.add(real);
      const f = files.get(real)!;
      const existed = await ctx.content.has(digest);
      await f.writer.commit({ digest, size: f.size });
      if (!existed) added.push(digest);
    }
    await abortAll(); // the rest (commit already finished the used ones; abort is a no-op for them)

    const chainsBefore = new Set(await ctx.layers.list());
    const results: LoadResult['images'] = [];
    try {
      for (const c of candidates) {
        await ctx.layers.ensure(c.layers, c.config.rootfs.diff_ids);
        let manifest = c.manifest;
        if (!manifest) {
          const doc: Manifest = {
            schemaVersion: 2,
            mediaType: MediaType.OciManifest,
            config: {
              mediaType: MediaType.OciConfig,
              digest: c.configDigest,
              size: (await ctx.content.stat(c.configDigest))!.size,
            },
            layers: c.layers,
          };
          const bytes = canonicalJson(doc);
          const existed = await ctx.content.has(sha256Digest(bytes));
          const info = await ctx.content.write(bytes);
          if (!existed) added.push(info.digest);
          manifest = {
            bytes,
            descriptor: { mediaType: MediaType.OciManifest, digest: info.digest, size: info.size },
          };
        }
        results.push({ id: c.configDigest, refs: c.refs });
        c.manifest = manifest;
      }
    } catch (err) {
      for (const chain of (await ctx.layers.list()).reverse())
        if (!chainsBefore.has(chain)) await ctx.layers.delete(chain);
      for (const d of added) await ctx.content.delete(d);
      throw err;
    }

    await ctx.store.update((doc) => {
      for (const c of candidates) {
        const prev = doc.images[c.configDigest];
        doc.images[c.configDigest] = {
          manifest: prev?.manifest ?? c.manifest!.descriptor,
          repoDigests: prev?.repoDigests ?? [],
          added: prev?.added ?? new Date().toISOString(),
        };
        for (const r of c.refs) doc.refs[r] = c.configDigest;
      }
    });
    const lines: string[] = [];
    for (const r of results) {
      if (r.refs.length === 0) lines.push(`Loaded image ID: ${r.id}`);
      for (const ref of r.refs) lines.push(`Loaded image: ${familiarRef(ref)}`);
    }
    return { images: results, lines, format };
  } catch (err) {
    await abortAll();
    throw err;
  }
}

type FileLookup = (p: string, what: string) => ArchiveFile;
type DocumentOf = (f: ArchiveFile, p: string) => Buffer;

/** The docker-archive: manifest.json lists Config, RepoTags and Layers by archive path. */
function dockerArchive(
  files: Map<string, ArchiveFile>,
  file: FileLookup,
  documentOf: DocumentOf,
): Candidate[] {
  let entries: unknown;
  try {
    entries = JSON.parse(documentOf(files.get('manifest.json')!, 'manifest.json').toString('utf8'));
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    throw new InvalidArgumentError('invalid archive: manifest.json is not valid JSON');
  }
  if (!Array.isArray(entries)) throw new InvalidArgumentError('invalid archive: manifest.json is not a list');
  return entries.map((raw, i) => {
    const e = raw as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
    if (typeof e.Config !== 'string' || !Array.isArray(e.Layers))
      throw new InvalidArgumentError(`invalid archive: manifest.json entry ${i} needs Config and Layers`);
    const configFile = file(e.Config, 'config');
    const expected = /(?:^|\/)(?:sha256[:/])?([a-f0-9]{64})(?:\.json)?$/.exec(e.Config);
    if (expected && `sha256:${expected[1]}` !== configFile.digest)
      throw new InvalidArgumentError(
        `invalid archive: config ${e.Config}: digest mismatch: expected sha256:${expected[1]}, got ${configFile.digest}`,
      );
    const config = parseImageConfig(documentOf(configFile, e.Config));
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== e.Layers.length)
      throw new InvalidArgumentError(
        `invalid archive: image ${configFile.digest} has ${e.Layers.length} layers but ${diffIds.length} diff_ids`,
      );
    const blobs = new Map<Digest, string>([[configFile.digest, e.Config]]);
    const layers: Descriptor[] = (e.Layers as unknown[]).map((p, j) => {
      if (typeof p !== 'string') throw new InvalidArgumentError(`invalid archive: layer ${j} is not a path`);
      const f = file(p, 'layer');
      const mediaType = layerMediaType(f.head);
      if (mediaType === MediaType.OciLayer && f.digest !== diffIds[j])
        throw new InvalidArgumentError(
          `invalid archive: layer ${p}: digest mismatch: expected ${diffIds[j]}, got ${f.digest}`,
        );
      blobs.set(f.digest, p);
      return { mediaType, digest: f.digest, size: f.size };
    });
    const refs = (Array.isArray(e.RepoTags) ? (e.RepoTags as unknown[]) : [])
      .map((t) => {
        const r = typeof t === 'string' ? normalizeRef(t) : undefined;
        if (!r) throw new InvalidArgumentError(`invalid archive: bad RepoTags entry ${JSON.stringify(t)}`);
        return r;
      })
      .filter((r, k, all) => all.indexOf(r) === k);
    return { config, configDigest: configFile.digest, layers, refs, blobs };
  });
}

/** The OCI image layout: index.json → manifests (or nested indexes, by platform) → config and layers in blobs/. */
function ociLayout(files: Map<string, ArchiveFile>, file: FileLookup, documentOf: DocumentOf): Candidate[] {
  const blob = (d: Descriptor, what: string): ArchiveFile => {
    if (!isDigest(d.digest))
      throw new InvalidArgumentError(`invalid archive: ${what} has digest ${d.digest}`);
    const p = `blobs/sha256/${digestHex(d.digest)}`;
    const f = file(p, `${what} blob`);
    if (f.digest !== d.digest)
      throw new InvalidArgumentError(
        `invalid archive: ${what} blob ${p}: digest mismatch: expected ${d.digest}, got ${f.digest}`,
      );
    if (f.size !== d.size)
      throw new InvalidArgumentError(
        `invalid archive: ${what} blob ${p}: size mismatch: expected ${d.size}, got ${f.size}`,
      );
    return f;
  };
  const layout = files.get('oci-layout');
  if (layout?.data) {
    const v = (JSON.parse(layout.data.toString('utf8')) as { imageLayoutVersion?: string })
      .imageLayoutVersion;
    if (v && !v.startsWith('1.')) throw new InvalidArgumentError(`unsupported OCI layout version ${v}`);
  }
  const top = parseManifestOrIndex(documentOf(files.get('index.json')!, 'index.json'), MediaType.OciIndex);
  if (top.kind !== 'index')
    throw new InvalidArgumentError('invalid archive: index.json is not an image index');
  const byConfig = new Map<Digest, Candidate>();
  const visit = (d: Descriptor, names: string[], depth: number): void => {
    const f = blob(d, 'manifest');
    const doc = parseManifestOrIndex(documentOf(f, `blobs/sha256/${digestHex(d.digest)}`), d.mediaType);
    if (doc.kind === 'index') {
      if (depth > 3) throw new InvalidArgumentError('invalid archive: image indexes nest too deep');
      return visit(selectPlatform(doc.index), names, depth + 1);
    }
    const m = doc.manifest;
    const configFile = blob(m.config, 'config');
    const config = parseImageConfig(documentOf(configFile, `blobs/sha256/${digestHex(m.config.digest)}`));
    if (config.rootfs.diff_ids.length !== m.layers.length)
      throw new InvalidArgumentError(
        `invalid archive: image ${m.config.digest} has ${m.layers.length} layers but ${config.rootfs.diff_ids.length} diff_ids`,
      );
    const blobs = new Map<Digest, string>([
      [d.digest, `blobs/sha256/${digestHex(d.digest)}`],
      [m.config.digest, `blobs/sha256/${digestHex(m.config.digest)}`],
    ]);
    for (const l of m.layers) {
      blob(l, 'layer');
      blobs.set(l.digest, `blobs/sha256/${digestHex(l.digest)}`);
    }
    const existing = byConfig.get(m.config.digest);
    if (existing) {
      for (const n of names) if (!existing.refs.includes(n)) existing.refs.push(n);
      return;
    }
    byConfig.set(m.config.digest, {
      config,
      configDigest: m.config.digest,
      layers: m.layers,
      manifest: { bytes: f.data!, descriptor: { mediaType: d.mediaType, digest: d.digest, size: d.size } },
      refs: [...names],
      blobs,
    });
  };
  for (const d of top.index.manifests) {
    const a = d.annotations ?? {};
    // containerd's full name first; a ref.name that is only a tag (docker 25, umoci) names nothing.
    const refName = a['org.opencontainers.image.ref.name'];
    const name =
      normalizeRef(a['io.containerd.image.name']) ??
      (refName && /[:/]/.test(refName) ? normalizeRef(refName) : undefined);
    visit(d, name ? [name] : [], 0);
  }
  return [...byConfig.values()];
}
