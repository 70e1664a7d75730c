// Registry pull/push/login against Debian's docker-registry on 127.0.0.1 (pushed to and read by skopeo).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ProgressEvent } from '../../src/core/image.js';
import { createImageService, type LocalImageService } from '../../src/image/index.js';
import { writeTar } from '../../src/image/tar-write.js';
import { exec, makeLayout, skopeoCopy, startRegistry, type RunningRegistry } from './registry-helpers.js';

const roots: string[] = [];
async function service() {
  const root = await fs.mkdtemp(join(tmpdir(), 'abode-registry-it-'));
  roots.push(root);
  const svc = createImageService({ root });
  const images = svc.images as unknown as LocalImageService;
  images.registryOptions.retryDelayMs = 10;
  return { root, images };
}

function collector() {
  const events: ProgressEvent[] = [];
  return { events, on: (e: ProgressEvent) => events.push(e), statuses: () => events.map((e) => e.status) };
}

let reg: RunningRegistry;
let work: string;

before(async () => {
  reg = await startRegistry();
  work = await fs.mkdtemp(join(tmpdir(), 'abode-registry-work-'));
});
after(async () => {
  await reg?.stop();
  for (const r of roots) await fs.rm(r, { recursive: true, force: true });
  await fs.rm(work, { recursive: true, force: true });
});

const file = (path: string, data: string, mode = 0o644) => ({ type: 'file' as const, path, mode, data });
const dir = (path: string) => ({ type: 'dir' as const, path, mode: 0o755 });

