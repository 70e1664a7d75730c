// Registry failure modes and the bearer-token flow, against a scripted registry on node:http.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createImageService, type LocalImageService } from '../../src/image/index.js';
import { writeTar } from '../../src/image/tar-write.js';
import { FakeRegistry, sha256 } from './registry-helpers.js';

const roots: string[] = [];
async function service() {
  const root = await fs.mkdtemp(join(tmpdir(), 'abode-registry-err-'));
  roots.push(root);
  const images = createImageService({ root }).images as unknown as LocalImageService;
  images.registryOptions.retryDelayMs = 5;
  images.registryOptions.attempts = 3;
  return { root, images };
}

/** A one-layer image served from memory. */
function image() {
  const big = Buffer.alloc(200_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 8)) % 256;
  const tar = writeTar([{ type: 'file', path: 'payload.bin', mode: 0o644, data: big }]);
  const layer = gzipSync(tar, { level: 0 }); // stays large, so truncation happens mid-body
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/x'] },
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: sha256(config),
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          digest: sha256(layer),
          size: layer.length,
        },
      ],
    }),
  );
  return { layer, config, manifest, layerDigest: sha256(layer), manifestDigest: sha256(manifest) };
}

const img = image();
const fake = new FakeRegistry();

/** Serves the image; `overrides` answer specific requests first. */
function serve(
  overrides: (req: IncomingMessage, res: ServerResponse) => boolean | void = () => false,
): (req: IncomingMessage, res: ServerResponse) => boolean | void {
  return (req, res) => {
    if (overrides(req, res) !== false) return true;
    const url = req.url ?? '';
    if (url === '/v2/') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
      return true;
    }
    if (/^\/v2\/app\/manifests\/(1|sha256:)/.test(url)) {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
      res.end(img.manifest);
      return true;
    }
    const blob = /^\/v2\/app\/blobs\/(sha256:[a-f0-9]+)$/.exec(url)?.[1];
    const data = blob === sha256(img.config) ? img.config : blob === img.layerDigest ? img.layer : undefined;
    if (data) {
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const start = range ? Number(range[1]) : 0;
      res.writeHead(range ? 206 : 200, {
        'content-length': String(data.length - start),
        ...(range ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
      });
      res.end(data.subarray(start));
      return true;
    }
    return false;
  };
}

before(async () => fake.start());
after(async () => {
  await fake.stop();
  for (const r of roots) await fs.rm(r, { recursive: true, force: true });
});
afterEach(() => {
  fake.requests.length = 0;
});

async function assertNothingCommitted(root: string, images: LocalImageService) {
  assert.deepEqual(await images.list(), []);
  assert.ok(
    !(await images.content.has(img.layerDigest as `sha256:${string}`)),
    'the layer blob was committed',
  );
  const ingest = await fs.readdir(join(root, 'content', 'ingest')).catch(() => []);
  assert.deepEqual(ingest, [], 'ingest files left behind');
}

