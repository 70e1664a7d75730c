/**
 * The image benchmarks of issue 3. pull: a generated image (5 gzip layers, ABODE_BENCH_IMAGE_MB MiB of
 * files in all, default 300) pushed with skopeo to Debian's docker-registry on 127.0.0.1, pulled cold by
 * `abode pull` (the fixture's daemon; rmi and GC between runs), `podman pull` (rmi between runs) and
 * `skopeo copy` + `umoci unpack`. unpack: one gzip layer (ABODE_BENCH_UNPACK_MB, default 150) unpacked by
 * abode's LayerStore in-process, as the pull path does, against `tar -xzf`. Runs: ABODE_BENCH_IMAGE_N
 * (default 5) after ABODE_BENCH_IMAGE_WARMUP (default 1), interleaved, with `sync` after each run's cleanup.
 * Everything is written below the fixture's directory (podman with a --root there), as creating files
 * can cost far more in one place of a disk than in another.
 */
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import type { Digest } from '../src/core/digest.js';
import { ContentStore } from '../src/image/content-store.js';
import { spreadSubdirectories } from '../src/platform/fs-placement.js';
import { gunzipStream, LayerStore } from '../src/image/layers.js';
import { skopeoCopy, startRegistry } from '../test/integration/registry-helpers.js';
import { CLI, PODMAN_GLOBAL, run, say, type Fixture } from './fixture.js';
import { generateImage, generateLayer } from './image-layers.js';
import { interleave, median, now, table, timeCommand, verdict } from './stats.js';

const PULL_TARGET = 0.6;
const UNPACK_TARGET = 0.9;
const envNumber = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v >= 0 && process.env[name] !== '' ? v : fallback;
};
const RUNS = Math.max(1, envNumber('ABODE_BENCH_IMAGE_N', 5));
const WARMUP = envNumber('ABODE_BENCH_IMAGE_WARMUP', 1);
const IMAGE_MIB = envNumber('ABODE_BENCH_IMAGE_MB', 300);
const UNPACK_MIB = envNumber('ABODE_BENCH_UNPACK_MB', 150);
/** Five layers, bottom first, of 1/3 … 1/15 of the image (100, 80, 60, 40, 20 MiB of 300). */
const LAYER_SHARES = [5, 4, 3, 2, 1];

