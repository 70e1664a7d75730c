// Image archives (save/load), layer fidelity (xattrs, file capabilities, zstd), history, prune and garbage
// collection, against the real image service as root (real setfattr, mknod, zstd).
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import * as tar from 'tar';
import { sha256Digest, type Digest } from '../../src/core/digest.js';
import { InvalidArgumentError, NotFoundError } from '../../src/core/errors.js';
import { createImageService } from '../../src/image/index.js';
import { MediaType } from '../../src/image/oci-image.js';
import { encodePaxRecords } from '../../src/image/tar-xattrs.js';
import { writeTar } from '../../src/image/tar-write.js';

const run = promisify(execFile);
const temps: string[] = [];
after(() => Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true }))));

async function service() {
  const root = await fs.mkdtemp(join(tmpdir(), 'abode-archive-it-'));
  temps.push(root);
  return { root, ...createImageService({ root, builtins: {} }) };
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Entry names and contents of a tar held in memory. */
async function untar(buf: Buffer): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const parser = new tar.Parser();
  parser.on('entry', (e) => {
    const parts: Buffer[] = [];
    e.on('data', (c: Buffer) => parts.push(c));
    e.on('end', () => out.set(e.path.replace(/^\.\//, ''), Buffer.concat(parts)));
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    parser.end(buf);
  });
  return out;
}

/** A tar of entries where files may carry PAX xattrs (`SCHILY.xattr.NAME`, binary values). */
function tarWithXattrs(
  entries: {
    path: string;
    type: 'File' | 'Directory';
    data?: string;
    mode?: number;
    xattrs?: Record<string, Buffer>;
  }[],
): Buffer {
  const blocks: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);
  for (const e of entries) {
    if (e.xattrs) {
      const body = encodePaxRecords(
        new Map(Object.entries(e.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v] as [string, Buffer])),
      );
      const h = new Header({
        path: `PaxHeader/${e.path}`,
        type: 'ExtendedHeader',
        size: body.length,
        mode: 0o644,
        mtime: new Date(0),
      });
      h.encode();
      blocks.push(h.block!, body, pad(body.length));
    }
    const data = Buffer.from(e.data ?? '');
    const h = new Header({
      path: e.path,
      type: e.type,
      size: data.length,
      mode: e.mode ?? (e.type === 'Directory' ? 0o755 : 0o644),
      uid: 0,
      gid: 0,
      mtime: new Date('2024-01-01T00:00:00Z'),
    });
    h.encode();
    blocks.push(h.block!, data, pad(data.length));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** Commits a one- or two-layer image whose layer blobs are given (already compressed or not). */
async function commitImage(
  svc: Awaited<ReturnType<typeof service>>,
  layers: { blob: Buffer; tar: Buffer; mediaType: string }[],
  ref: string,
  extra: {
    history?: { created_by: string; empty_layer?: boolean; comment?: string }[];
    author?: string;
  } = {},
): Promise<Digest> {
  const descs = [];
  for (const l of layers) {
    const info = await svc.images.content.write(l.blob);
    descs.push({ mediaType: l.mediaType, digest: info.digest, size: info.size });
  }
  return svc.images.commit({
    layers: descs,
    config: {
      created: '2024-02-03T04:05:06Z',
      architecture: 'amd64',
      os: 'linux',
      ...(extra.author ? { author: extra.author } : {}),
      config: { Cmd: ['/bin/sh'], Env: ['A=1'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => sha256Digest(l.tar)) },
      ...(extra.history ? { history: extra.history } : {}),
    },
    refs: [ref],
  });
}

const BASE = writeTar([
  { type: 'dir', path: 'etc', mode: 0o755 },
  { type: 'file', path: 'etc/hello', mode: 0o644, data: 'hello from the base\n' },
  { type: 'file', path: 'etc/tool', mode: 0o4755, data: '#!/bin/sh\n', uid: 1000, gid: 1000 },
  { type: 'hardlink', path: 'etc/tool-link', target: 'etc/tool' },
  { type: 'symlink', path: 'etc/sym', target: 'hello' },
]);
const TOP = writeTar([
  { type: 'dir', path: 'etc', mode: 0o755 },
  { type: 'file', path: 'etc/.wh.hello', mode: 0o644, data: '' },
  { type: 'file', path: 'etc/top', mode: 0o600, data: 'top\n' },
]);

async function storeState(root: string) {
  const blobs = (await fs.readdir(join(root, 'content/blobs/sha256')).catch(() => [])).sort();
  const layers = (await fs.readdir(join(root, 'layers')).catch(() => []))
    .filter((n) => !n.startsWith('.'))
    .sort();
  const index = await fs.readFile(join(root, 'images/index.json'), 'utf8').catch(() => '');
  const ingest = await fs.readdir(join(root, 'content/ingest')).catch(() => []);
  return { blobs, layers, index, ingest };
}

test('save → load round trip in both formats keeps the image ID, tags and every file attribute', async () => {
  const a = await service();
  const id = await commitImage(
    a,
    [
      { blob: gzipSync(BASE), tar: BASE, mediaType: MediaType.OciLayerGzip },
      { blob: TOP, tar: TOP, mediaType: MediaType.OciLayer },
    ],
    'docker.io/library/two:1',
  );
  await a.images.tag('two:1', 'example.com:5000/team/two:latest');
  for (const format of ['docker', 'oci'] as const) {
    const archive = await collect(await a.images.save(['two:1', 'example.com:5000/team/two:latest'], format));
    const files = await untar(archive);
    if (format === 'docker') {
      const manifest = JSON.parse(files.get('manifest.json')!.toString());
      assert.deepEqual(manifest[0].RepoTags, ['docker.io/library/two:1', 'example.com:5000/team/two:latest']);
      assert.equal(manifest[0].Config, `${id.slice(7)}.json`);
      // layers are written uncompressed, as docker does: each is its diff ID
      for (const [i, p] of (manifest[0].Layers as string[]).entries())
        assert.equal(sha256Digest(files.get(p)!), sha256Digest([BASE, TOP][i]!));
      assert.ok(files.has('repositories'));
    } else {
      const index = JSON.parse(files.get('index.json')!.toString());
      assert.equal(index.manifests.length, 2);
      assert.deepEqual(
        index.manifests.map(
          (m: { annotations: Record<string, string> }) => m.annotations['io.containerd.image.name'],
        ),
        ['docker.io/library/two:1', 'example.com:5000/team/two:latest'],
      );
      assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], '1');
      assert.ok(files.has('oci-layout'));
      for (const [p, data] of files)
        if (p.startsWith('blobs/sha256/') && p.length > 13)
          assert.equal(sha256Digest(data), `sha256:${p.slice(13)}`);
    }
    const b = await service();
    const loaded = await b.images.loadArchive(Readable.from([archive]));
    assert.equal(loaded.format, format === 'docker' ? 'docker-archive' : 'oci');
    assert.deepEqual(loaded.lines, ['Loaded image: two:1', 'Loaded image: example.com:5000/team/two:latest']);
    const img = await b.images.resolve('two:1');
    assert.equal(img.id, id);
    assert.deepEqual(img.repoTags, ['docker.io/library/two:1', 'example.com:5000/team/two:latest']);
    if (format === 'oci') assert.equal(img.manifestDigest, (await a.images.resolve('two:1')).manifestDigest);
    const [base] = await b.images.layerPaths(img);
    const tool = await fs.stat(join(base!, 'etc/tool'));
    assert.equal(tool.mode & 0o7777, 0o4755);
    assert.equal(tool.uid, 1000);
    assert.equal(tool.mtimeMs, Date.parse('2024-01-01T00:00:00Z'));
    assert.equal((await fs.stat(join(base!, 'etc/tool-link'))).ino, tool.ino);
    assert.equal(await fs.readlink(join(base!, 'etc/sym')), 'hello');
    // loading again changes nothing and says so
    const again = await b.images.loadArchive(Readable.from([archive]));
    assert.equal(again.images[0]!.id, id);
  }
});

test('a docker-archive with gzip layer tars (not what docker writes) loads too, and so does a gzip archive', async () => {
  const src = await service();
  const id = await commitImage(
    src,
    [{ blob: gzipSync(BASE), tar: BASE, mediaType: MediaType.OciLayerGzip }],
    'docker.io/library/gz:1',
  );
  const config = await src.images.content.read(id);
  const layer = gzipSync(BASE);
  const manifest = JSON.stringify([{ Config: 'config.json', RepoTags: ['gz:1'], Layers: ['layer.tar.gz'] }]);
  const archive = writeTar([
    { type: 'file', path: 'config.json', mode: 0o644, data: config },
    { type: 'file', path: 'layer.tar.gz', mode: 0o644, data: layer },
    { type: 'file', path: 'manifest.json', mode: 0o644, data: manifest },
  ]);
  const dst = await service();
  assert.deepEqual((await dst.images.loadArchive(Readable.from([gzipSync(archive)]))).lines, [
    'Loaded image: gz:1',
  ]);
  const img = await dst.images.resolve('gz:1');
  assert.equal(img.id, id);
  const [fsDir] = await dst.images.layerPaths(img);
  assert.equal(await fs.readFile(join(fsDir!, 'etc/hello'), 'utf8'), 'hello from the base\n');
});

test('bad archives fail with a clear error and commit nothing', async () => {
  const src = await service();
  const id = await commitImage(
    src,
    [{ blob: gzipSync(BASE), tar: BASE, mediaType: MediaType.OciLayerGzip }],
    'docker.io/library/bad:1',
  );
  const oci = await untar(await collect(await src.images.save(['bad:1'], 'oci')));
  const layerPath = [...oci.keys()].find((p) => p.startsWith('blobs/') && oci.get(p)![0] === 0x1f)!;
  const rebuild = (files: Map<string, Buffer>) =>
    writeTar([...files].map(([path, data]) => ({ type: 'file' as const, path, mode: 0o644, data })));

  const dst = await service();
  await dst.images.loadArchive(Readable.from([rebuild(new Map([['keep/x', Buffer.from('{}')], ...oci]))]));
  const before = await storeState(dst.root);
  await dst.images.remove('bad:1', { force: false, inUse: () => false });
  const empty = await storeState(dst.root);

  const cases: [string, Buffer, RegExp][] = [
    ['random bytes', Buffer.alloc(4096, 7), /invalid tar archive/],
    ['an empty stream', Buffer.alloc(0), /the stream is empty/],
    [
      'a tar that is no archive',
      writeTar([{ type: 'file', path: 'hello.txt', mode: 0o644, data: 'hi' }]),
      /not a docker-archive.*or an OCI image layout/,
    ],
    [
      'a missing blob',
      rebuild(new Map([...oci].filter(([p]) => p !== layerPath))),
      /layer blob .* is missing/,
    ],
    [
      'a blob whose digest does not match',
      rebuild(
        new Map([...oci].map(([p, d]) => [p, p === layerPath ? Buffer.concat([d, Buffer.from('x')]) : d])),
      ),
      /digest mismatch: expected sha256:/,
    ],
    [
      'a layer that does not unpack to its diff ID',
      (() => {
        const other = gzipSync(TOP);
        const m = new Map(oci);
        const manifestPath = [...m.keys()].find((p) => m.get(p)!.toString().includes('"layers":['))!;
        const doc = JSON.parse(m.get(manifestPath)!.toString());
        doc.layers[0] = { ...doc.layers[0], digest: sha256Digest(other), size: other.length };
        const bytes = Buffer.from(JSON.stringify(doc));
        m.delete(manifestPath);
        m.set(`blobs/sha256/${sha256Digest(bytes).slice(7)}`, bytes);
        m.set(`blobs/sha256/${sha256Digest(other).slice(7)}`, other);
        const index = JSON.parse(m.get('index.json')!.toString());
        index.manifests[0] = { ...index.manifests[0], digest: sha256Digest(bytes), size: bytes.length };
        m.set('index.json', Buffer.from(JSON.stringify(index)));
        return rebuild(m);
      })(),
      /diff ID mismatch/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    await assert.rejects(dst.images.loadArchive(Readable.from([bytes])), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError || e instanceof NotFoundError, `${what}: ${String(e)}`);
      assert.match((e as Error).message, message, what);
      return true;
    });
    assert.deepEqual(await storeState(dst.root), empty, `${what} left something behind`);
  }
  assert.notDeepEqual(before, empty);
  await assert.rejects(dst.images.resolve(id), NotFoundError);
});

