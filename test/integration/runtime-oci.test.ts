/** The runtime conformance suite against `oci:runc` (an external OCI runtime under abode-shim). */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createOptions } from '../../src/core/instance.js';
import type { ImageRecord } from '../../src/core/image.js';
import type { Bundle } from '../../src/core/runtime.js';
import { buildSpec } from '../../src/engine/bundle.js';
import { createImageService } from '../../src/image/index.js';
import { findOnPath, OciRuntime } from '../../src/runtime/oci/index.js';
import { runRuntimeSuite, type SuiteBundleOptions } from '../../src/runtime/testsuite.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const shimPath = process.env.ABODE_SHIM ?? join(repoRoot, 'native/build/abode-shim');
const binary = process.env.ABODE_OCI_RUNTIME ?? 'runc';
const skip =
  process.getuid?.() !== 0
    ? 'needs root'
    : !existsSync(shimPath)
      ? `no ${shimPath} (make -C native)`
      : !readFileSync('/proc/self/mountinfo', 'utf8').includes(' - cgroup')
        ? 'needs mounted cgroups'
        : !findOnPath(binary)
          ? `${binary} is not installed (apt-get install -y ${binary})`
          : false;

const root = mkdtempSync('/tmp/abode-rt-oci-');
const runRoot = join(root, 'run');
mkdirSync(runRoot, { recursive: true });
seedBusybox(root);
const { images, snapshotter } = createImageService({ root });
let busybox: Promise<ImageRecord> | undefined;

runRuntimeSuite({
  name: `oci:${binary}`,
  skip,
  newRuntime: () => new OciRuntime({ binary, runRoot, shimPath }),
  makeBundle: (id, options) => makeBundle(id, options),
  releaseBundle: (id) => snapshotter.remove(id),
  runRoots: [runRoot],
  cleanup: () => rm(root, { recursive: true, force: true }),
});

/** A bundle as the engine writes it: config.json from buildSpec, /etc files, the busybox snapshot. */
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
