/**
 * What the runtime conformance suites share: the monitor's path, the common reasons to skip, and a
 * throw-away state root with busybox whose bundles are made as the engine makes them.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createOptions } from '../../src/core/instance.js';
import type { ImageRecord } from '../../src/core/image.js';
import type { Bundle } from '../../src/core/runtime.js';
import { buildSpec } from '../../src/engine/bundle.js';
import { createImageService } from '../../src/image/index.js';
import type { SuiteBundleOptions } from '../../src/runtime/testsuite.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const shimPath = process.env.ABODE_SHIM ?? join(repoRoot, 'native/build/abode-shim');

/** Why the runtime suites cannot run here (not root, no monitor, no cgroups), or false. */
export function commonSkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync(shimPath)) return `no ${shimPath} (make -C native)`;
  if (!readFileSync('/proc/self/mountinfo', 'utf8').includes(' - cgroup')) return 'needs mounted cgroups';
  return false;
}

export interface SuiteRoot {
  /** The throw-away state root (images, snapshots, bundles under `instances/`). */
  root: string;
  /** The runtime's run root (`root/run`). */
  runRoot: string;
  /** A bundle as the engine writes it: config.json from buildSpec, /etc files, the busybox snapshot. */
  makeBundle(id: string, options: SuiteBundleOptions): Promise<Bundle>;
  /** Frees the bundle's snapshot. */
  releaseBundle(id: string): Promise<void>;
  /** Removes the state root. */
  cleanup(): Promise<void>;
}

/** A throw-away state root under /tmp (`prefix`XXXXXX) with busybox, seeded from a cached .deb. */
export function suiteRoot(prefix: string): SuiteRoot {
  const root = mkdtempSync(join('/tmp', prefix));
  const runRoot = join(root, 'run');
  mkdirSync(runRoot, { recursive: true });
  seedBusybox(root);
  const { images, snapshotter } = createImageService({ root });
  let busybox: Promise<ImageRecord> | undefined;

  async function makeBundle(id: string, options: SuiteBundleOptions): Promise<Bundle> {
    busybox ??= images.resolve('busybox');
    const image = await busybox;
    const dir = join(root, 'instances', id);
    await mkdir(dir, { recursive: true });
    const hostname = options.hostname || id.slice(0, 12);
    const etcFiles = {
      hostname: join(dir, 'hostname'),
      hosts: join(dir, 'hosts'),
      resolvConf: join(dir, 'resolv.conf'),
    };
    await writeFile(etcFiles.hostname, `${hostname}\n`);
    await writeFile(etcFiles.hosts, '127.0.0.1\tlocalhost\n');
    await writeFile(etcFiles.resolvConf, '');
    const spec = buildSpec({
      id,
      options: createOptions({ image: 'busybox', ...options }),
      image: image.config,
      hostname,
      etcFiles,
      mounts: [],
      hardLimits: {},
    });
    await writeFile(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
    const rootfs = await snapshotter.prepare(id, image);
    return { dir, spec, rootfs, logPath: join(dir, 'container.log') };
  }

  return {
    root,
    runRoot,
    makeBundle,
    releaseBundle: (id) => snapshotter.remove(id),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

/** Copies a cached busybox-static .deb into the throw-away root, so building busybox needs no network. */
function seedBusybox(stateRoot: string): void {
  const cache = join(stateRoot, 'cache');
  mkdirSync(cache, { recursive: true });
  for (const dir of ['/var/lib/abode/cache', '/tmp/abode-dev/cache', '/var/cache/apt/archives']) {
    try {
      const deb = readdirSync(dir).find((n) => n.startsWith('busybox-static_') && n.endsWith('.deb'));
      if (deb) return copyFileSync(join(dir, deb), join(cache, deb));
    } catch {
      // not here
    }
  }
}
