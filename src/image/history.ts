/** docker history and docker image inspect details, from an image's config and unpacked layers. */
import type { Digest } from '../core/digest.js';
import type { HistoryEntry, ImageDetails, ImageRecord } from '../core/image.js';
import type { LoadedImage } from './image-store.js';
import { chainIds, type LayerStore } from './layers.js';

/** The config's history, newest first; non-empty steps take the layers bottom up (sizes from the layer store). */
export async function imageHistory(
  img: LoadedImage,
  record: ImageRecord,
  layers: LayerStore,
): Promise<HistoryEntry[]> {
  const chains = chainIds(img.config.rootfs.diff_ids);
  const sizes: number[] = [];
  for (let i = 0; i < chains.length; i++) {
    const info = await layers.get(chains[i]!);
    sizes.push(info ? info.size : (img.manifest.layers[i]?.size ?? 0));
  }
  let steps = img.config.history ?? [];
  if (steps.filter((h) => !h.empty_layer).length !== chains.length) {
    // No (or inconsistent) history: one step per layer, as docker shows such images.
    steps = chains.map(() => ({ created: img.config.created ?? '', created_by: '' }));
  }
  let layer = 0;
  const out: HistoryEntry[] = steps.map((h) => {
    const empty = h.empty_layer === true;
    const size = empty ? 0 : (sizes[layer++] ?? 0);
    return {
      id: '<missing>',
      created: h.created ?? img.config.created ?? '',
      createdBy: h.created_by ?? '',
      comment: h.comment ?? '',
      size,
      tags: [],
      emptyLayer: empty,
    };
  });
  out.reverse();
  if (out[0]) {
    out[0].id = record.id;
    out[0].tags = record.repoTags;
  }
  return out;
}

/** ImageService.inspect's answer. */
export async function imageDetails(
  img: LoadedImage,
  record: ImageRecord,
  layers: LayerStore,
): Promise<ImageDetails> {
  const cfg = img.config as typeof img.config & { comment?: string };
  return {
    ...record,
    author: img.config.author ?? '',
    comment: typeof cfg.comment === 'string' ? cfg.comment : '',
    ...(img.config.variant ? { variant: img.config.variant } : {}),
    layers: img.manifest.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    layerPaths: chainIds(img.config.rootfs.diff_ids).map((c: Digest) => layers.fsPath(c)),
    history: await imageHistory(img, record, layers),
    manifestMediaType: img.stored.manifest.mediaType,
  };
}
