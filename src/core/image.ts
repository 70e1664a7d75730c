/** What the engine knows about images and root file systems; implementations live in image/. */

/** The runtime-relevant part of an image config (OCI `config` / docker `Config`). */
export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
  StopSignal?: string;
  /** docker's SHELL, used by shell-form instructions; default ["/bin/sh", "-c"]. */
  Shell?: string[];
}

/** One local image as docker shows it. */
export interface ImageRecord {
  /** Image ID: the digest of the config blob (`sha256:…`). */
  id: string;
  /** Normalized references pointing at this image (`docker.io/library/busybox:latest`); empty when dangling. */
  repoTags: string[];
  /** `name@sha256:<manifest>` for images that came from a registry. */
  repoDigests: string[];
  /** When the image was created (config `created`, RFC 3339). */
  created: string;
  /** Bytes of the unpacked layers (file contents), as `docker images` SIZE. */
  size: number;
  architecture: string;
  os: string;
  config: ImageConfig;
  /** Digests of the uncompressed layers, bottom first (config `rootfs.diff_ids`). */
  diffIds: string[];
  /** Digest of the image manifest. */
  manifestDigest: string;
}

/** containerd's Mount: how to mount a root file system (`mount -t type -o options source target`). */
export interface Mount {
  type: string;
  source: string;
  options: string[];
}

/** Options of ImageService.importRootfs (docker import). */
export interface ImportOptions {
  /** Commit message, recorded in the image history. */
  message?: string;
  /** Dockerfile-like lines: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL. */
  changes?: string[];
}

/** Options of ImageService.remove (docker rmi). */
export interface RemoveOptions {
  force: boolean;
  /** Whether an instance uses the image; in-use images are never deleted, only untagged with force. */
  inUse: (imageId: string) => boolean;
}

/** Local images: lookup, import, tag, remove. Every method is safe to call concurrently. */
export interface ImageService {
  /** Finds an image by name (`busybox`, `host:5000/app:1`, `name@sha256:…`), short or full ID; the built-in busybox is created on first use; unknown → NotFoundError. */
  resolve(ref: string): Promise<ImageRecord>;
  /** All local images, tagged and dangling, newest first. */
  list(): Promise<ImageRecord[]>;
  /** docker import: a tar (plain or gzip) of a root file system becomes a one-layer image, tagged `ref` if given; a bad stream commits nothing. */
  importRootfs(
    tar: NodeJS.ReadableStream,
    ref: string | undefined,
    opts?: ImportOptions,
  ): Promise<ImageRecord>;
  /** Points reference `target` at the image `source` resolves to; an image losing its last tag stays as dangling. */
  tag(source: string, target: string): Promise<void>;
  /** docker rmi: untags or deletes; returns lines like `Untagged: busybox:latest`, `Deleted: sha256:…`. */
  remove(ref: string, opts: RemoveOptions): Promise<string[]>;
  /** Pulls `ref` (tag or digest) from its registry with its layers; errors name the registry, repository and blob, and nothing half-written is committed. Credentials come from `ROOT/auth.json`. */
  pull(ref: string, opts: PullOptions, onProgress: (e: ProgressEvent) => void): Promise<ImageRecord>;
  /** Pushes a local image to the registry its name points at; returns the tag and the pushed manifest's digest and size. */
  push(
    ref: string,
    opts: PushOptions,
    onProgress: (e: ProgressEvent) => void,
  ): Promise<{ tag: string; digest: string; size: number }>;
  /** Checks credentials against `server` (`host[:port]`; empty for docker.io) and stores them (docker's config.json format, mode 0600); returns the server key. */
  login(server: string, opts: LoginOptions): Promise<string>;
  /** Forgets the stored credentials of `server`; NotFoundError when there were none; returns the server key. */
  logout(server: string): Promise<string>;
  /** docker save: the images `refs` name as one tar stream (docker-archive or OCI layout); unknown refs fail before any byte. */
  save(refs: string[], format: ArchiveFormat): Promise<NodeJS.ReadableStream>;
  /** docker load: a docker-archive or OCI layout tar (plain, gzip or zstd); a bad archive commits nothing. */
  loadArchive(tar: NodeJS.ReadableStream): Promise<LoadResult>;
  /** docker history: the config's history, newest first, with the layer each non-empty step made. */
  history(ref: string): Promise<HistoryEntry[]>;
  /** docker image inspect: the record with the config's author, comment, history and the layer descriptors. */
  inspect(ref: string): Promise<ImageDetails>;
  /** docker image prune: removes dangling images (all unused with `all`) no instance uses, then collects garbage. */
  prune(opts: PruneOptions): Promise<PruneResult>;
  /** Deletes blobs and unpacked layers no image or snapshot uses (older than `graceMs`, default 60 s); returns what went. */
  collectGarbage(graceMs?: number): Promise<GcReport>;
  /** Disk use of images and snapshots (instance writable layers), for system df. */
  diskUsage(): Promise<ImageDiskUsage>;
}

/** Formats of ImageService.save: `docker` (docker save's docker-archive) or `oci` (OCI image layout). */
export type ArchiveFormat = 'docker' | 'oci';

/** What ImageService.loadArchive committed. */
export interface LoadResult {
  images: { id: string; refs: string[] }[];
  /** docker's lines: `Loaded image: busybox:latest`, or `Loaded image ID: sha256:…` for an unnamed one. */
  lines: string[];
  format: 'docker-archive' | 'oci';
}

