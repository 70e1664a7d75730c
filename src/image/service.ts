/** The local ImageService: content store + image index + unpacked layers, with the built-in busybox and docker import. */
import { Transform } from 'node:stream';
import { finished } from 'node:stream/promises';
import { join } from 'node:path';
import { createGzip, gzipSync } from 'node:zlib';
import { isDigest, sha256Digest, shortId, type Digest } from '../core/digest.js';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../core/errors.js';
import type {
  CommitLayerOptions,
  ImageConfig,
  ImageRecord,
  ImageService,
  ImportOptions,
  LayerCommitter,
  LoginOptions,
  ProgressEvent,
  PullOptions,
  PushOptions,
  RemoveOptions,
} from '../core/image.js';
import { CredentialStore, DOCKER_HUB_KEY, serverKey } from './registry/auth.js';
import { RegistryClient } from './registry/client.js';
import { pullImage, type PullContext } from './registry/pull.js';
import { pushImage, type PushContext } from './registry/push.js';
import {
  DEFAULT_DOMAIN,
  familiarString,
  formatReference,
  parseNormalizedTagged,
  parseReference,
  referenceName,
  type Reference,
} from '../core/reference.js';
import { BUSYBOX_REF, buildBusybox, type BuiltinImage } from './builtin/busybox.js';
import { DEBIAN_REFS, buildDebian } from './builtin/debian.js';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { applyChanges } from './changes.js';
import type { ContentStore } from './content-store.js';
import type { ImageStore, IndexDocument, LoadedImage } from './image-store.js';
import { chainIds, decompressed, type LayerStore } from './layers.js';
import {
  canonicalJson,
  hostPlatform,
  MediaType,
  type Descriptor,
  type History,
  type ImageConfigDocument,
  type Manifest,
} from './oci-image.js';
import type {
  ArchiveFormat,
  GcReport,
  HistoryEntry,
  ImageDetails,
  ImageDiskUsage,
  LoadResult,
  PruneOptions,
  PruneResult,
} from '../core/image.js';
import { checkBlobs, loadArchive, saveArchive, type SaveItem } from './archive/index.js';
import { collectGarbage, diskBytes, diskUsage, GcLock, type GcContext } from './gc.js';
import { imageDetails, imageHistory } from './history.js';

/** Builds a built-in image (tests replace the busybox builder to stay offline). */
export type BuiltinBuilder = (
  cacheDir: string,
  onProgress?: (e: ProgressEvent) => void,
) => Promise<BuiltinImage>;

export interface LocalImageServiceOptions {
  root: string;
  content: ContentStore;
  store: ImageStore;
  layers: LayerStore;
  /** Built-in images by normalized reference; default: busybox. */
  builtins?: Record<string, BuiltinBuilder>;
}

/** An image to commit: its layers are already in the content store. */
export interface NewImage {
  layers: Descriptor[];
  config: ImageConfigDocument;
  /** Normalized references to point at it. */
  refs: string[];
  repoDigests?: string[];
}

type Found =
  | { id: Digest; via: 'id' }
  | { id: Digest; via: 'tag'; ref: string }
  | { id: Digest; via: 'digest'; ref: string };

function cleanConfig(c: ImageConfigDocument['config']): ImageConfig {
  const out: ImageConfig = {};
  if (!c) return out;
  if (c.User) out.User = c.User;
  if (c.Env) out.Env = c.Env;
  if (c.Entrypoint) out.Entrypoint = c.Entrypoint;
  if (c.Cmd) out.Cmd = c.Cmd;
  if (c.WorkingDir) out.WorkingDir = c.WorkingDir;
  if (c.Labels) out.Labels = c.Labels;
  if (c.ExposedPorts) out.ExposedPorts = c.ExposedPorts;
  if (c.Volumes) out.Volumes = c.Volumes;
  if (c.StopSignal) out.StopSignal = c.StopSignal;
  if (c.Shell) out.Shell = c.Shell;
  return out;
}

