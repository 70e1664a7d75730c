/**
 * Garbage collection and disk usage of the image store. Mark: every blob and unpacked layer an image in
 * `images/index.json` uses, and every layer a snapshot mounts. Sweep: the rest of `content/blobs` and
 * `layers`, plus leftovers of interrupted ingests and unpacks.
 *
 * Writers that hold a lease (`GcLock.shared`) never race a collection (`GcLock.exclusive`). Writers that
 * do not (yet) take one are covered by a grace period: unreferenced blobs and layers younger than
 * `graceMs` are left for the next collection, as a write in flight commits its blobs before the image.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../core/digest.js';
import type { ImageDiskUsage } from '../core/image.js';
import type { ContentStore } from './content-store.js';
import type { ImageStore, LoadedImage } from './image-store.js';
import { chainIds, type LayerStore } from './layers.js';

/** Many shared holders (writes) or one exclusive holder (a collection), writers first-come. */
export class GcLock {
  private shared = 0;
  private exclusiveHeld = false;
  private waiters: (() => void)[] = [];

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Runs `fn` while no collection runs. */
  async withShared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusiveHeld) await new Promise<void>((r) => this.waiters.push(r));
    this.shared++;
    try {
      return await fn();
    } finally {
      this.shared--;
      this.wake();
    }
  }

  /** Runs `fn` alone: after current leases end, before new ones start. */
  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusiveHeld) await new Promise<void>((r) => this.waiters.push(r));
    this.exclusiveHeld = true;
    try {
      while (this.shared > 0) await new Promise<void>((r) => this.waiters.push(r));
      return await fn();
    } finally {
      this.exclusiveHeld = false;
      this.wake();
    }
  }
}

export interface GcContext {
  root: string;
  content: ContentStore;
  store: ImageStore;
  layers: LayerStore;
  /** Loads an image's documents (cached by the service). */
  load: (id: Digest) => Promise<LoadedImage>;
}

export interface GcResult {
  blobsDeleted: Digest[];
  layersDeleted: Digest[];
  /** Bytes freed on disk (allocated blocks). */
  bytesFreed: number;
}

/** Bytes allocated on disk below `path` (du), each inode once. */
export async function diskBytes(path: string, seen = new Set<string>()): Promise<number> {
  let st;
  try {
    st = await fs.lstat(path);
  } catch {
    return 0;
  }
  const key = `${st.dev}:${st.ino}`;
  if (seen.has(key)) return 0;
  seen.add(key);
  let total = st.blocks * 512;
  if (st.isDirectory()) {
    const names = await fs.readdir(path).catch(() => [] as string[]);
    for (const n of names) total += await diskBytes(join(path, n), seen);
  }
  return total;
}

/** The layers snapshots mount: chain hex from `<root>/layers/<hex>/fs` in each snapshot's meta.json. */
async function snapshotLayers(root: string): Promise<{ key: string; imageId: string; chains: string[] }[]> {
  const dir = join(root, 'snapshots');
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const out: { key: string; imageId: string; chains: string[] }[] = [];
  for (const key of names) {
    if (key.startsWith('.')) continue;
    try {
      const meta = JSON.parse(await fs.readFile(join(dir, key, 'meta.json'), 'utf8')) as {
        imageId: string;
        lowerdirs: string[];
      };
      const chains = meta.lowerdirs
        .map((p) => /\/layers\/([a-f0-9]{64})\/fs$/.exec(p)?.[1])
        .filter((h): h is string => h !== undefined)
        .map((h) => `sha256:${h}`);
      out.push({ key, imageId: meta.imageId, chains });
    } catch {
      // a snapshot being created or removed
    }
  }
  return out;
}

/** What every stored image uses: blobs (manifest, config, layers) and unpacked layers (chain IDs). */
async function mark(ctx: GcContext): Promise<{ blobs: Set<string>; chains: Set<string> }> {
  const doc = await ctx.store.read();
  const blobs = new Set<string>();
  const chains = new Set<string>();
  for (const [id, stored] of Object.entries(doc.images)) {
    blobs.add(id).add(stored.manifest.digest);
    const img = await ctx.load(id as Digest).catch(() => undefined);
    if (!img) continue;
    for (const l of img.manifest.layers) blobs.add(l.digest);
    for (const c of chainIds(img.config.rootfs.diff_ids)) chains.add(c);
  }
  for (const s of await snapshotLayers(ctx.root)) for (const c of s.chains) chains.add(c);
  return { blobs, chains };
}