test('extended attributes and file capabilities in layer tars are applied, and survive save/load', async () => {
  // security.capability v2 granting cap_net_raw (13) permitted + effective
  const cap = Buffer.alloc(20);
  cap.writeUInt32LE(0x02000001, 0);
  cap.writeUInt32LE(1 << 13, 4);
  const layer = tarWithXattrs([
    { path: 'bin/', type: 'Directory', xattrs: { 'user.dir': Buffer.from('on a dir') } },
    {
      path: 'bin/ping',
      type: 'File',
      data: 'ELF?',
      mode: 0o755,
      xattrs: { 'security.capability': cap, 'user.abode': Buffer.from([0, 1, 2, 255]) },
    },
    { path: 'bin/plain', type: 'File', data: 'x' },
  ]);
  const a = await service();
  await commitImage(
    a,
    [{ blob: gzipSync(layer), tar: layer, mediaType: MediaType.OciLayerGzip }],
    'docker.io/library/caps:1',
  );
  const check = async (svc: Awaited<ReturnType<typeof service>>) => {
    const [dir] = await svc.images.layerPaths(await svc.images.resolve('caps:1'));
    const { stdout } = await run('getcap', [join(dir!, 'bin/ping')]);
    assert.match(stdout, /cap_net_raw[=+]ep/);
    const hex = (await run('getfattr', ['-e', 'hex', '-n', 'user.abode', join(dir!, 'bin/ping')])).stdout;
    assert.match(hex, /user\.abode=0x000102ff/);
    assert.match(
      (await run('getfattr', ['-n', 'user.dir', join(dir!, 'bin')])).stdout,
      /user\.dir="on a dir"/,
    );
    assert.equal((await run('getfattr', ['-d', join(dir!, 'bin/plain')])).stdout, '');
  };
  await check(a);
  for (const format of ['docker', 'oci'] as const) {
    const b = await service();
    await b.images.loadArchive(await a.images.save(['caps:1'], format));
    await check(b);
  }
});