/** docker's display of a normalized reference string. */
function familiar(ref: string): string {
  try {
    return familiarString(parseNormalizedTagged(ref));
  } catch {
    return ref;
  }
}

/** The repository of a normalized reference: `docker.io/library/busybox` of `…busybox:latest` or `…busybox@sha256:…`. */
function repositoryOf(ref: string): string {
  return referenceName(parseReference(ref));
}

export class LocalImageService implements ImageService, LayerCommitter {
  private readonly loaded = new Map<string, LoadedImage>();
  /** Built-in images being built, by builder (aliases of one image share one build). */
  private readonly building = new Map<string | BuiltinBuilder, Promise<void>>();
  private readonly builtins: Record<string, BuiltinBuilder>;
  /** Registry credentials: `ROOT/auth.json`, docker's config.json format, mode 0600. */
  private readonly credentials: CredentialStore;
  /** Tuning of pulls and pushes (tests shrink chunk sizes and retry delays). */
  readonly registryOptions: Partial<
    Pick<PullContext, 'concurrency' | 'attempts' | 'retryDelayMs' | 'timeoutMs'> &
      Pick<PushContext, 'chunkSize'>
  > = {};

  constructor(private readonly o: LocalImageServiceOptions) {
    this.builtins = o.builtins ?? {
      [BUSYBOX_REF]: buildBusybox,
      ...Object.fromEntries(DEBIAN_REFS.map((r) => [r, buildDebian])),
    };
    this.credentials = new CredentialStore(join(o.root, 'auth.json'));
  }

  /** The content store images are kept in (for pull and build). */
  get content(): ContentStore {
    return this.o.content;
  }

  private async load(doc: IndexDocument, id: Digest): Promise<LoadedImage> {
    const stored = doc.images[id];
    if (!stored) throw new NotFoundError(`image ${id}: not found`);
    const cached = this.loaded.get(id);
    if (cached && cached.stored.manifest.digest === stored.manifest.digest) return { ...cached, stored };
    const img = await this.o.store.load(id, stored);
    this.loaded.set(id, img);
    return img;
  }

  private async toRecord(doc: IndexDocument, id: Digest): Promise<ImageRecord> {
    const img = await this.load(doc, id);
    const diffIds = img.config.rootfs.diff_ids;
    let size = 0;
    const chains = chainIds(diffIds);
    for (let i = 0; i < chains.length; i++) {
      const info = await this.o.layers.get(chains[i]!);
      size += info ? info.size : (img.manifest.layers[i]?.size ?? 0);
    }
    return {
      id,
      repoTags: Object.keys(doc.refs)
        .filter((r) => doc.refs[r] === id)
        .sort(),
      repoDigests: [...img.stored.repoDigests],
      created: img.config.created ?? img.stored.added,
      size,
      architecture: img.config.architecture,
      os: img.config.os,
      config: structuredClone(cleanConfig(img.config.config)),
      diffIds: [...diffIds],
      manifestDigest: img.stored.manifest.digest,
    };
  }

  /** Looks a reference up in the index without building anything; undefined when absent. */
  private find(doc: IndexDocument, ref: string): Found | undefined {
    const full = /^(?:sha256:)?([a-f0-9]{64})$/.exec(ref);
    if (full) {
      const id = `sha256:${full[1]}` as Digest;
      return doc.images[id] ? { id, via: 'id' } : undefined;
    }
    const prefixed = /^sha256:([a-f0-9]{1,63})$/.exec(ref);
    if (!prefixed) {
      const parsed = parseNormalizedTagged(ref); // InvalidArgumentError for a malformed reference
      if (parsed.digest) {
        const name = referenceName(parsed);
        for (const [id, img] of Object.entries(doc.images)) {
          if (img.repoDigests.includes(`${name}@${parsed.digest}`))
            return { id: id as Digest, via: 'digest', ref: `${name}@${parsed.digest}` };
          if (img.manifest.digest !== parsed.digest) continue;
          const named =
            img.repoDigests.includes(`${name}@${parsed.digest}`) ||
            Object.entries(doc.refs).some(([r, t]) => t === id && r.startsWith(`${name}:`));
          if (named) return { id: id as Digest, via: 'digest', ref: `${name}@${parsed.digest}` };
        }
        return undefined;
      }
      const key = formatReference(parsed);
      if (doc.refs[key]) return { id: doc.refs[key] as Digest, via: 'tag', ref: key };
    }
    const hex = prefixed ? prefixed[1]! : ref;
    if (!/^[a-f0-9]{1,63}$/.test(hex)) return undefined;
    const matches = Object.keys(doc.images).filter((id) => id.startsWith(`sha256:${hex}`));
    if (matches.length > 1) throw new InvalidArgumentError(`multiple IDs found with provided prefix: ${hex}`);
    return matches.length ? { id: matches[0] as Digest, via: 'id' } : undefined;
  }

