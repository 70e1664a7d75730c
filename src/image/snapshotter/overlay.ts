/** Overlay snapshotter: lowerdirs are the image's unpacked layers (top first), upper/work live in `<root>/snapshots/<key>/`. */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import type { DiffOptions, ImageRecord, Mount, SnapshotDiffer, Snapshotter } from '../../core/image.js';
import { isEmptyDir, upperDirTar } from '../build/layer-diff.js';

const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** The kernel's limit for mount data (one page); longer lowerdir lists need shorter paths. */
const MAX_OPTIONS_LENGTH = 4096;

interface SnapshotMeta {
  key: string;
  imageId: string;
  lowerdirs: string[];
  created: string;
}

/** Returns the unpacked layer directories of an image, bottom first, unpacking what is missing. */
export type LayerResolver = (image: ImageRecord) => Promise<string[]>;

/** Paths in overlay options may not contain the option separators. */
function checkPath(p: string): string {
  if (/[,:\\\n]/.test(p)) throw new InvalidArgumentError(`overlay path contains ',', ':' or '\\': ${p}`);
  return p;
}

/** Snapshots as overlay mounts over shared layer directories. */
export class OverlaySnapshotter implements Snapshotter, SnapshotDiffer {
  private readonly dir: string;

  constructor(
    root: string,
    private readonly layers: LayerResolver,
  ) {
    this.dir = join(root, 'snapshots');
  }

  private path(key: string): string {
    if (!KEY_RE.test(key)) throw new InvalidArgumentError(`invalid snapshot key: ${JSON.stringify(key)}`);
    return join(this.dir, key);
  }

  private toMounts(key: string, meta: SnapshotMeta): Mount[] {
    const base = this.path(key);
    const upper = checkPath(join(base, 'fs'));
    if (meta.lowerdirs.length === 0) {
      return [{ type: 'bind', source: upper, options: ['rbind', 'rw'] }];
    }
    const lower = [...meta.lowerdirs].reverse().map(checkPath).join(':');
    const options = [
      'index=off',
      `lowerdir=${lower}`,
      `upperdir=${upper}`,
      `workdir=${checkPath(join(base, 'work'))}`,
    ];
    if (options.join(',').length >= MAX_OPTIONS_LENGTH) {
      throw new InvalidArgumentError(
        `snapshot ${key}: too many layers for one overlay mount (${meta.lowerdirs.length})`,
      );
    }
    return [{ type: 'overlay', source: 'overlay', options }];
  }

  async prepare(key: string, image: ImageRecord): Promise<Mount[]> {
    const base = this.path(key);
    const lowerdirs = await this.layers(image);
    await fs.mkdir(this.dir, { recursive: true, mode: 0o711 });
    const tmp = join(this.dir, `.tmp-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(join(tmp, 'fs'), { recursive: true, mode: 0o755 });
    await fs.mkdir(join(tmp, 'work'), { mode: 0o700 });
    const meta: SnapshotMeta = { key, imageId: image.id, lowerdirs, created: new Date().toISOString() };
    await fs.writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
    try {
      await fs.rename(tmp, base); // fails if the key exists: a snapshot appears whole or not at all
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTEMPTY')
        throw new AlreadyExistsError(`snapshot ${key}: already exists`);
      throw err;
    }
    return this.toMounts(key, meta);
  }

  async mounts(key: string): Promise<Mount[]> {
    let meta: SnapshotMeta;
    try {
      meta = JSON.parse(await fs.readFile(join(this.path(key), 'meta.json'), 'utf8')) as SnapshotMeta;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new NotFoundError(`snapshot ${key}: not found`);
      throw err;
    }
    return this.toMounts(key, meta);
  }

  async remove(key: string): Promise<void> {
    const base = this.path(key);
    const trash = join(this.dir, `.tmp-rm-${randomBytes(6).toString('hex')}`);
    try {
      await fs.rename(base, trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await fs.rm(trash, { recursive: true, force: true });
  }

  async usage(key: string): Promise<number> {
    const seen = new Set<string>();
    let total = 0;
    const walk = async (dir: string): Promise<void> => {
      let names: string[];
      try {
        names = await fs.readdir(dir);
      } catch {
        return;
      }
      for (const n of names) {
        const p = join(dir, n);
        const st = await fs.lstat(p).catch(() => undefined);
        if (!st) continue;
        if (st.isDirectory()) {
          await walk(p);
          continue;
        }
        const ino = `${st.dev}:${st.ino}`;
        if (st.nlink > 1) {
          if (seen.has(ino)) continue;
          seen.add(ino);
        }
        total += st.size;
      }
    };
    await walk(join(this.path(key), 'fs'));
    return total;
  }

  /** See SnapshotDiffer.diff: the upper directory as a layer tar (the snapshot must not be mounted). */
  async diff(key: string, opts: DiffOptions = {}): Promise<NodeJS.ReadableStream | undefined> {
    const upper = join(this.path(key), 'fs');
    try {
      await fs.access(join(this.path(key), 'meta.json'));
    } catch {
      throw new NotFoundError(`snapshot ${key}: not found`);
    }
    if (await isEmptyDir(upper)) return undefined;
    return upperDirTar(upper, opts);
  }

  async list(): Promise<string[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => KEY_RE.test(n)).sort();
  }
}