test('zstd layers unpack through the zstd binary; save to docker-archive writes them uncompressed', async () => {
  const zst = execFileSync('zstd', ['-q', '-c'], { input: BASE });
  assert.equal(zst.readUInt32LE(0), 0xfd2fb528);
  const a = await service();
  const id = await commitImage(
    a,
    [{ blob: zst, tar: BASE, mediaType: MediaType.OciLayerZstd }],
    'docker.io/library/zst:1',
  );
  const [dir] = await a.images.layerPaths(await a.images.resolve('zst:1'));
  assert.equal(await fs.readFile(join(dir!, 'etc/hello'), 'utf8'), 'hello from the base\n');

  const docker = await untar(await collect(await a.images.save(['zst:1'], 'docker')));
  const m = JSON.parse(docker.get('manifest.json')!.toString());
  assert.equal(sha256Digest(docker.get(m[0].Layers[0])!), sha256Digest(BASE));
  const oci = await collect(await a.images.save(['zst:1'], 'oci'));
  const b = await service();
  await b.images.loadArchive(Readable.from([oci]));
  const img = await b.images.inspect('zst:1');
  assert.equal(img.id, id);
  assert.equal(img.layers[0]!.mediaType, MediaType.OciLayerZstd);
  // a docker-archive whose layer.tar is zstd-compressed is recognized by its magic
  const zdocker = writeTar([
    { type: 'file', path: 'c.json', mode: 0o644, data: await a.images.content.read(id) },
    { type: 'file', path: 'l/layer.tar', mode: 0o644, data: zst },
    {
      type: 'file',
      path: 'manifest.json',
      mode: 0o644,
      data: JSON.stringify([{ Config: 'c.json', RepoTags: ['zst:2'], Layers: ['l/layer.tar'] }]),
    },
  ]);
  const c = await service();
  await c.images.loadArchive(Readable.from([zdocker]));
  const [zdir] = await c.images.layerPaths(await c.images.resolve('zst:2'));
  assert.equal(await fs.readFile(join(zdir!, 'etc/hello'), 'utf8'), 'hello from the base\n');
  // a corrupt zstd layer is an error, not a hang
  const broken = Buffer.concat([zst.subarray(0, 20), Buffer.alloc(30, 1)]);
  const d = await service();
  await assert.rejects(
    commitImage(
      d,
      [{ blob: broken, tar: BASE, mediaType: MediaType.OciLayerZstd }],
      'docker.io/library/zst:3',
    ),
    /zstd|invalid tar/,
  );
});