  /** How docker shows a reference the user typed: `busybox` → `busybox:latest`, IDs as typed. */
  private shown(ref: string): string {
    try {
      if (!/^(?:sha256:)?[a-f0-9]{64}$/.test(ref)) return familiarString(parseNormalizedTagged(ref));
    } catch {
      // keep as typed
    }
    return ref;
  }

  private notFound(ref: string): NotFoundError {
    return new NotFoundError(`Unable to find image '${this.shown(ref)}' locally`, { ref });
  }

  async resolve(ref: string): Promise<ImageRecord> {
    return this.resolveWithProgress(ref, (e) =>
      process.stderr.write(`${new Date().toISOString()} building ${ref}: ${e.status}\n`),
    );
  }

  /** See LayerCommitter.resolveWithProgress. */
  async resolveWithProgress(ref: string, onProgress: (e: ProgressEvent) => void): Promise<ImageRecord> {
    let found = this.find(await this.o.store.read(), ref);
    if (!found) {
      const builtin = this.builtinFor(ref);
      if (builtin) {
        await this.buildBuiltin(builtin, onProgress);
        found = this.find(await this.o.store.read(), ref);
      }
    }
    if (!found) throw this.notFound(ref);
    const doc = await this.o.store.read();
    await this.ensureLayers(doc, found.id);
    return this.toRecord(doc, found.id);
  }

  private builtinFor(ref: string): string | undefined {
    try {
      const parsed = parseNormalizedTagged(ref);
      const key = formatReference(parsed);
      return this.builtins[key] ? key : undefined;
    } catch {
      return undefined;
    }
  }

  /** Builds a built-in image once, even when many callers ask at the same time. */
  private buildBuiltin(ref: string, onProgress?: (e: ProgressEvent) => void): Promise<void> {
    const builder = this.builtins[ref]!;
    let p = this.building.get(builder);
    if (!p) {
      p = (async () => {
        const built = await builder(join(this.o.root, 'cache'), onProgress);
        if (built.layerFile) {
          // A large layer on disk (debian): streamed through gzip, never held in memory.
          try {
            onProgress?.({ status: 'Committing the layer' });
            await this.commitLayer(createReadStream(built.layerFile), {
              config: built.config,
              createdBy: built.createdBy,
              refs: [ref, ...(built.aliases ?? [])],
              created: built.created,
            });
          } finally {
            await rm(built.layerFile, { force: true });
          }
          return;
        }
        const blob = gzipSync(built.layer, { level: 9 });
        const info = await this.o.content.write(blob);
        const diffId = sha256Digest(built.layer);
        const plat = hostPlatform();
        await this.commit({
          layers: [{ mediaType: MediaType.OciLayerGzip, digest: info.digest, size: info.size }],
          config: {
            created: built.created,
            architecture: plat.architecture,
            os: plat.os,
            config: built.config as ImageConfigDocument['config'],
            rootfs: { type: 'layers', diff_ids: [diffId] },
            history: [{ created: built.created, created_by: built.createdBy }],
          },
          refs: [ref],
        });
      })().finally(() => this.building.delete(builder));
      this.building.set(builder, p);
    }
    return p;
  }

