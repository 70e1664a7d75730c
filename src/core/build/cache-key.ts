/**
 * Build cache keys: one step's result is reused when the image it starts from, the instruction (after
 * substitution) and everything the instruction reads are the same. For COPY/ADD that is the digest of
 * the copied files' names, types, modes and contents (never their mtimes); for RUN the build arguments
 * it sees as environment.
 */
import { createHash } from 'node:crypto';

/** One file a COPY/ADD reads, as it counts for the cache. */
export interface SourceFile {
  /** Path relative to the source root (`/`-separated). */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  /** Permission bits. */
  mode: number;
  /** `sha256:…` of the contents (files), the link target (symlinks), '' (directories). */
  digest: string;
}

/** Inputs of one step. */
export interface CacheInputs {
  /** The image the step starts from (ID), or 'scratch'. */
  parent: string;
  /** The instruction after substitution, as it will be recorded (`RUN /bin/sh -c make`). */
  instruction: string;
  /** Files a COPY/ADD reads (any order; sorted here). */
  files?: SourceFile[];
  /** Anything else the step depends on (build args as `K=V`, the source image of COPY --from…). */
  extra?: string[];
}

/** The digest of a set of source files: independent of their order and mtimes. */
export function filesDigest(files: readonly SourceFile[]): string {
  const h = createHash('sha256');
  for (const f of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    h.update(`${f.path}\0${f.type}\0${(f.mode & 0o7777).toString(8)}\0${f.digest}\n`);
  }
  return `sha256:${h.digest('hex')}`;
}

/** The cache key of a step: `sha256:…` over its parent, instruction and inputs. */
export function cacheKey(inputs: CacheInputs): string {
  const doc = {
    v: 1,
    parent: inputs.parent,
    instruction: inputs.instruction,
    files: inputs.files ? filesDigest(inputs.files) : undefined,
    extra: inputs.extra ?? [],
  };
  return `sha256:${createHash('sha256').update(JSON.stringify(doc)).digest('hex')}`;
}