test('history and inspect details come from the config', async () => {
  const a = await service();
  const id = await commitImage(
    a,
    [
      { blob: gzipSync(BASE), tar: BASE, mediaType: MediaType.OciLayerGzip },
      { blob: gzipSync(TOP), tar: TOP, mediaType: MediaType.OciLayerGzip },
    ],
    'docker.io/library/hist:1',
    {
      author: 'someone',
      history: [
        { created_by: 'ADD base.tar /' },
        { created_by: 'ENV A=1', empty_layer: true },
        { created_by: 'RUN make', comment: 'top' },
      ],
    },
  );
  const h = await a.images.history('hist:1');
  assert.deepEqual(
    h.map((e) => [e.id, e.createdBy, e.size, e.emptyLayer, e.comment]),
    [
      [id, 'RUN make', 4, false, 'top'],
      ['<missing>', 'ENV A=1', 0, true, ''],
      ['<missing>', 'ADD base.tar /', 30, false, ''],
    ],
  );
  assert.deepEqual(h[0]!.tags, ['docker.io/library/hist:1']);
  const d = await a.images.inspect('hist:1');
  assert.equal(d.author, 'someone');
  assert.equal(d.layers.length, 2);
  assert.equal(d.layerPaths.length, 2);
  assert.equal(d.diffIds[1], sha256Digest(TOP));
});