  /** See LayerCommitter.commitLayer. */
  async commitLayer(
    layer: NodeJS.ReadableStream | undefined,
    opts: CommitLayerOptions & { created?: string },
  ): Promise<ImageRecord> {
    const doc = await this.o.store.read();
    let parent: LoadedImage | undefined;
    if (opts.parent) {
      const found = this.find(doc, opts.parent);
      if (!found) throw this.notFound(opts.parent);
      parent = await this.load(doc, found.id);
      await this.ensureLayers(doc, found.id);
    }
    const refs = (opts.refs ?? []).map((r) => {
      const parsed = parseNormalizedTagged(r);
      if (parsed.digest) throw new InvalidArgumentError('refusing to create a tag with a digest reference');
      return formatReference(parsed);
    });
    const created = opts.created ?? new Date().toISOString();
    const layers = [...(parent?.manifest.layers ?? [])];
    const diffIds = [...(parent?.config.rootfs.diff_ids ?? [])];
    const history: History[] = [...(parent?.config.history ?? [])];
    const entry: History = { created, created_by: opts.createdBy };
    if (opts.comment) entry.comment = opts.comment;
    if (layer) {
      const parentChain = diffIds.length ? chainIds(diffIds)[diffIds.length - 1] : undefined;
      const { blob, diffId } = await this.ingestLayer(layer, parentChain);
      layers.push({ mediaType: MediaType.OciLayerGzip, digest: blob.digest, size: blob.size });
      diffIds.push(diffId);
    } else entry.empty_layer = true;
    history.push(entry);
    let platform: { architecture: string; os: string; variant?: string } = hostPlatform();
    if (parent) {
      platform = { architecture: parent.config.architecture, os: parent.config.os };
      if (parent.config.variant) platform.variant = parent.config.variant;
    } else if (opts.platform) {
      const [os, architecture, variant] = opts.platform.split('/');
      if (!os || !architecture) throw new InvalidArgumentError(`invalid platform: ${opts.platform}`);
      platform = { os, architecture, ...(variant ? { variant } : {}) };
    }
    const id = await this.commit({
      layers,
      config: {
        created,
        ...platform,
        config: opts.config as ImageConfigDocument['config'],
        rootfs: { type: 'layers', diff_ids: diffIds },
        history,
      },
      refs,
    });
    return this.toRecord(await this.o.store.read(), id);
  }

  /** Unpacks any missing layer of an image; returns their directories bottom first. */
  private async ensureLayers(doc: IndexDocument, id: Digest): Promise<string[]> {
    const img = await this.load(doc, id);
    const infos = await this.o.layers.ensure(img.manifest.layers, img.config.rootfs.diff_ids);
    return infos.map((l) => this.o.layers.fsPath(l.chainId));
  }

  /** The unpacked layer directories of an image (bottom first), for snapshotters. */
  async layerPaths(image: ImageRecord): Promise<string[]> {
    const doc = await this.o.store.read();
    if (!isDigest(image.id) || !doc.images[image.id])
      throw new NotFoundError(`image ${shortId(image.id)}: not found`);
    return this.ensureLayers(doc, image.id);
  }

