/**
 * Image routes beyond list/import/tag/rmi (server.ts) and pull/push (registry.ts), in docker's shapes:
 *
 *   GET  /images/get?names=REF&names=REF&format=docker|oci   → the archive tar (docker save)
 *   POST /images/load   (body: a tar, plain/gzip/zstd)      → {lines, images, format} (docker load)
 *   GET  /images/:ref/json                                   → docker image inspect
 *   GET  /images/:ref/history                                → docker history rows
 *   POST /images/prune?all=1                                 → {ImagesDeleted, SpaceReclaimed}
 *   POST /images/gc?grace=SECONDS                            → {blobsDeleted, layersDeleted, bytesFreed}
 *   GET  /system/df                                          → {LayersSize, Images, Containers, Volumes, BuildCache}
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { ArchiveFormat, HistoryEntry, ImageService } from '../core/image.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Engine } from '../engine/engine.js';
import type { Router } from './router.js';

const flag = (query: URLSearchParams, key: string) => ['1', 'true', 'yes'].includes(query.get(key) ?? '');

/** Seconds since the epoch, as docker's image APIs give Created. */
const unix = (iso: string) => Math.floor((Date.parse(iso) || 0) / 1000);

/** Bytes allocated below a directory (volumes in system df), each inode once. */
async function du(path: string, seen = new Set<string>()): Promise<number> {
  const st = await fs.lstat(path).catch(() => undefined);
  if (!st || seen.has(`${st.dev}:${st.ino}`)) return 0;
  seen.add(`${st.dev}:${st.ino}`);
  let total = st.blocks * 512;
  if (st.isDirectory())
    for (const n of await fs.readdir(path).catch(() => [] as string[]))
      total += await du(join(path, n), seen);
  return total;
}

function historyView(h: HistoryEntry) {
  return {
    Id: h.id,
    Created: unix(h.created),
    CreatedBy: h.createdBy,
    Tags: h.tags.length ? h.tags : null,
    Size: h.size,
    Comment: h.comment,
  };
}

export function registerImageRoutes(r: Router, images: ImageService, e: Engine): void {
  const inUse = () => {
    const used = new Set(e.list(true).map((i) => i.imageId));
    return (id: string) => used.has(id);
  };

  r.on('GET', '/images/get', async (ctx) => {
    const names = ctx.query.getAll('names');
    const format = (ctx.query.get('format') || 'docker') as ArchiveFormat;
    if (names.length === 0) throw new InvalidArgumentError('names is required');
    const tar = await images.save(names, format);
    ctx.res.writeHead(200, { 'content-type': 'application/x-tar' });
    tar.on('error', () => ctx.res.destroy()); // a broken archive must not look complete
    ctx.res.on('close', () => (tar as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.());
    tar.pipe(ctx.res);
    return undefined;
  });

  r.on('POST', '/images/load', async (ctx) => images.loadArchive(ctx.req));

  r.on('GET', '/images/:ref/json', async (ctx) => {
    const d = await images.inspect(ctx.params.ref);
    return {
      Id: d.id,
      RepoTags: d.repoTags,
      RepoDigests: d.repoDigests,
      Parent: '',
      Comment: d.comment,
      Created: d.created,
      DockerVersion: '',
      Author: d.author,
      Config: d.config,
      Architecture: d.architecture,
      ...(d.variant ? { Variant: d.variant } : {}),
      Os: d.os,
      Size: d.size,
      GraphDriver: {
        Name: 'overlay',
        Data: {
          LowerDir: [...d.layerPaths].reverse().join(':'),
        },
      },
      RootFS: { Type: 'layers', Layers: d.diffIds },
      Metadata: { LastTagTime: '0001-01-01T00:00:00Z' },
      Descriptor: { mediaType: d.manifestMediaType, digest: d.manifestDigest },
      Layers: d.layers,
      History: d.history.map(historyView),
    };
  });

  r.on('GET', '/images/:ref/history', async (ctx) => (await images.history(ctx.params.ref)).map(historyView));

  r.on('POST', '/images/prune', async (ctx) => {
    const result = await images.prune({ all: flag(ctx.query, 'all'), inUse: inUse() });
    return { ImagesDeleted: result.deleted, SpaceReclaimed: result.spaceReclaimed };
  });

  r.on('POST', '/images/gc', async (ctx) => {
    const grace = ctx.query.get('grace');
    return images.collectGarbage(grace !== null ? Number(grace) * 1000 : undefined);
  });

  r.on('GET', '/system/df', async () => {
    const usage = await images.diskUsage();
    const all = e.list(true);
    const records = await images.list();
    const byId = new Map(usage.images.map((i) => [i.id, i]));
    const volumes = await Promise.all(
      e.volumes.list().map(async (v) => ({
        Name: v.name,
        Driver: v.driver,
        Mountpoint: v.mountpoint,
        CreatedAt: v.created,
        Labels: v.labels,
        Scope: 'local',
        UsageData: { Size: await du(v.mountpoint), RefCount: e.volumes.usedBy(v.name).length },
      })),
    );
    return {
      LayersSize: usage.totalBytes,
      Images: records.map((i) => ({
        Id: i.id,
        RepoTags: i.repoTags,
        RepoDigests: i.repoDigests,
        Created: unix(i.created),
        Size: byId.get(i.id)?.size ?? i.size,
        SharedSize: byId.get(i.id)?.sharedSize ?? 0,
        Containers: all.filter((c) => c.imageId === i.id).length,
      })),
      Containers: all.map((c) => ({
        Id: c.id,
        Names: [`/${c.name}`],
        Image: c.image,
        ImageID: c.imageId,
        Created: unix(c.created),
        State: c.state.status,
        SizeRw: usage.snapshots[c.id] ?? 0,
      })),
      Volumes: volumes,
      BuildCache: [],
    };
  });
}