test('prune removes dangling images (all unused with all) and garbage collection frees the disk', async () => {
  const a = await service();
  const big = writeTar([
    { type: 'file', path: 'big', mode: 0o644, data: Buffer.alloc(8 << 20, 'x').toString() },
  ]);
  const keep = await commitImage(
    a,
    [{ blob: gzipSync(BASE), tar: BASE, mediaType: MediaType.OciLayerGzip }],
    'docker.io/library/keep:1',
  );
  const used = await commitImage(
    a,
    [{ blob: gzipSync(TOP), tar: TOP, mediaType: MediaType.OciLayerGzip }],
    'docker.io/library/used:1',
  );
  const dangling = await commitImage(
    a,
    [{ blob: big, tar: big, mediaType: MediaType.OciLayer }],
    'docker.io/library/big:1',
  );
  await a.images.remove('big:1', { force: false, inUse: () => false }); // deletes it: no other tag
  await commitImage(a, [{ blob: big, tar: big, mediaType: MediaType.OciLayer }], 'docker.io/library/big:1');
  await a.images.tag(keep, 'big:1'); // big loses its tag: dangling
  const du = () => Number(execFileSync('du', ['-sb', a.root]).toString().split('\t')[0]);
  const inUse = (x: string) => x === used;

  const before = du();
  const pruned = await a.images.prune({ all: false, inUse });
  assert.deepEqual(pruned.deleted[0], { Deleted: dangling });
  assert.ok(pruned.spaceReclaimed > 8 << 20, `reclaimed ${pruned.spaceReclaimed}`);
  assert.ok(before - du() > 8 << 20, `du went from ${before} to ${du()}`);
  assert.equal((await a.images.list()).length, 2);

  // Garbage: an unreferenced blob and an unpacked layer left by an interrupted pull an hour ago.
  const orphan = await a.images.content.write(gzipSync(big));
  // ... and an image unpacked but never recorded (a crash before the index update): its layer is garbage too.
  const lost = writeTar([{ type: 'file', path: 'lost', mode: 0o644, data: 'lost' }]);
  const lostId = await commitImage(
    a,
    [{ blob: lost, tar: lost, mediaType: MediaType.OciLayer }],
    'docker.io/library/lost:1',
  );
  const indexFile = join(a.root, 'images/index.json');
  const doc = JSON.parse(await fs.readFile(indexFile, 'utf8'));
  const lostManifest = doc.images[lostId].manifest.digest;
  delete doc.images[lostId];
  delete doc.refs['docker.io/library/lost:1'];
  await fs.writeFile(indexFile + '.new', JSON.stringify(doc));
  await fs.rename(indexFile + '.new', indexFile);
  const lostLayer = join(a.root, 'layers', sha256Digest(lost).slice(7));
  await fs.access(lostLayer);
  const hour = new Date(Date.now() - 3600_000);
  await fs.utimes(a.images.content.blobPath(orphan.digest), hour, hour);
  const fresh = await a.images.content.write(Buffer.from('fresh garbage'));
  const beforeGc = du();
  const report = await a.images.collectGarbage();
  assert.ok(report.blobsDeleted.includes(orphan.digest));
  assert.ok(!report.blobsDeleted.includes(fresh.digest), 'fresh blobs are left to writers in flight');
  assert.ok(beforeGc - du() >= orphan.size);
  const now = await a.images.collectGarbage(0);
  assert.deepEqual(now.blobsDeleted.sort(), [fresh.digest, lostId, lostManifest, sha256Digest(lost)].sort());
  assert.deepEqual(now.layersDeleted, [sha256Digest(lost)]);
  await assert.rejects(fs.access(lostLayer));
  // what images use is intact
  for (const ref of ['keep:1', 'used:1']) {
    const img = await a.images.resolve(ref);
    for (const p of await a.images.layerPaths(img)) await fs.access(p);
  }

  const all = await a.images.prune({ all: true, inUse });
  assert.ok(all.deleted.some((d) => d.Deleted === keep));
  assert.deepEqual(
    (await a.images.list()).map((i) => i.id),
    [used],
  );
  const usage = await a.images.diskUsage();
  assert.equal(usage.images.length, 1);
  assert.ok(usage.totalBytes > 0);
});