export interface ImageResult {
  lines: string[];
  tables: string[];
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;

/** "0.95 (target ≥ 0.9) ✓" */
function atLeast(value: number, target: number): string {
  return `${value.toFixed(2)} (target ≥ ${target}) ${value >= target ? '✓' : '✗'}`;
}

/** Flushes dirty pages so that one run's writeback does not slow down the next. */
function sync(): void {
  run('sync', []);
}

export async function imageBenchmarks(
  fx: Fixture,
  which: { pull: boolean; unpack: boolean },
): Promise<ImageResult> {
  const dir = join(fx.dir, 'image');
  await mkdir(dir, { recursive: true });
  fx.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  const result: ImageResult = { lines: [], tables: [] };
  if (which.unpack) {
    const r = await unpackBenchmark(dir);
    result.lines.push(r.line);
    result.tables.push(r.table);
  }
  if (which.pull) {
    const r = await pullBenchmark(fx, dir);
    result.lines.push(r.line);
    result.tables.push(r.table);
  }
  return result;
}

async function unpackBenchmark(dir: string): Promise<{ line: string; table: string }> {
  const work = join(dir, 'unpack');
  await mkdir(work, { recursive: true });
  say(`layer unpack: ${RUNS} interleaved runs after ${WARMUP} warm-up; generating a ${UNPACK_MIB} MiB layer`);
  const layer = await generateLayer(join(work, 'layer.tar.gz'), UNPACK_MIB, 7);
  say(`layer: ${layer.files} files, ${mb(layer.tarSize)} as tar, ${mb(layer.size)} gzip`);
  // abode's layer store in a root of its own: the tar goes in as a pull streams it (gunzip → diff ID → apply).
  const root = join(work, 'root');
  const layers = new LayerStore(root, new ContentStore(root));
  // tar extracts into a fresh directory placed as abode places a layer's (spreadSubdirectories): the
  // ratio compares extraction, not where ext4 puts the files.
  const tarRoot = join(work, 'tar-root');
  await mkdir(tarRoot, { recursive: true });
  await spreadSubdirectories(tarRoot);
  const extract = join(tarRoot, 'tar');
  const samples = await interleave(
    [
      {
        name: 'abode LayerStore.apply',
        run: async () => {
          const start = now();
          const input = createReadStream(layer.path).pipe(gunzipStream());
          const info = await layers.apply(undefined, input, layer.diffId as Digest);
          const elapsed = now() - start;
          await layers.delete(info.chainId);
          sync();
          return elapsed;
        },
      },
      {
        name: 'tar -xzf',
        run: async () => {
          await mkdir(extract);
          const elapsed = timeCommand('tar', ['-xzf', layer.path, '-C', extract]);
          await rm(extract, { recursive: true });
          sync();
          return elapsed;
        },
      },
    ],
    RUNS,
    WARMUP,
  );
  const rate = (name: string) => layer.tarSize / 1e6 / (median(samples.get(name)!) / 1000);
  const abode = rate('abode LayerStore.apply');
  const tar = rate('tar -xzf');
  return {
    line: `layer unpack: abode ${abode.toFixed(0)} MB/s, tar ${tar.toFixed(0)} MB/s → ${atLeast(abode / tar, UNPACK_TARGET)}`,
    table: table(`layer unpack (${mb(layer.tarSize)} tar, ${layer.files} files)`, samples),
  };
}

async function pullBenchmark(fx: Fixture, dir: string): Promise<{ line: string; table: string }> {
  const work = join(dir, 'pull');
  await mkdir(work, { recursive: true });
  const total = LAYER_SHARES.reduce((a, b) => a + b, 0);
  const sizes = LAYER_SHARES.map((s) => (IMAGE_MIB * s) / total);
  say(`image pull: ${RUNS} interleaved runs after ${WARMUP} warm-up; generating a ${IMAGE_MIB} MiB image`);
  const image = await generateImage(join(work, 'layout'), 'bench', sizes);
  const tarBytes = image.layers.reduce((a, l) => a + l.tarSize, 0);
  const gzBytes = image.layers.reduce((a, l) => a + l.size, 0);
  const files = image.layers.reduce((a, l) => a + l.files, 0);
  say(`image: ${files} files, ${mb(tarBytes)} as tar, ${mb(gzBytes)} gzip`);

  say('starting docker-registry on 127.0.0.1 and pushing the image');
  const registry = await startRegistry();
  fx.defer('stop docker-registry', () => registry.stop());
  const ref = `${registry.host}/abode-bench:1`;
  await skopeoCopy(`oci:${image.dir}:bench`, `docker://${ref}`);
  await rm(image.dir, { recursive: true, force: true });

  const client = new Client(join(fx.abodeRoot, 'run', 'abode.sock'));
  const firstLayer = join(fx.abodeRoot, 'content', 'blobs', 'sha256', image.layers[0]!.digest.slice(7));
  /** Removes the image by ID (by tag, rmi only untags an image that has a repo digest), then collects. */
  const abodeClean = async () => {
    const id = fx.cli(['image', 'inspect', '--format', '{{.Id}}', ref]).trim();
    fx.cli(['rmi', '-f', id]);
    await client.call('POST', '/images/gc', { query: { grace: 0 } });
    if (existsSync(firstLayer))
      throw new Error(`abode rmi ${id} left ${firstLayer}: the next pull would not be cold`);
  };
  // podman stores in the bench's directory too: file creation costs differ a lot between places on one
  // disk (ext4 block groups), so every tool writes below the same directory.
  const podmanGlobal = [
    ...PODMAN_GLOBAL,
    '--root',
    join(work, 'podman'),
    '--runroot',
    join(work, 'podman-run'),
  ];
  const podmanClean = () => run('podman', [...podmanGlobal, 'rmi', '-f', '--ignore', ref]);
  fx.defer(`podman rmi ${ref}`, podmanClean);
  podmanClean();
  const oci = join(work, 'oci');
  const bundle = join(work, 'bundle');
  const umociClean = async () => {
    await rm(oci, { recursive: true, force: true });
    await rm(bundle, { recursive: true, force: true });
  };

  const samples = await interleave(
    [
      {
        name: 'abode pull',
        run: async () => {
          const elapsed = timeCommand(process.execPath, [CLI, 'pull', '-q', '--tls-verify=false', ref], {
            env: fx.cliEnv,
          });
          await abodeClean();
          sync();
          return elapsed;
        },
      },
      {
        name: 'podman pull',
        run: () => {
          const elapsed = timeCommand('podman', [...podmanGlobal, 'pull', '-q', '--tls-verify=false', ref]);
          podmanClean();
          sync();
          return elapsed;
        },
      },
      {
        name: 'skopeo copy + umoci unpack',
        run: async () => {
          const start = now();
          run('skopeo', [
            '--insecure-policy',
            'copy',
            '-q',
            '--src-tls-verify=false',
            `docker://${ref}`,
            `oci:${oci}:bench`,
          ]);
          run('umoci', ['unpack', '--image', `${oci}:bench`, bundle]);
          const elapsed = now() - start;
          await umociClean();
          sync();
          return elapsed;
        },
      },
    ],
    RUNS,
    WARMUP,
  );
  const abode = median(samples.get('abode pull')!);
  const podmanMs = median(samples.get('podman pull')!);
  const umoci = median(samples.get('skopeo copy + umoci unpack')!);
  return {
    line:
      `image pull: abode ${seconds(abode)}, podman ${seconds(podmanMs)}, skopeo+umoci ${seconds(umoci)}` +
      ` → abode/podman ${verdict(abode / podmanMs, PULL_TARGET)}`,
    table: table(
      `image pull (${image.layers.length} layers, ${mb(tarBytes)} tar, ${mb(gzBytes)} gzip, ${files} files)`,
      samples,
    ),
  };
}
