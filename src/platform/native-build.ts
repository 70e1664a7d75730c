/** Where this checkout builds its native programs (native/build), found from this module's place in the tree. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root: the nearest folder above this module that holds native/Makefile. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'native', 'Makefile'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('repository root not found');
    dir = up;
  }
  return dir;
}

/** A native program's path in native/build (abode-shim, abode-agent, abode-qemu-discard.so). */
export function nativeBuild(name: string): string {
  return join(repoRoot(), 'native', 'build', name);
}