describe('failures name what and where, and commit nothing', () => {
  test('a registry answering 500 for the manifest', async () => {
    fake.handler = serve((req, res) => {
      if (!req.url?.includes('/manifests/')) return false;
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('boom');
    });
    const { root, images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      (err: Error) => {
        assert.equal(
          err.message,
          `manifest ${fake.host}/app:1: the registry answered 500 Internal Server Error`,
        );
        assert.equal((err as { code?: string }).code, 'unavailable');
        return true;
      },
    );
    await assertNothingCommitted(root, images);
  });

  test('a registry answering 500 for a blob, every time: retried, then an error naming the blob', async () => {
    fake.handler = serve((req, res) => {
      if (req.url !== `/v2/app/blobs/${img.layerDigest}`) return false;
      res.writeHead(500);
      res.end();
    });
    const { root, images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      new RegExp(`blob ${img.layerDigest} of ${fake.host}/app: the registry answered 500`),
    );
    assert.equal(fake.requests.filter((r) => r.url.includes(img.layerDigest)).length, 3);
    await assertNothingCommitted(root, images);
  });

  test('a 404 for the manifest', async () => {
    fake.handler = serve((req, res) => {
      if (!req.url?.includes('/manifests/')) return false;
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
    });
    const { images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      new RegExp(`manifest ${fake.host}/app:1: not found \\(manifest_unknown: manifest unknown\\)`),
    );
  });

  test('a 401 without credentials', async () => {
    fake.handler = serve((req, res) => {
      if (!req.url?.includes('/manifests/')) return false;
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    });
    const { images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      new RegExp(`manifest ${fake.host}/app:1: unauthorized: authentication required`),
    );
  });

  test('a malformed manifest', async () => {
    fake.handler = serve((req, res) => {
      if (!req.url?.includes('/manifests/')) return false;
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
      res.end('{"schemaVersion": 2, "config": ');
    });
    const { root, images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      new RegExp(`manifest ${fake.host}/app:1: manifest: not valid JSON`),
    );
    await assertNothingCommitted(root, images);
  });

  test('a manifest of an unknown media type', async () => {
    fake.handler = serve((req, res) => {
      if (!req.url?.includes('/manifests/')) return false;
      res.writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' });
      res.end(JSON.stringify({ schemaVersion: 1, name: 'app', tag: '1', fsLayers: [] }));
    });
    const { images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      /unsupported manifest media type: application\/vnd\.docker\.distribution\.manifest\.v1\+prettyjws/,
    );
  });

  test('a layer of an unknown media type', async () => {
    const m = JSON.parse(img.manifest.toString()) as { layers: { mediaType: string }[] };
    m.layers[0]!.mediaType = 'application/vnd.example.strange';
    fake.handler = serve((req, res) => {
      if (!req.url?.includes('/manifests/')) return false;
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
      res.end(JSON.stringify(m));
    });
    const { images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      /unsupported layer media type: application\/vnd\.example\.strange/,
    );
  });

  test('a corrupted blob (right size, wrong bytes): a digest mismatch naming the blob', async () => {
    fake.handler = serve((req, res) => {
      if (req.url !== `/v2/app/blobs/${img.layerDigest}`) return false;
      const bad = Buffer.from(img.layer);
      bad[1000] = bad[1000]! ^ 0xff;
      res.writeHead(200, { 'content-length': String(bad.length) });
      res.end(bad);
    });
    const { root, images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      new RegExp(`blob ${img.layerDigest} of ${fake.host}/app: digest mismatch`),
    );
    await assertNothingCommitted(root, images);
  });

  test('a layer whose content does not match the config diff ID', async () => {
    const config = JSON.parse(img.config.toString()) as { rootfs: { diff_ids: string[] } };
    config.rootfs.diff_ids = [`sha256:${'1'.repeat(64)}`];
    const configBytes = Buffer.from(JSON.stringify(config));
    const m = JSON.parse(img.manifest.toString()) as { config: { digest: string; size: number } };
    m.config = { ...m.config, digest: sha256(configBytes), size: configBytes.length };
    fake.handler = serve((req, res) => {
      if (req.url?.includes('/manifests/')) {
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
        res.end(JSON.stringify(m));
        return true;
      }
      if (req.url === `/v2/app/blobs/${sha256(configBytes)}`) {
        res.writeHead(200, { 'content-length': String(configBytes.length) });
        res.end(configBytes);
        return true;
      }
      return false;
    });
    const { root, images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      new RegExp(`layer ${img.layerDigest} of ${fake.host}/app: layer diff ID mismatch`),
    );
    assert.deepEqual(await images.list(), []);
    const layers = await fs.readdir(join(root, 'layers')).catch(() => []);
    assert.deepEqual(layers, [], 'no unpacked layer left');
  });

  test('a manifest whose digest differs from the one asked for', async () => {
    fake.handler = serve();
    const { images } = await service();
    const wrong = `sha256:${'0'.repeat(64)}`;
    await assert.rejects(
      images.pull(`${fake.host}/app@${wrong}`, {}, () => undefined),
      new RegExp(`manifest ${fake.host}/app@${wrong}: digest mismatch`),
    );
  });

  test('a transfer that breaks off is resumed with Range', async () => {
    let broken = false;
    fake.handler = serve((req, res) => {
      if (req.url !== `/v2/app/blobs/${img.layerDigest}` || broken) return false;
      broken = true;
      res.writeHead(200, { 'content-length': String(img.layer.length) });
      res.write(img.layer.subarray(0, 70_000), () => res.destroy());
    });
    const { images } = await service();
    const rec = await images.pull(`${fake.host}/app:1`, {}, () => undefined);
    assert.equal(rec.id, sha256(img.config));
    const ranges = fake.requests.filter((r) => r.url.includes(img.layerDigest)).map((r) => r.headers.range);
    assert.equal(ranges.length, 2);
    assert.equal(ranges[0], undefined);
    assert.match(ranges[1] ?? '', /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(ranges[1]!)![0]) > 0);
    const [path] = await images.layerPaths(rec);
    assert.equal((await fs.stat(join(path!, 'payload.bin'))).size, 200_000);
  });

  test('a registry that ignores Range: the blob starts over, is verified and unpacked once', async () => {
    let broken = false;
    fake.handler = serve((req, res) => {
      if (req.url !== `/v2/app/blobs/${img.layerDigest}`) return false;
      res.writeHead(200, { 'content-length': String(img.layer.length) });
      if (broken) return void res.end(img.layer);
      broken = true;
      res.write(img.layer.subarray(0, 70_000), () => res.destroy());
    });
    const { root, images } = await service();
    const rec = await images.pull(`${fake.host}/app:1`, {}, () => undefined);
    assert.equal(rec.id, sha256(img.config));
    const ranges = fake.requests.filter((r) => r.url.includes(img.layerDigest)).map((r) => r.headers.range);
    assert.equal(ranges.length, 2);
    assert.match(ranges[1] ?? '', /^bytes=\d+-$/);
    const [path] = await images.layerPaths(rec);
    assert.equal((await fs.stat(join(path!, 'payload.bin'))).size, 200_000);
    assert.ok(await images.content.has(img.layerDigest as `sha256:${string}`));
    assert.deepEqual(await fs.readdir(join(root, 'content', 'ingest')), [], 'ingest files left behind');
    const layers = await fs.readdir(join(root, 'layers'));
    assert.deepEqual(
      layers.filter((n) => n.startsWith('.tmp-')),
      [],
      'the abandoned unpack was removed',
    );
  });

  test('a transfer that always breaks off: an error naming the blob, nothing committed', async () => {
    fake.handler = serve((req, res) => {
      if (req.url !== `/v2/app/blobs/${img.layerDigest}`) return false;
      res.writeHead(200, { 'content-length': String(img.layer.length) });
      res.write(img.layer.subarray(0, 1000), () => res.destroy());
    });
    const { root, images } = await service();
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      (err: Error) => {
        assert.match(err.message, new RegExp(`^blob ${img.layerDigest} of ${fake.host}/app: `));
        assert.match(err.message, /broke off|truncated/);
        return true;
      },
    );
    await assertNothingCommitted(root, images);
  });
});

