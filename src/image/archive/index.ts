/** Image archives: docker save / docker load in the docker-archive and OCI image layout formats. */
export { loadArchive, type LoadContext, type LoadResult } from './load.js';
export { checkBlobs, saveArchive, type ArchiveFormat, type SaveItem } from './save.js';
