/** OCI image-spec and Docker schema-2 documents: media types, parsing (zod), platform selection. */
import { z } from 'zod';
import { isDigest, type Digest } from '../core/digest.js';
import { InvalidArgumentError, NotFoundError } from '../core/errors.js';

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

const MANIFEST_TYPES: readonly string[] = [MediaType.OciManifest, MediaType.DockerManifest];
const INDEX_TYPES: readonly string[] = [MediaType.OciIndex, MediaType.DockerManifestList];
const CONFIG_TYPES: readonly string[] = [MediaType.OciConfig, MediaType.DockerConfig];

/** How a layer blob is compressed, from its media type; undefined for media types that are not layers. */
export function layerCompression(mediaType: string): 'gzip' | 'none' | 'zstd' | undefined {
  if (mediaType.endsWith('.tar+gzip') || mediaType.endsWith('.tar.gzip')) return 'gzip';
  if (mediaType.endsWith('.tar+zstd')) return 'zstd';
  if (mediaType.endsWith('.tar')) return 'none';
  return undefined;
}

const digestSchema = z.string().refine(isDigest, 'invalid digest') as unknown as z.ZodType<Digest>;

const platformSchema = z.object({
  architecture: z.string(),
  os: z.string(),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
  variant: z.string().optional(),
});
export type Platform = z.infer<typeof platformSchema>;

const descriptorSchema = z.object({
  mediaType: z.string(),
  digest: digestSchema,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string()).optional(),
  platform: platformSchema.optional(),
});
export type Descriptor = z.infer<typeof descriptorSchema>;

const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
  annotations: z.record(z.string()).optional(),
});
export type Manifest = z.infer<typeof manifestSchema>;

const indexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(descriptorSchema),
  annotations: z.record(z.string()).optional(),
});
export type ImageIndex = z.infer<typeof indexSchema>;

const strings = z.array(z.string());
const containerConfigSchema = z
  .object({
    User: z.string().optional(),
    Env: strings.nullish(),
    Entrypoint: strings.nullish(),
    Cmd: strings.nullish(),
    WorkingDir: z.string().optional(),
    Labels: z.record(z.string()).nullish(),
    ExposedPorts: z.record(z.object({}).passthrough()).nullish(),
    Volumes: z.record(z.object({}).passthrough()).nullish(),
    StopSignal: z.string().optional(),
    Shell: strings.nullish(),
  })
  .passthrough();

const historySchema = z.object({
  created: z.string().optional(),
  created_by: z.string().optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  empty_layer: z.boolean().optional(),
});
export type History = z.infer<typeof historySchema>;

const imageConfigSchema = z
  .object({
    created: z.string().optional(),
    author: z.string().optional(),
    architecture: z.string(),
    os: z.string(),
    variant: z.string().optional(),
    config: containerConfigSchema.nullish(),
    rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(digestSchema) }),
    history: z.array(historySchema).optional(),
  })
  .passthrough();
export type ImageConfigDocument = z.infer<typeof imageConfigSchema>;

function parseJson(data: Buffer | string, what: string): unknown {
  try {
    return JSON.parse(data.toString());
  } catch {
    throw new InvalidArgumentError(`${what}: not valid JSON`);
  }
}

function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${what}: ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new InvalidArgumentError(problems.join('; '), { problems });
  }
  return r.data;
}

/** A parsed manifest or index, told apart by media type (field or header) and shape. */
export type ParsedDocument = { kind: 'manifest'; manifest: Manifest } | { kind: 'index'; index: ImageIndex };

/** Parses a manifest or an index (OCI or Docker schema 2); `mediaType` is the transport's Content-Type if known. */
export function parseManifestOrIndex(data: Buffer | string, mediaType?: string): ParsedDocument {
  const raw = parseJson(data, 'manifest') as Record<string, unknown>;
  const mt = (typeof raw?.mediaType === 'string' ? raw.mediaType : undefined) ?? mediaType;
  const isIndex = mt ? INDEX_TYPES.includes(mt) : Array.isArray(raw?.manifests);
  if (isIndex) return { kind: 'index', index: check(indexSchema, raw, 'image index') };
  if (mt && !MANIFEST_TYPES.includes(mt))
    throw new InvalidArgumentError(`unsupported manifest media type: ${mt}`);
  const manifest = check(manifestSchema, raw, 'manifest');
  if (!CONFIG_TYPES.includes(manifest.config.mediaType)) {
    throw new InvalidArgumentError(`unsupported image config media type: ${manifest.config.mediaType}`);
  }
  for (const l of manifest.layers) {
    if (!layerCompression(l.mediaType))
      throw new InvalidArgumentError(`unsupported layer media type: ${l.mediaType}`);
  }
  return { kind: 'manifest', manifest };
}

/** Parses an image config blob. */
export function parseImageConfig(data: Buffer | string): ImageConfigDocument {
  return check(imageConfigSchema, parseJson(data, 'image config'), 'image config');
}

/** The platform of this host in OCI terms. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
  };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

/** Picks the manifest for `want` from an index (exact variant first, then any variant); NotFoundError if none. */
export function selectPlatform(index: ImageIndex, want: Platform = hostPlatform()): Descriptor {
  const candidates = index.manifests.filter(
    (d) =>
      MANIFEST_TYPES.includes(d.mediaType) &&
      d.platform?.os === want.os &&
      d.platform.architecture === want.architecture,
  );
  const exact = want.variant ? candidates.find((d) => d.platform?.variant === want.variant) : undefined;
  const pick = exact ?? candidates[0];
  if (!pick) {
    throw new NotFoundError(
      `no matching manifest for ${want.os}/${want.architecture} in the manifest list entries`,
    );
  }
  return pick;
}

/** Serializes a document the way it is stored and hashed (compact JSON). */
export function canonicalJson(doc: unknown): Buffer {
  return Buffer.from(JSON.stringify(doc));
}
