import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../core/errors.js';
import type { BuiltinImage } from './builtin/busybox.js';
import { createImageService } from './index.js';
import { writeTar, type TarEntry } from './tar-write.js';

const temps: string[] = [];
const temp = (d: string) => (temps.push(d), d);
after(() => Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true }))));

const ROOTFS: TarEntry[] = [
  { type: 'dir', path: 'bin', mode: 0o755 },
  { type: 'file', path: 'bin/busybox', mode: 0o755, data: '#!fake' },
  { type: 'symlink', path: 'bin/sh', target: 'busybox' },
];

async function setup() {
  const root = temp(await fs.mkdtemp(join(tmpdir(), 'abode-images-')));
  let builds = 0;
  const fake = async (): Promise<BuiltinImage> => {
    builds++;
    await new Promise((r) => setTimeout(r, 20));
    return {
      layer: writeTar(ROOTFS),
      config: { Cmd: ['sh'] },
      created: '2024-01-01T00:00:00.000Z',
      createdBy: 'test',
    };
  };
  const apply = { whiteout: async () => undefined, opaque: async () => undefined };
  const svc = createImageService({ root, builtins: { 'docker.io/library/busybox:latest': fake }, apply });
  return { root, ...svc, builds: () => builds };
}

test('the built-in image is built once on first use, even concurrently', async () => {
  const { root, images, builds } = await setup();
  const [a, b] = await Promise.all([images.resolve('busybox'), images.resolve('busybox:latest')]);
  assert.equal(a.id, b.id);
  assert.equal(builds(), 1);
  assert.deepEqual(a.repoTags, ['docker.io/library/busybox:latest']);
  assert.deepEqual(a.config.Cmd, ['sh']);
  assert.equal(a.diffIds.length, 1);
  assert.equal(a.size, 6);
  assert.equal((await images.resolve(a.id)).id, a.id);
  assert.equal((await images.resolve(a.id.slice(7, 19))).id, a.id);
  assert.equal((await images.resolve(`busybox@${a.manifestDigest}`)).id, a.id);
  assert.equal((await images.list()).length, 1);
  const index = JSON.parse(await fs.readFile(join(root, 'images/index.json'), 'utf8'));
  assert.equal(index.refs['docker.io/library/busybox:latest'], a.id);
});

test('unknown images are NotFound with docker wording; bad references are InvalidArgument', async () => {
  const { images } = await setup();
  await assert.rejects(images.resolve('nosuch'), (e: unknown) => {
    return e instanceof NotFoundError && e.message === "Unable to find image 'nosuch:latest' locally";
  });
  await assert.rejects(images.resolve('busybox:1.36'), NotFoundError);
  await assert.rejects(images.resolve('Bad:Ref:x'), /invalid reference format/);
});

test('import: plain and gzip tars, --change, tag and remove', async () => {
  const { images } = await setup();
  const tar = writeTar(ROOTFS);
  const plain = await images.importRootfs(Readable.from([tar]), 'example/app:v1', {
    changes: ['CMD ["/bin/x"]', 'ENV A=1'],
    message: 'hello',
  });
  assert.deepEqual(plain.config.Cmd, ['/bin/x']);
  assert.deepEqual(plain.config.Env, ['A=1']);
  assert.deepEqual(plain.repoTags, ['docker.io/example/app:v1']);
  const gz = await images.importRootfs(Readable.from([gzipSync(tar)]), undefined, {
    changes: ['CMD ["/bin/x"]', 'ENV A=1'],
  });
  assert.deepEqual(gz.diffIds, plain.diffIds);
  assert.deepEqual(gz.repoTags, []);

  await images.tag('example/app:v1', 'other:1');
  assert.deepEqual((await images.resolve('other:1')).repoTags, [
    'docker.io/example/app:v1',
    'docker.io/library/other:1',
  ]);
  assert.deepEqual(await images.remove('other:1', { force: false, inUse: () => false }), [
    'Untagged: other:1',
  ]);
  await assert.rejects(images.remove('example/app:v1', { force: false, inUse: () => true }), ConflictError);
  const lines = await images.remove('example/app:v1', { force: false, inUse: () => false });
  assert.equal(lines[0], 'Untagged: example/app:v1');
  assert.equal(lines[1], `Deleted: ${plain.id}`);
  await assert.rejects(images.resolve(plain.id), NotFoundError);
  // the other imported image shares the layer: it must still resolve and be listed
  if (gz.id !== plain.id) assert.equal((await images.resolve(gz.id)).id, gz.id);
});

test('import of something that is not a tar fails and commits nothing', async () => {
  const { root, images } = await setup();
  for (const bad of [
    Buffer.from('hello world, not a tar\n'.repeat(50)),
    gzipSync(Buffer.from('gzip but no tar'.repeat(60))),
  ]) {
    await assert.rejects(images.importRootfs(Readable.from([bad]), 'bad:1'), InvalidArgumentError);
  }
  await assert.rejects(images.importRootfs(Readable.from([]), 'bad:1'), InvalidArgumentError);
  await assert.rejects(
    images.importRootfs(Readable.from([writeTar(ROOTFS)]), 'x', { changes: ['RUN x'] }),
    InvalidArgumentError,
  );
  assert.deepEqual(await images.list(), []);
  assert.deepEqual(await fs.readdir(join(root, 'content/blobs/sha256')).catch(() => []), []);
  const layers = await fs.readdir(join(root, 'layers')).catch(() => []);
  assert.deepEqual(layers, []);
});

test('snapshotter: prepare, mounts, usage, remove', async () => {
  const { images, snapshotter } = await setup();
  const img = await images.resolve('busybox');
  const [m] = await snapshotter.prepare('c1', img);
  assert.equal(m!.type, 'overlay');
  assert.ok(m!.options.some((o) => o.startsWith('lowerdir=') && o.includes('/layers/')));
  assert.deepEqual(await snapshotter.mounts('c1'), [m]);
  await assert.rejects(snapshotter.prepare('c1', img), /already exists/);
  await assert.rejects(snapshotter.prepare('../x', img), InvalidArgumentError);
  const upper = m!.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
  await fs.writeFile(join(upper, 'f'), Buffer.alloc(1234));
  assert.equal(await snapshotter.usage('c1'), 1234);
  assert.deepEqual(await snapshotter.list(), ['c1']);
  await snapshotter.remove('c1');
  await snapshotter.remove('c1');
  assert.equal(await snapshotter.usage('c1'), 0);
  await assert.rejects(snapshotter.mounts('c1'), NotFoundError);
});