async function olderThan(path: string, cutoff: number): Promise<boolean> {
  const st = await fs.lstat(path).catch(() => undefined);
  return st !== undefined && st.mtimeMs < cutoff;
}

/** Deletes unreferenced blobs and layers (see the module comment); call under GcLock.withExclusive. */
export async function collectGarbage(ctx: GcContext, graceMs: number): Promise<GcResult> {
  const cutoff = Date.now() - graceMs;
  const { blobs, chains } = await mark(ctx);
  const result: GcResult = { blobsDeleted: [], layersDeleted: [], bytesFreed: 0 };
  for (const d of await ctx.content.list()) {
    if (blobs.has(d)) continue;
    const path = ctx.content.blobPath(d);
    if (!(await olderThan(path, cutoff))) continue;
    const bytes = await diskBytes(path);
    await ctx.content.delete(d);
    result.blobsDeleted.push(d);
    result.bytesFreed += bytes;
  }
  for (const c of await ctx.layers.list()) {
    if (chains.has(c)) continue;
    const dir = join(ctx.layers.fsPath(c), '..');
    if (!(await olderThan(join(dir, 'meta.json'), cutoff))) continue;
    const bytes = await diskBytes(dir);
    await ctx.layers.delete(c);
    result.layersDeleted.push(c);
    result.bytesFreed += bytes;
  }
  // Leftovers of interrupted ingests and unpacks past the grace period.
  for (const dir of [join(ctx.root, 'content', 'ingest'), join(ctx.root, 'layers')]) {
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    for (const n of names) {
      const p = join(dir, n);
      if (dir.endsWith('layers') && !n.startsWith('.tmp-')) continue;
      if (!(await olderThan(p, cutoff))) continue;
      result.bytesFreed += await diskBytes(p);
      await fs.rm(p, { recursive: true, force: true });
    }
  }
  return result;
}

export async function diskUsage(ctx: GcContext): Promise<ImageDiskUsage> {
  const doc = await ctx.store.read();
  const sizes = new Map<string, number>();
  const users = new Map<string, number>();
  const perImage = new Map<string, string[]>();
  const measure = async (key: string, path: string) => {
    if (!sizes.has(key)) sizes.set(key, await diskBytes(path));
    users.set(key, (users.get(key) ?? 0) + 1);
  };
  for (const [id, stored] of Object.entries(doc.images)) {
    const paths = new Map<string, string>([
      [`b:${id}`, ctx.content.blobPath(id as Digest)],
      [`b:${stored.manifest.digest}`, ctx.content.blobPath(stored.manifest.digest)],
    ]);
    const img = await ctx.load(id as Digest).catch(() => undefined);
    for (const l of img?.manifest.layers ?? []) paths.set(`b:${l.digest}`, ctx.content.blobPath(l.digest));
    for (const c of chainIds(img?.config.rootfs.diff_ids ?? []))
      paths.set(`l:${c}`, join(ctx.layers.fsPath(c), '..'));
    for (const [k, p] of paths) await measure(k, p);
    perImage.set(id, [...paths.keys()]);
  }
  const snaps = await snapshotLayers(ctx.root);
  const snapshots: Record<string, number> = {};
  for (const s of snaps) snapshots[s.key] = await diskBytes(join(ctx.root, 'snapshots', s.key, 'fs'));
  const images = [...perImage].map(([id, keys]) => {
    let size = 0;
    let sharedSize = 0;
    for (const k of keys) {
      const b = sizes.get(k) ?? 0;
      size += b;
      if ((users.get(k) ?? 0) > 1) sharedSize += b;
    }
    return { id, size, sharedSize, containers: snaps.filter((s) => s.imageId === id).length };
  });
  const totalBytes =
    (await diskBytes(join(ctx.root, 'content'))) + (await diskBytes(join(ctx.root, 'layers')));
  return { totalBytes, images, snapshots };
}