/** One step of an image's history (docker history). */
export interface HistoryEntry {
  /** The image ID for the top step, `<missing>` for the others (as docker shows pulled images). */
  id: string;
  created: string;
  createdBy: string;
  comment: string;
  /** Bytes of the layer this step made (0 for empty_layer steps). */
  size: number;
  /** Tags of the image, on the top step only. */
  tags: string[];
  emptyLayer: boolean;
}

/** ImageService.inspect: the record plus what docker image inspect shows beyond it. */
export interface ImageDetails extends ImageRecord {
  author: string;
  comment: string;
  variant?: string;
  /** Layer descriptors of the manifest (media type, digest, compressed size). */
  layers: { mediaType: string; digest: string; size: number }[];
  /** Unpacked layer directories, bottom first (GraphDriver). */
  layerPaths: string[];
  history: HistoryEntry[];
  manifestMediaType: string;
}

/** Options of ImageService.prune. */
export interface PruneOptions {
  /** Also images with tags (docker image prune -a). */
  all: boolean;
  inUse: (imageId: string) => boolean;
}

export interface PruneResult {
  /** docker's `{Untagged}` / `{Deleted}` items. */
  deleted: { Untagged?: string; Deleted?: string }[];
  /** Bytes freed on disk. */
  spaceReclaimed: number;
}

/** What ImageService.collectGarbage deleted. */
export interface GcReport {
  blobsDeleted: string[];
  layersDeleted: string[];
  bytesFreed: number;
}

/** ImageService.diskUsage. */
export interface ImageDiskUsage {
  /** Bytes on disk of all blobs and unpacked layers. */
  totalBytes: number;
  images: { id: string; size: number; sharedSize: number; containers: number }[];
  /** Writable-layer bytes of each snapshot, by key (the instance ID). */
  snapshots: Record<string, number>;
}

/** Turns an image's layers into a root file system for one instance, keyed by an instance-chosen key. */
export interface Snapshotter {
  /** Creates the writable snapshot `key` over the image's layers and returns how to mount it; AlreadyExistsError if `key` exists. */
  prepare(key: string, image: ImageRecord): Promise<Mount[]>;
  /** The mounts of an existing snapshot (after a daemon restart); NotFoundError if `key` is unknown. */
  mounts(key: string): Promise<Mount[]>;
  /** Deletes snapshot `key` (the caller unmounts it first); does nothing if it is gone. */
  remove(key: string): Promise<void>;
  /** Bytes written in the snapshot's writable layer (ps --size); 0 if it is gone. */
  usage(key: string): Promise<number>;
  /** Keys of all snapshots. */
  list(): Promise<string[]>;
}

/** One progress event of a pull or push, as docker's JSON messages: per-layer `id` + `status`, or a global line. */
export interface ProgressEvent {
  /** Short blob id (12 hex) for per-layer lines; absent for global lines (`Digest: …`, `Status: …`). */
  id?: string;
  /** `Pulling fs layer`, `Downloading`, `Download complete`, `Extracting`, `Pull complete`, `Already exists`, `Pushing`, `Pushed`, `Layer already exists`, `Mounted from …`, or a global line. */
  status: string;
  /** Bytes done and total for `Downloading` / `Pushing`. */
  progress?: { current: number; total: number };
}

/** Options of ImageService.pull. */
export interface PullOptions {
  /** `os/arch[/variant]`; default linux/amd64 (the host's). */
  platform?: string;
  /** false: accept any TLS certificate and fall back to plain http. localhost/127.0.0.1 registries may always be http. */
  tlsVerify?: boolean;
}

/** Options of ImageService.push. */
export interface PushOptions {
  tlsVerify?: boolean;
}

/** Options of ImageService.login. */
export interface LoginOptions {
  username: string;
  password: string;
  tlsVerify?: boolean;
}

/** What ImageService.commitLayer records besides the layer. */
export interface CommitLayerOptions {
  /** The image the new one is built on (its ID); undefined for an image from scratch. */
  parent?: string;
  /** The new image's config (it replaces the parent's). */
  config: ImageConfig;
  /** The history entry's `created_by` (`/bin/sh -c make`, `/bin/sh -c #(nop) ENV A=1`). */
  createdBy: string;
  comment?: string;
  /** References to point at the new image; none leaves it dangling. */
  refs?: string[];
  /** `os/arch[/variant]` of an image from scratch; default the host's. */
  platform?: string;
}

/** Options of Snapshotter.diff. */
export interface DiffOptions {
  /** Paths (relative, `/`-separated) left out when they are empty regular files: the runtime's bind-mount targets. */
  excludeEmptyFiles?: string[];
}

/** Building images from snapshots (docker commit / build): added to ImageService and Snapshotter by the local implementation. */
export interface LayerCommitter {
  /**
   * A new image on `parent`: `layer` (an uncompressed layer tar, e.g. Snapshotter.diff) becomes its top
   * layer, or with `layer` undefined only the config changes (an `empty_layer` history entry). A bad
   * stream commits nothing.
   */
  commitLayer(layer: NodeJS.ReadableStream | undefined, opts: CommitLayerOptions): Promise<ImageRecord>;
  /** As resolve, reporting the progress of building a built-in image (debian takes a while the first time). */
  resolveWithProgress(ref: string, onProgress: (e: ProgressEvent) => void): Promise<ImageRecord>;
}

/** Reading a snapshot's changes. */
export interface SnapshotDiffer {
  /**
   * The changes in snapshot `key` (its writable layer) as an uncompressed layer tar: overlay whiteouts
   * (char devices 0/0) become `.wh.NAME` entries and opaque directories `.wh..wh..opq`; undefined when
   * nothing changed. The snapshot must not be mounted elsewhere while the stream is read.
   */
  diff(key: string, opts?: DiffOptions): Promise<NodeJS.ReadableStream | undefined>;
}
