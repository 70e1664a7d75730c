/** Wires the local image service and the overlay snapshotter over one state root. */
import type { ImageService, Snapshotter } from '../core/image.js';
import { ContentStore } from './content-store.js';
import { ImageStore } from './image-store.js';
import { LayerStore } from './layers.js';
import { LocalImageService, type BuiltinBuilder } from './service.js';
import { OverlaySnapshotter } from './snapshotter/overlay.js';
import type { ApplyOptions } from './tar-apply.js';

export interface ImageServiceOptions {
  /** State root; images live in `<root>/content`, `<root>/images`, `<root>/layers`, `<root>/snapshots`, `<root>/cache`. */
  root: string;
  /** Built-in images by normalized reference (default: busybox from Debian's busybox-static). */
  builtins?: Record<string, BuiltinBuilder>;
  /** How layers are applied (tests use this to avoid mknod/setfattr). */
  apply?: ApplyOptions;
}

/** Creates the image service and the overlay snapshotter sharing one layer store. */
export function createImageService(opts: ImageServiceOptions): {
  images: ImageService & Pick<LocalImageService, 'commit' | 'layerPaths' | 'content'>;
  snapshotter: Snapshotter;
} {
  const content = new ContentStore(opts.root);
  const store = new ImageStore(opts.root, content);
  const layers = new LayerStore(opts.root, content, opts.apply);
  void layers.cleanup().catch(() => undefined);
  void content.cleanIngest().catch(() => undefined);
  const images = new LocalImageService({ root: opts.root, content, store, layers, builtins: opts.builtins });
  const snapshotter = new OverlaySnapshotter(opts.root, (image) => images.layerPaths(image));
  return { images, snapshotter };
}

export { ContentStore } from './content-store.js';
export { ImageStore } from './image-store.js';
export { LayerStore, chainIds } from './layers.js';
export { LocalImageService } from './service.js';
export { OverlaySnapshotter } from './snapshotter/overlay.js';