describe('the Docker bearer-token flow', () => {
  test('a 401 challenge leads to the token service with the scope and the stored credentials', async () => {
    const token = 'tok-123';
    const tokenRequests: URL[] = [];
    fake.handler = serve((req, res) => {
      const url = new URL(req.url ?? '/', `http://${fake.host}`);
      if (url.pathname === '/token') {
        tokenRequests.push(url);
        if (req.headers.authorization !== `Basic ${Buffer.from('bob:pw').toString('base64')}`) {
          res.writeHead(401);
          res.end();
          return true;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token, expires_in: 300 }));
        return true;
      }
      if (req.headers.authorization !== `Bearer ${token}`) {
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="http://${fake.host}/token",service="fake-registry",scope="repository:app:pull"`,
          'content-type': 'application/json',
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return true;
      }
      return false;
    });
    const { images } = await service();
    await assert.rejects(
      images.login(fake.host, { username: 'bob', password: 'nope' }),
      /unauthorized: incorrect username or password/,
    );
    await assert.rejects(
      images.pull(`${fake.host}/app:1`, {}, () => undefined),
      /unauthorized: authentication required/,
    );
    assert.equal(await images.login(fake.host, { username: 'bob', password: 'pw' }), fake.host);
    tokenRequests.length = 0;
    const rec = await images.pull(`${fake.host}/app:1`, {}, () => undefined);
    assert.equal(rec.id, sha256(img.config));
    assert.equal(tokenRequests.length, 1);
    assert.equal(tokenRequests[0]!.searchParams.get('service'), 'fake-registry');
    assert.deepEqual(tokenRequests[0]!.searchParams.getAll('scope'), ['repository:app:pull']);
  });
});