  /** Stores config and manifest, unpacks the layers, and points `refs` at the image; returns its ID. */
  async commit(img: NewImage): Promise<Digest> {
    const configBlob = canonicalJson(img.config);
    const config = await this.o.content.write(configBlob);
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: config.digest, size: config.size },
      layers: img.layers,
    };
    const m = await this.o.content.write(canonicalJson(manifest));
    await this.o.layers.ensure(img.layers, img.config.rootfs.diff_ids);
    const id = config.digest;
    await this.o.store.update((doc) => {
      const prev = doc.images[id];
      doc.images[id] = {
        manifest: { mediaType: MediaType.OciManifest, digest: m.digest, size: m.size },
        repoDigests: [...new Set([...(prev?.repoDigests ?? []), ...(img.repoDigests ?? [])])],
        added: prev?.added ?? new Date().toISOString(),
      };
      for (const r of img.refs) doc.refs[r] = id;
    });
    return id;
  }

  async list(): Promise<ImageRecord[]> {
    const doc = await this.o.store.read();
    const out: ImageRecord[] = [];
    for (const id of Object.keys(doc.images)) out.push(await this.toRecord(doc, id as Digest));
    return out.sort((a, b) =>
      a.created < b.created ? 1 : a.created > b.created ? -1 : a.id.localeCompare(b.id),
    );
  }

  async importRootfs(
    tar: NodeJS.ReadableStream,
    ref: string | undefined,
    opts: ImportOptions = {},
  ): Promise<ImageRecord> {
    let target: Reference | undefined;
    if (ref !== undefined && ref !== '') {
      target = parseNormalizedTagged(ref);
      if (target.digest) throw new InvalidArgumentError('refusing to create a tag with a digest reference');
    }
    const baseConfig = applyChanges({}, opts.changes ?? []); // reject bad changes before reading the stream
    const { blob, diffId } = await this.ingestLayer(tar, undefined);
    const now = new Date().toISOString();
    const plat = hostPlatform();
    const history: History = { created: now, created_by: 'abode import' };
    if (opts.message) history.comment = opts.message;
    const id = await this.commit({
      layers: [{ mediaType: MediaType.OciLayerGzip, digest: blob.digest, size: blob.size }],
      config: {
        created: now,
        architecture: plat.architecture,
        os: plat.os,
        config: baseConfig as ImageConfigDocument['config'],
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [history],
      },
      refs: target ? [formatReference(target)] : [],
    });
    return this.toRecord(await this.o.store.read(), id);
  }

  /**
   * One pass over a layer tar (plain or compressed): it is unpacked onto `parentChain` (and hashed for its
   * diff ID) while a gzip copy goes into the content store; nothing is committed if either fails.
   */
  private async ingestLayer(
    tar: NodeJS.ReadableStream,
    parentChain: Digest | undefined,
  ): Promise<{ blob: { digest: Digest; size: number }; diffId: Digest }> {
    const input = await decompressed(tar);
    const writer = await this.o.content.writer();
    try {
      const gzip = createGzip();
      gzip.pipe(writer.stream);
      const tee = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          if (gzip.write(chunk)) cb(null, chunk);
          else gzip.once('drain', () => cb(null, chunk));
        },
        flush(cb) {
          gzip.end();
          cb();
        },
      });
      input.on('error', (err) => tee.destroy(err));
      const applied = await this.o.layers.apply(parentChain, input.pipe(tee));
      await finished(writer.stream);
      const blob = await writer.commit();
      return { blob, diffId: applied.diffId };
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  async tag(source: string, target: string): Promise<void> {
    const t = parseNormalizedTagged(target);
    if (t.digest) throw new InvalidArgumentError('refusing to create a tag with a digest reference');
    const img = await this.resolve(source);
    await this.o.store.update((doc) => {
      doc.refs[formatReference(t)] = img.id;
    });
  }

  async remove(ref: string, opts: RemoveOptions): Promise<string[]> {
    const lines: string[] = [];
    let deleted: LoadedImage | undefined;
    await this.o.store.update(async (doc) => {
      const found = this.find(doc, ref);
      if (!found) throw new NotFoundError(`No such image: ${this.shown(ref)}`, { ref });
      const { id } = found;
      const tags = Object.keys(doc.refs).filter((r) => doc.refs[r] === id);
      const digests = doc.images[id]!.repoDigests;
      const inUse = opts.inUse(id);
      const untag = (r: string) => {
        delete doc.refs[r];
        lines.push(`Untagged: ${familiar(r)}`);
      };
      if (found.via === 'tag' || found.via === 'digest') {
        // As docker: untagging a repository's last tag drops its digest references too; the image
        // stays only while another reference (a tag, another repository's digest) remains.
        const repository = repositoryOf(found.ref);
        const repositoryTagLeft = tags.some((t) => t !== found.ref && repositoryOf(t) === repository);
        const dropped =
          found.via === 'tag' && !repositoryTagLeft
            ? digests.filter((d) => repositoryOf(d) === repository)
            : [];
        const others =
          tags.filter((t) => t !== found.ref).length +
          digests.filter((d) => d !== found.ref && !dropped.includes(d)).length;
        if (others > 0 && found.via === 'tag') {
          untag(found.ref);
          doc.images[id]!.repoDigests = digests.filter((d) => !dropped.includes(d));
          for (const d of dropped) lines.push(`Untagged: ${familiar(d)}`);
          return;
        }
        if (inUse && !opts.force) {
          throw new ConflictError(
            `conflict: unable to remove repository reference "${ref}" (must force) - container is using its referenced image ${shortId(id)}`,
          );
        }
      } else {
        if (inUse && !opts.force) {
          throw new ConflictError(
            `conflict: unable to delete ${shortId(id)} (must be forced) - image is being used by a container`,
          );
        }
        if (tags.length > 1 && !opts.force) {
          throw new ConflictError(
            `conflict: unable to delete ${shortId(id)} (must be forced) - image is referenced in multiple repositories`,
          );
        }
      }
      for (const t of tags) untag(t);
      for (const d of digests) lines.push(`Untagged: ${familiar(d)}`);
      if (inUse) {
        doc.images[id]!.repoDigests = [];
        return; // forced: an image an instance uses stays, dangling, until the instance is gone
      }
      deleted = await this.load(doc, id);
      delete doc.images[id];
      lines.push(`Deleted: ${id}`);
    });
    if (deleted) lines.push(...(await this.collect(deleted)));
    return lines;
  }

  /** Deletes the blobs and unpacked layers of a deleted image that no remaining image uses. */
  private async collect(gone: LoadedImage): Promise<string[]> {
    const doc = await this.o.store.read();
    const blobs = new Set<string>();
    const chains = new Set<string>();
    for (const id of Object.keys(doc.images)) {
      const img = await this.load(doc, id as Digest).catch(() => undefined);
      if (!img) continue;
      blobs.add(img.stored.manifest.digest).add(img.id);
      for (const l of img.manifest.layers) blobs.add(l.digest);
      for (const c of chainIds(img.config.rootfs.diff_ids)) chains.add(c);
    }
    this.loaded.delete(gone.id);
    const lines: string[] = [];
    for (const c of chainIds(gone.config.rootfs.diff_ids).reverse()) {
      if (chains.has(c)) continue;
      await this.o.layers.delete(c);
      lines.push(`Deleted: ${c}`);
    }
    for (const d of [gone.stored.manifest.digest, gone.id, ...gone.manifest.layers.map((l) => l.digest)]) {
      if (!blobs.has(d)) await this.o.content.delete(d);
    }
    return lines;
  }

  /** docker pull: see ImageService.pull; the manifest is stored as the registry sent it, so its digest stays. */
  async pull(ref: string, opts: PullOptions, onProgress: (e: ProgressEvent) => void): Promise<ImageRecord> {
    const parsed = parseNormalizedTagged(ref);
    const pulled = await pullImage(
      {
        content: this.o.content,
        layers: this.o.layers,
        credentials: await this.credentials.get(parsed.domain),
        tlsVerify: opts.tlsVerify,
        ...this.registryOptions,
      },
      parsed,
      opts.platform,
      onProgress,
    );
    if (pulled.index) await this.o.content.write(pulled.index.bytes, pulled.index.descriptor);
    await this.o.content.write(pulled.config.bytes, { digest: pulled.config.digest });
    await this.o.content.write(pulled.manifest.bytes, pulled.manifest.descriptor);
    const id = pulled.config.digest;
    const name = referenceName(parsed);
    const key = parsed.tag !== undefined ? formatReference(parsed) : undefined;
    let upToDate = false;
    await this.o.store.update((doc) => {
      const prev = doc.images[id];
      const repoDigest = `${name}@${pulled.digest}`;
      upToDate =
        prev !== undefined &&
        prev.manifest.digest === pulled.manifest.descriptor.digest &&
        (key ? doc.refs[key] === id : prev.repoDigests.includes(repoDigest));
      doc.images[id] = {
        manifest: pulled.manifest.descriptor,
        repoDigests: [...new Set([...(prev?.repoDigests ?? []), repoDigest])],
        added: prev?.added ?? new Date().toISOString(),
      };
      if (key) doc.refs[key] = id;
    });
    onProgress({ status: `Digest: ${pulled.digest}` });
    const shown = familiarString(parsed);
    onProgress({
      status: upToDate
        ? `Status: Image is up to date for ${shown}`
        : `Status: Downloaded newer image for ${shown}`,
    });
    return this.toRecord(await this.o.store.read(), id);
  }

  /** docker push: see ImageService.push; records `name@digest` as a repo digest afterwards. */
  async push(
    ref: string,
    opts: PushOptions,
    onProgress: (e: ProgressEvent) => void,
  ): Promise<{ tag: string; digest: string; size: number }> {
    const parsed = parseNormalizedTagged(ref);
    if (parsed.digest || parsed.tag === undefined)
      throw new InvalidArgumentError(`cannot push a digest reference: ${ref}`);
    const tag = parsed.tag;
    const key = formatReference(parsed);
    if (!(await this.o.store.read()).refs[key] && this.builtinFor(key)) await this.buildBuiltin(key);
    const doc = await this.o.store.read();
    const id = doc.refs[key] as Digest | undefined;
    if (!id || !doc.images[id])
      throw new NotFoundError(`An image does not exist locally with the tag: ${familiarString(parsed)}`);
    const img = await this.load(doc, id);
    // Which other repositories of the same registry hold each blob (for cross-repo mounts).
    const holders = new Map<string, Set<string>>();
    for (const other of Object.keys(doc.images)) {
      const o = await this.load(doc, other as Digest).catch(() => undefined);
      if (!o) continue;
      const repos = new Set<string>();
      const names = [...Object.keys(doc.refs).filter((r) => doc.refs[r] === other), ...o.stored.repoDigests];
      for (const n of names) {
        try {
          const r = parseReference(n);
          if (r.domain === parsed.domain) repos.add(r.path);
        } catch {
          // not a reference
        }
      }
      for (const d of [o.id, ...o.manifest.layers.map((l) => l.digest)]) {
        const set = holders.get(d) ?? new Set<string>();
        for (const r of repos) set.add(r);
        holders.set(d, set);
      }
    }
    const pushed = await pushImage(
      {
        content: this.o.content,
        credentials: await this.credentials.get(parsed.domain),
        tlsVerify: opts.tlsVerify,
        ...this.registryOptions,
      },
      { ...parsed, tag },
      {
        manifestBytes: await this.o.content.read(img.stored.manifest.digest),
        manifestMediaType: img.stored.manifest.mediaType,
        config: img.manifest.config,
        layers: img.manifest.layers,
        mountFrom: (d) => [...(holders.get(d) ?? [])].filter((r) => r !== parsed.path),
      },
      onProgress,
    );
    await this.o.store.update((d) => {
      const stored = d.images[id];
      if (stored && isDigest(pushed.digest)) {
        const rd = `${referenceName(parsed)}@${pushed.digest}`;
        if (!stored.repoDigests.includes(rd)) stored.repoDigests.push(rd);
      }
    });
    onProgress({ status: `${tag}: digest: ${pushed.digest} size: ${pushed.size}` });
    return { tag, ...pushed };
  }

  /** docker login: the credentials must work against the registry before they are stored. */
  async login(server: string, opts: LoginOptions): Promise<string> {
    const key = serverKey(server);
    if (!opts.username) throw new InvalidArgumentError('a username is required');
    if (!opts.password) throw new InvalidArgumentError('a password is required');
    const client = await RegistryClient.open(key === DOCKER_HUB_KEY ? DEFAULT_DOMAIN : key, {
      credentials: { username: opts.username, password: opts.password },
      tlsVerify: opts.tlsVerify,
      scopes: [],
      ...(this.registryOptions.timeoutMs ? { timeoutMs: this.registryOptions.timeoutMs } : {}),
    });
    await client.verifyLogin();
    await this.credentials.set(key, { username: opts.username, password: opts.password });
    return key;
  }

  /** docker logout. */
  async logout(server: string): Promise<string> {
    const key = serverKey(server);
    if (!(await this.credentials.remove(key))) throw new NotFoundError(`Not logged in to ${server || key}`);
    return key;
  }

  /** Loads and collections never interleave: a collection waits for loads, and loads for it. */
  readonly gcLock = new GcLock();

  private gcContext(): GcContext {
    const { root, content, store, layers } = this.o;
    return { root, content, store, layers, load: async (id) => this.load(await store.read(), id) };
  }

  /** docker save: see ImageService.save; a tag reference names the image in the archive, an ID does not. */
  async save(refs: string[], format: ArchiveFormat): Promise<NodeJS.ReadableStream> {
    if (refs.length === 0) throw new InvalidArgumentError('save needs at least one image');
    if (format !== 'docker' && format !== 'oci')
      throw new InvalidArgumentError(`unknown archive format ${JSON.stringify(format)} (docker or oci)`);
    const items = new Map<string, SaveItem>();
    for (const ref of refs) {
      const record = await this.resolve(ref);
      const doc = await this.o.store.read();
      const found = this.find(doc, ref);
      const item = items.get(record.id) ?? { image: await this.load(doc, record.id as Digest), refs: [] };
      if (found?.via === 'tag' && !item.refs.includes(found.ref)) item.refs.push(found.ref);
      items.set(record.id, item);
    }
    await checkBlobs(this.o.content, [...items.values()]);
    return saveArchive(this.o.content, [...items.values()], format);
  }

  /** docker load: see ImageService.loadArchive. */
  async loadArchive(tar: NodeJS.ReadableStream): Promise<LoadResult> {
    return this.gcLock.withShared(() => loadArchive(this.o, tar));
  }

  /** docker history. */
  async history(ref: string): Promise<HistoryEntry[]> {
    const record = await this.resolve(ref);
    const img = await this.load(await this.o.store.read(), record.id as Digest);
    return imageHistory(img, record, this.o.layers);
  }

  /** docker image inspect. */
  async inspect(ref: string): Promise<ImageDetails> {
    const record = await this.resolve(ref);
    const img = await this.load(await this.o.store.read(), record.id as Digest);
    return imageDetails(img, record, this.o.layers);
  }

  /** docker image prune: removes by ID what no instance uses, then collects garbage; reports the bytes freed. */
  async prune(opts: PruneOptions): Promise<PruneResult> {
    const usage = async () =>
      (await diskBytes(join(this.o.root, 'content'))) + (await diskBytes(join(this.o.root, 'layers')));
    const before = await usage();
    const doc = await this.o.store.read();
    const deleted: PruneResult['deleted'] = [];
    for (const id of Object.keys(doc.images)) {
      const tagged = Object.values(doc.refs).includes(id);
      if ((tagged && !opts.all) || opts.inUse(id)) continue;
      const lines = await this.remove(id, { force: true, inUse: opts.inUse }).catch((err: unknown) => {
        if (err instanceof NotFoundError) return [] as string[];
        throw err;
      });
      for (const line of lines) {
        const m = /^(Untagged|Deleted): (.*)$/.exec(line);
        if (m) deleted.push(m[1] === 'Untagged' ? { Untagged: m[2]! } : { Deleted: m[2]! });
      }
    }
    await this.collectGarbage();
    return { deleted, spaceReclaimed: Math.max(0, before - (await usage())) };
  }

  /** Garbage collection: see ImageService.collectGarbage. */
  async collectGarbage(graceMs = 60_000): Promise<GcReport> {
    return this.gcLock.withExclusive(() => collectGarbage(this.gcContext(), graceMs));
  }

  /** system df: see ImageService.diskUsage. */
  async diskUsage(): Promise<ImageDiskUsage> {
    return diskUsage(this.gcContext());
  }
}
