// Images end to end as root: the built-in busybox from Debian, real overlay mounts, docker import.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import * as tar from 'tar';
import type { Mount } from '../../src/core/image.js';
import { createImageService } from '../../src/image/index.js';
import { sha256Digest, type Digest } from '../../src/core/digest.js';
import { MediaType } from '../../src/image/oci-image.js';
import { writeTar } from '../../src/image/tar-write.js';

const run = promisify(execFile);
let root: string;
let svc: ReturnType<typeof createImageService>;
const mounted: string[] = [];

before(async () => {
  root = await fs.mkdtemp(join(tmpdir(), 'abode-image-it-'));
  svc = createImageService({ root });
});

after(async () => {
  for (const m of mounted.reverse()) await run('umount', [m]).catch(() => undefined);
  await fs.rm(root, { recursive: true, force: true });
});

async function mount(m: Mount): Promise<string> {
  const target = await fs.mkdtemp(join(tmpdir(), 'abode-mnt-'));
  await run('mount', ['-t', m.type, '-o', m.options.join(','), m.source, target]);
  mounted.push(target);
  return target;
}

async function umount(target: string): Promise<void> {
  await run('umount', [target]);
  mounted.splice(mounted.indexOf(target), 1);
  await fs.rmdir(target);
}

test('the built-in busybox is created once, stored like a pulled image, and its layer unpacked once', async () => {
  const [a, b] = await Promise.all([
    svc.images.resolve('busybox'),
    svc.images.resolve('docker.io/library/busybox'),
  ]);
  assert.equal(a.id, b.id);
  const again = await svc.images.resolve('busybox:latest');
  assert.equal(again.id, a.id);
  assert.deepEqual(a.repoTags, ['docker.io/library/busybox:latest']);
  assert.deepEqual(a.config.Cmd, ['sh']);
  assert.deepEqual(a.config.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
  assert.equal(a.os, 'linux');
  assert.equal(a.architecture, 'amd64');
  assert.ok(a.size > 500_000, `size ${a.size}`);
  assert.ok(
    (await fs.readdir(join(root, 'cache'))).some(
      (n) => n.startsWith('busybox-static_') && n.endsWith('.deb'),
    ),
  );

  const blobs = await fs.readdir(join(root, 'content/blobs/sha256'));
  for (const d of [a.id, a.manifestDigest]) assert.ok(blobs.includes(d.slice(7)), d);
  assert.equal(blobs.length, 3); // manifest, config, layer

  const layers = (await fs.readdir(join(root, 'layers'))).filter((n) => !n.startsWith('.'));
  assert.deepEqual(layers, [a.diffIds[0]!.slice(7)]); // one layer: its chain ID is its diff ID
  const fsDir = join(root, 'layers', layers[0]!, 'fs');
  assert.equal(await fs.readlink(join(fsDir, 'bin/sh')), 'busybox');
  assert.equal(await fs.readlink(join(fsDir, 'usr/bin/env')), '../../bin/busybox');
  assert.equal((await fs.stat(join(fsDir, 'tmp'))).mode & 0o7777, 0o1777);
  assert.match(await fs.readFile(join(fsDir, 'etc/passwd'), 'utf8'), /^root:x:0:0:root:\/root:\/bin\/sh$/m);
  const { stdout } = await run(join(fsDir, 'bin/busybox'), ['echo', 'hello']);
  assert.equal(stdout, 'hello\n');

  // A second service on the same root sees the same image and does not rebuild or unpack again.
  const st = await fs.stat(fsDir);
  const other = createImageService({ root });
  assert.equal((await other.images.resolve('busybox')).id, a.id);
  assert.equal((await fs.stat(fsDir)).ino, st.ino);
});

test('the built-in layer is deterministic', async () => {
  const root2 = await fs.mkdtemp(join(tmpdir(), 'abode-image-it2-'));
  try {
    await fs.cp(join(root, 'cache'), join(root2, 'cache'), { recursive: true });
    const again = await createImageService({ root: root2 }).images.resolve('busybox');
    assert.equal(again.id, (await svc.images.resolve('busybox')).id);
  } finally {
    await fs.rm(root2, { recursive: true, force: true });
  }
});

test('snapshotter prepare returns an overlay mount that mounts, writes go to the upper dir', async () => {
  const img = await svc.images.resolve('busybox');
  const mounts = await svc.snapshotter.prepare('it-1', img);
  assert.equal(mounts.length, 1);
  assert.equal(mounts[0]!.type, 'overlay');
  const target = await mount(mounts[0]!);
  const names = await fs.readdir(target);
  for (const n of ['bin', 'etc', 'tmp', 'proc']) assert.ok(names.includes(n), n);
  assert.equal(await fs.readlink(join(target, 'bin/sh')), 'busybox');
  await fs.writeFile(join(target, 'tmp/hello'), 'hello world');
  await fs.rm(join(target, 'etc/group'));
  await umount(target);
  assert.equal(await svc.snapshotter.usage('it-1'), 11);
  // the shared layer is untouched
  const layer = join(root, 'layers', img.diffIds[0]!.slice(7), 'fs');
  await fs.access(join(layer, 'etc/group'));
  await assert.rejects(fs.access(join(layer, 'tmp/hello')));
  await svc.snapshotter.remove('it-1');
  await svc.snapshotter.remove('it-1');
});

test('import of a tar made from a directory, with --change', async () => {
  const src = await fs.mkdtemp(join(tmpdir(), 'abode-import-src-'));
  try {
    await fs.mkdir(join(src, 'bin'));
    await fs.writeFile(join(src, 'bin/x'), '#!/bin/sh\necho x\n', { mode: 0o755 });
    await fs.mkdir(join(src, 'data'));
    await fs.symlink('/bin/x', join(src, 'link'));
    await fs.chown(join(src, 'data'), 1000, 1000);
    const gz = tar.c({ cwd: src, gzip: true, portable: false }, ['.']) as unknown as NodeJS.ReadableStream;
    const img = await svc.images.importRootfs(Readable.from(gz as AsyncIterable<Buffer>), 'imported:1', {
      changes: ['CMD ["/bin/x"]'],
      message: 'from a dir',
    });
    assert.deepEqual(img.config.Cmd, ['/bin/x']);
    assert.deepEqual(img.repoTags, ['docker.io/library/imported:1']);
    assert.equal((await svc.images.resolve('imported:1')).id, img.id);
    const mounts = await svc.snapshotter.prepare('it-import', img);
    assert.equal(mounts[0]!.type, 'overlay');
    const target = await mount(mounts[0]!);
    assert.equal(await fs.readFile(join(target, 'bin/x'), 'utf8'), '#!/bin/sh\necho x\n');
    assert.equal((await fs.stat(join(target, 'bin/x'))).mode & 0o777, 0o755);
    assert.equal((await fs.stat(join(target, 'data'))).uid, 1000);
    assert.equal(await fs.readlink(join(target, 'link')), '/bin/x');
    await umount(target);
    await svc.snapshotter.remove('it-import');
    const lines = await svc.images.remove('imported:1', { force: false, inUse: () => false });
    assert.deepEqual(lines.slice(0, 2), ['Untagged: imported:1', `Deleted: ${img.id}`]);
  } finally {
    await fs.rm(src, { recursive: true, force: true });
  }
});

test('whiteouts and opaque directories hide lower-layer files in a real overlay mount', async () => {
  const base = await svc.images.resolve('busybox');
  const content = svc.images.content;
  const top = writeTar([
    { type: 'dir', path: 'etc', mode: 0o755 },
    { type: 'file', path: 'etc/.wh.group', mode: 0o644, data: '' },
    { type: 'dir', path: 'usr', mode: 0o755 },
    { type: 'dir', path: 'usr/bin', mode: 0o755 },
    { type: 'file', path: 'usr/bin/.wh..wh..opq', mode: 0o644, data: '' },
    { type: 'file', path: 'usr/bin/only', mode: 0o755, data: 'only' },
  ]);
  const blob = await content.write(top);
  const baseLayer = await content.read(base.manifestDigest as Digest);
  const manifest = JSON.parse(baseLayer.toString());
  const id = await svc.images.commit({
    layers: [...manifest.layers, { mediaType: MediaType.OciLayer, digest: blob.digest, size: blob.size }],
    config: {
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: [base.diffIds[0] as Digest, sha256Digest(top)] },
    },
    refs: ['docker.io/library/layered:1'],
  });
  const img = await svc.images.resolve('layered:1');
  assert.equal(img.id, id);
  const target = await mount((await svc.snapshotter.prepare('it-wh', img))[0]!);
  await assert.rejects(fs.access(join(target, 'etc/group')));
  await fs.access(join(target, 'etc/passwd'));
  assert.deepEqual(await fs.readdir(join(target, 'usr/bin')), ['only']);
  assert.equal(await fs.readlink(join(target, 'bin/sh')), 'busybox');
  await umount(target);
  await svc.snapshotter.remove('it-wh');
});
