/** Image metadata: which images exist (by ID, with their manifest) and which references point at them, in `<root>/images/index.json`. */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../core/digest.js';
import { InternalError } from '../core/errors.js';
import type { ContentStore } from './content-store.js';
import {
  parseImageConfig,
  parseManifestOrIndex,
  type Descriptor,
  type ImageConfigDocument,
  type Manifest,
} from './oci-image.js';

/** One image in the index, keyed by its ID (config digest). */
export interface StoredImage {
  /** The manifest this image was stored or pulled with. */
  manifest: Descriptor;
  /** `name@sha256:<manifest>` for each repository it came from (pull). */
  repoDigests: string[];
  /** When it was added locally (RFC 3339). */
  added: string;
}

/** The index document; references are normalized (`docker.io/library/busybox:latest`). */
export interface IndexDocument {
  version: 1;
  images: Record<string, StoredImage>;
  refs: Record<string, string>;
}

/** An image's documents loaded from the content store. */
export interface LoadedImage {
  id: Digest;
  stored: StoredImage;
  manifest: Manifest;
  config: ImageConfigDocument;
}

/** The reference index; updates are serialized in-process (one writing process per root) and written atomically (temp file + rename). */
export class ImageStore {
  private readonly file: string;
  private cache: IndexDocument | undefined;
  /** Inode of the file the cache was read from: every write renames a new file in, so a change means reload. */
  private cacheIno: number | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    root: string,
    private readonly content: ContentStore,
  ) {
    this.file = join(root, 'images', 'index.json');
  }

  /** A snapshot of the index (do not mutate); re-read when another process replaced the file. */
  async read(): Promise<IndexDocument> {
    const ino = (await fs.stat(this.file).catch(() => undefined))?.ino;
    if (!this.cache || ino !== this.cacheIno) {
      try {
        const fh = await fs.open(this.file, 'r');
        try {
          const doc = JSON.parse(await fh.readFile('utf8')) as IndexDocument;
          if (doc.version !== 1)
            throw new InternalError(`${this.file}: unknown index version ${String(doc.version)}`);
          this.cacheIno = (await fh.stat()).ino;
          this.cache = doc;
        } finally {
          await fh.close();
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.cache = { version: 1, images: {}, refs: {} };
        this.cacheIno = undefined;
      }
    }
    return this.cache;
  }

  /** Runs `fn` on a copy of the index, one update at a time, and persists the copy if `fn` returns without throwing. */
  update<T>(fn: (doc: IndexDocument) => T | Promise<T>): Promise<T> {
    const run = async () => {
      const doc = structuredClone(await this.read());
      const result = await fn(doc);
      await this.persist(doc);
      this.cache = doc;
      return result;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async persist(doc: IndexDocument): Promise<void> {
    await fs.mkdir(join(this.file, '..'), { recursive: true });
    const tmp = `${this.file}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await fs.open(tmp, 'w', 0o644);
    try {
      await fh.writeFile(JSON.stringify(doc, null, 1));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, this.file);
    this.cacheIno = (await fs.stat(this.file)).ino;
  }

  /** Reads and parses an image's manifest and config from the content store. */
  async load(id: Digest, stored: StoredImage): Promise<LoadedImage> {
    const doc = parseManifestOrIndex(
      await this.content.read(stored.manifest.digest),
      stored.manifest.mediaType,
    );
    if (doc.kind !== 'manifest')
      throw new InternalError(`image ${id}: ${stored.manifest.digest} is not a manifest`);
    if (doc.manifest.config.digest !== id) {
      throw new InternalError(
        `image ${id}: manifest ${stored.manifest.digest} has config ${doc.manifest.config.digest}`,
      );
    }
    const config = parseImageConfig(await this.content.read(id));
    return { id, stored, manifest: doc.manifest, config };
  }
}