describe('pull', () => {
  test('an OCI image pushed by skopeo: layers downloaded, verified, unpacked; tags and repo digests recorded', async () => {
    const layout = await makeLayout(join(work, 'oci-app'), 'v1', [
      {
        layers: [
          [dir('etc'), file('etc/base', 'base layer\n')],
          [file('hello.txt', 'hello from the registry\n'), file('etc/base', 'overridden\n')],
        ],
        cmd: ['/hello'],
      },
    ]);
    await skopeoCopy(`oci:${layout.dir}:v1`, `docker://${reg.host}/test/app:v1`);
    const { images } = await service();
    const p = collector();
    const rec = await images.pull(`${reg.host}/test/app:v1`, {}, p.on);
    assert.equal(rec.id, layout.configDigest);
    assert.deepEqual(rec.repoTags, [`${reg.host}/test/app:v1`]);
    assert.deepEqual(rec.repoDigests, [`${reg.host}/test/app@${layout.manifestDigest}`]);
    assert.equal(rec.manifestDigest, layout.manifestDigest);
    assert.deepEqual(rec.config.Cmd, ['/hello']);
    const paths = await images.layerPaths(rec);
    assert.equal(paths.length, 2);
    assert.equal(await fs.readFile(join(paths[1]!, 'hello.txt'), 'utf8'), 'hello from the registry\n');
    const statuses = p.statuses();
    assert.ok(statuses.includes('Pull complete'), statuses.join('|'));
    assert.ok(statuses.includes(`Digest: ${layout.manifestDigest}`));
    assert.ok(statuses.includes(`Status: Downloaded newer image for ${reg.host}/test/app:v1`));
    for (const d of layout.layerDigests)
      assert.ok(p.events.some((e) => e.id === d.slice(7, 19) && e.status === 'Pull complete'));

    // Again: nothing downloaded, up to date. By digest: resolves to the same image.
    const again = collector();
    await images.pull(`${reg.host}/test/app:v1`, {}, again.on);
    assert.ok(again.statuses().includes('Already exists'));
    assert.ok(!again.statuses().includes('Downloading'));
    assert.ok(again.statuses().includes(`Status: Image is up to date for ${reg.host}/test/app:v1`));
    const byDigest = await images.pull(`${reg.host}/test/app@${layout.manifestDigest}`, {}, () => undefined);
    assert.equal(byDigest.id, rec.id);
    assert.equal((await images.resolve(`${reg.host}/test/app@${layout.manifestDigest}`)).id, rec.id);
  });

  test('a Docker schema-2 image (skopeo --format v2s2)', async () => {
    const layout = await makeLayout(join(work, 'oci-docker'), 'v2', [
      { layers: [[file('docker.txt', 'schema 2\n')]] },
    ]);
    await skopeoCopy(`oci:${layout.dir}:v2`, `docker://${reg.host}/test/docker:v2`, ['--format', 'v2s2']);
    const { images, root } = await service();
    const rec = await images.pull(`${reg.host}/test/docker:v2`, {}, () => undefined);
    const [path] = await images.layerPaths(rec);
    assert.equal(await fs.readFile(join(path!, 'docker.txt'), 'utf8'), 'schema 2\n');
    const manifest = JSON.parse(
      await fs.readFile(join(root, 'content/blobs/sha256', rec.manifestDigest.slice(7)), 'utf8'),
    ) as { mediaType: string };
    assert.equal(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  });

  test('a multi-platform index: the host platform by default, --platform picks, a missing one is a clear error', async () => {
    const layout = await makeLayout(join(work, 'oci-multi'), 'multi', [
      { layers: [[file('arch', 'amd64\n')]], architecture: 'amd64' },
      { layers: [[file('arch', 'arm64\n')]], architecture: 'arm64' },
    ]);
    await skopeoCopy(`oci:${layout.dir}:multi`, `docker://${reg.host}/test/multi:1`, ['--all']);
    const { images } = await service();
    const amd = await images.pull(`${reg.host}/test/multi:1`, {}, () => undefined);
    assert.equal(amd.architecture, 'amd64');
    assert.deepEqual(amd.repoDigests, [`${reg.host}/test/multi@${layout.indexDigest}`]);
    assert.equal(await fs.readFile(join((await images.layerPaths(amd))[0]!, 'arch'), 'utf8'), 'amd64\n');
    const { images: other } = await service();
    const arm = await other.pull(`${reg.host}/test/multi:1`, { platform: 'linux/arm64' }, () => undefined);
    assert.equal(arm.architecture, 'arm64');
    await assert.rejects(
      other.pull(`${reg.host}/test/multi:1`, { platform: 'linux/s390x' }, () => undefined),
      /no matching manifest for linux\/s390x in the manifest list entries/,
    );
  });

  test('an unknown repository or tag: a not-found error naming the manifest', async () => {
    const { images } = await service();
    await assert.rejects(
      images.pull(`${reg.host}/test/nothing:1`, {}, () => undefined),
      (err: Error) => {
        assert.match(err.message, new RegExp(`manifest ${reg.host}/test/nothing:1: not found`));
        assert.equal((err as { code?: string }).code, 'not_found');
        return true;
      },
    );
    assert.deepEqual(await images.list(), []);
  });
});

describe('push', () => {
  test('push a local image, read it back with skopeo; again: layers exist; another repo: mounted', async () => {
    const { images } = await service();
    const big = randomBytes(300_000); // incompressible: the gzip layer stays ~300 kB
    const tar = writeTar([
      { type: 'file', path: 'data.bin', mode: 0o644, data: big },
      file('etc/pushed', 'yes\n'),
    ]);
    const rec = await images.importRootfs(
      (await import('node:stream')).Readable.from([tar]),
      `${reg.host}/pushed/img:1`,
      { changes: ['CMD ["/bin/true"]'] },
    );
    images.registryOptions.chunkSize = 64 * 1024; // the layer (~300 kB, gzip) goes in PATCH chunks
    const p = collector();
    const result = await images.push(`${reg.host}/pushed/img:1`, {}, p.on);
    assert.ok(p.statuses().includes('Pushed'), p.statuses().join('|'));
    const chunks = p.events.filter(
      (e) =>
        e.status === 'Pushing' &&
        e.progress &&
        e.progress.current > 0 &&
        e.progress.current < e.progress.total,
    );
    assert.ok(chunks.length >= 2, 'the layer went up in several PATCH chunks');
    assert.equal(p.statuses().at(-1), `1: digest: ${result.digest} size: ${result.size}`);
    assert.equal(result.digest, rec.manifestDigest);

    const { stdout } = await exec('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${reg.host}/pushed/img:1`,
    ]);
    const inspected = JSON.parse(stdout) as { Digest: string; Layers: string[] };
    assert.equal(inspected.Digest, rec.manifestDigest);
    const out = join(work, 'skopeo-out');
    await skopeoCopy(`docker://${reg.host}/pushed/img:1`, `oci:${out}:copied`);
    const index = JSON.parse(await fs.readFile(join(out, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    assert.equal(index.manifests[0]!.digest, rec.manifestDigest);

    const again = collector();
    await images.push(`${reg.host}/pushed/img:1`, {}, again.on);
    assert.ok(again.statuses().includes('Layer already exists'));
    assert.ok(!again.statuses().includes('Pushed'));

    await images.tag(`${reg.host}/pushed/img:1`, `${reg.host}/other/img:2`);
    const mounted = collector();
    await images.push(`${reg.host}/other/img:2`, {}, mounted.on);
    assert.ok(mounted.statuses().includes('Mounted from pushed/img'), mounted.statuses().join('|'));

    // A fresh store pulls what was pushed, and it unpacks to the same diff IDs.
    const { images: fresh } = await service();
    const pulled = await fresh.pull(`${reg.host}/other/img:2`, {}, () => undefined);
    assert.equal(pulled.id, rec.id);
    assert.deepEqual(pulled.diffIds, rec.diffIds);
    const [path] = await fresh.layerPaths(pulled);
    assert.equal(await fs.readFile(join(path!, 'etc/pushed'), 'utf8'), 'yes\n');
  });

  test('pushing a tag that does not exist locally is a clear error', async () => {
    const { images } = await service();
    await assert.rejects(
      images.push(`${reg.host}/none/img:1`, {}, () => undefined),
      /An image does not exist locally with the tag: 127\.0\.0\.1:\d+\/none\/img:1/,
    );
  });
});

describe('auth (htpasswd, basic)', () => {
  let secure: RunningRegistry;
  before(async () => {
    secure = await startRegistry({ user: 'alice', password: 's3cret' });
  });
  after(async () => secure?.stop());

  test('login checks the password, stores it 0600 like docker; pull/push need it; logout forgets it', async () => {
    const { images, root } = await service();
    const layout = await makeLayout(join(work, 'oci-auth'), 'a', [{ layers: [[file('auth.txt', 'ok\n')]] }]);
    await assert.rejects(
      images.pull(`${secure.host}/private/app:a`, {}, () => undefined),
      /unauthorized: authentication required/,
    );
    await assert.rejects(
      images.login(secure.host, { username: 'alice', password: 'wrong' }),
      /unauthorized: incorrect username or password/,
    );
    await assert.rejects(fs.stat(join(root, 'auth.json')), /ENOENT/);
    assert.equal(await images.login(secure.host, { username: 'alice', password: 's3cret' }), secure.host);
    const st = await fs.stat(join(root, 'auth.json'));
    assert.equal(st.mode & 0o777, 0o600);
    const doc = JSON.parse(await fs.readFile(join(root, 'auth.json'), 'utf8')) as {
      auths: Record<string, { auth: string }>;
    };
    assert.equal(Buffer.from(doc.auths[secure.host]!.auth, 'base64').toString(), 'alice:s3cret');

    await skopeoCopy(`oci:${layout.dir}:a`, `docker://${secure.host}/private/app:a`, [
      '--dest-creds',
      'alice:s3cret',
    ]);
    const rec = await images.pull(`${secure.host}/private/app:a`, {}, () => undefined);
    await images.tag(rec.id, `${secure.host}/private/copy:b`);
    await images.push(`${secure.host}/private/copy:b`, {}, () => undefined);

    assert.equal(await images.logout(secure.host), secure.host);
    await assert.rejects(images.logout(secure.host), /Not logged in to/);
    const { images: fresh } = await service();
    await assert.rejects(
      fresh.pull(`${secure.host}/private/copy:b`, {}, () => undefined),
      /unauthorized/,
    );
  });
});
