// pull / push / login / logout through the CLI against Debian's docker-registry on 127.0.0.1, with skopeo on the other side.
import assert from 'node:assert/strict';
import { existsSync, promises as fs, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  exec,
  makeLayout,
  skopeoCopy,
  startRegistry,
  type RunningRegistry,
} from '../integration/registry-helpers.js';
import { Abode } from './harness.js';

const abode = new Abode();
const ok = (args: string[], input?: string) => {
  const result = abode.run(args, { input, timeoutMs: 120_000 });
  assert.equal(result.code, 0, `abode ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
};

let reg: RunningRegistry;
let work: string;

before(async () => {
  ok(['run', '--rm', 'busybox', 'true']); // builds the built-in busybox, starts the daemon
  reg = await startRegistry();
  work = await fs.mkdtemp(join(tmpdir(), 'abode-e2e-registry-'));
});
after(async () => {
  abode.cleanup();
  await reg?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** The busybox binary out of abode's unpacked built-in layer. */
async function busyboxBinary(): Promise<Buffer> {
  const layers = join(abode.root, 'layers');
  for (const d of readdirSync(layers)) {
    const p = join(layers, d, 'fs', 'bin', 'busybox');
    if (existsSync(p)) return fs.readFile(p);
  }
  throw new Error('no unpacked busybox layer');
}

describe('registry', () => {
  test('an image skopeo pushed is pulled (docker-style lines) and runs', async () => {
    const layout = await makeLayout(join(work, 'app'), 'v1', [
      {
        layers: [
          [
            { type: 'dir', path: 'bin', mode: 0o755 },
            { type: 'file', path: 'bin/busybox', mode: 0o755, data: await busyboxBinary() },
            { type: 'symlink', path: 'bin/sh', target: 'busybox' },
          ],
          [{ type: 'file', path: 'hello.txt', mode: 0o644, data: 'pulled from a registry\n' }],
        ],
        cmd: ['/bin/busybox', 'cat', '/hello.txt'],
      },
    ]);
    await skopeoCopy(`oci:${layout.dir}:v1`, `docker://${reg.host}/e2e/app:v1`);
    const out = ok(['pull', `${reg.host}/e2e/app:v1`]);
    assert.match(out, /^v1: Pulling from e2e\/app$/m);
    for (const d of layout.layerDigests)
      assert.match(out, new RegExp(`^${d.slice(7, 19)}: Pull complete$`, 'm'));
    assert.match(out, new RegExp(`^Digest: ${layout.manifestDigest}$`, 'm'));
    assert.match(out, new RegExp(`^Status: Downloaded newer image for ${reg.host}/e2e/app:v1$`, 'm'));
    assert.equal(ok(['run', '--rm', `${reg.host}/e2e/app:v1`]), 'pulled from a registry\n');
    assert.equal(ok(['run', '--rm', `${reg.host}/e2e/app:v1`, 'sh', '-c', 'echo $((6*7))']), '42\n');
    assert.match(
      ok(['images', '--digests']),
      new RegExp(`${reg.host}/e2e/app\\s+v1\\s+${layout.manifestDigest}`),
    );
    const again = ok(['pull', `${reg.host}/e2e/app:v1`]);
    assert.match(again, /Already exists/);
    assert.match(again, /Status: Image is up to date for/);
    // As docker: removing a pulled image's only tag removes the image (its digest reference goes too).
    const removed = ok(['rmi', `${reg.host}/e2e/app:v1`]);
    assert.match(removed, new RegExp(`^Untagged: ${reg.host}/e2e/app:v1$`, 'm'));
    assert.match(removed, new RegExp(`^Untagged: ${reg.host}/e2e/app@${layout.manifestDigest}$`, 'm'));
    assert.match(removed, /^Deleted: sha256:[a-f0-9]{64}$/m);
    assert.doesNotMatch(ok(['images', '--digests']), /e2e\/app/);
  });

  test("abode's busybox is pushed and skopeo reads it back", async () => {
    ok(['tag', 'busybox', `${reg.host}/e2e/busybox:1`]);
    const out = ok(['push', `${reg.host}/e2e/busybox:1`]);
    assert.match(out, new RegExp(`^The push refers to repository \\[${reg.host}/e2e/busybox\\]$`, 'm'));
    assert.match(out, /: Pushed$/m);
    const digest = /^1: digest: (sha256:[a-f0-9]{64}) size: \d+$/m.exec(out)?.[1];
    assert.ok(digest, out);
    // The digest belongs to the pushed repository's row only, as docker shows it.
    const rows = ok(['images', '--digests']);
    assert.match(rows, new RegExp(`^${reg.host}/e2e/busybox +1 +${digest} `, 'm'));
    assert.match(rows, /^busybox +latest +<none> /m);
    const { stdout } = await exec('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${reg.host}/e2e/busybox:1`,
    ]);
    assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, digest);
    await skopeoCopy(`docker://${reg.host}/e2e/busybox:1`, `oci:${join(work, 'bb')}:copied`);
    const blobs = await fs.readdir(join(work, 'bb', 'blobs', 'sha256'));
    assert.ok(blobs.includes(digest!.slice(7)));
    assert.match(ok(['push', `${reg.host}/e2e/busybox:1`]), /Layer already exists/);
  });

  test('errors: a missing image, a registry nobody listens on', () => {
    const missing = abode.run(['pull', `${reg.host}/e2e/missing:1`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, new RegExp(`manifest ${reg.host}/e2e/missing:1: not found`));
    const nobody = abode.run(['pull', '127.0.0.1:1/e2e/app:1']);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /registry 127\.0\.0\.1:1: cannot connect/);
    const bad = abode.run(['pull', 'Upper:1']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid reference format/);
  });

  describe('with htpasswd auth', () => {
    let secure: RunningRegistry;
    before(async () => {
      secure = await startRegistry({ user: 'alice', password: 's3cret' });
    });
    after(async () => secure?.stop());

    test('login (bad and good password), push and pull with the stored credentials, logout', async () => {
      const denied = abode.run(['pull', `${secure.host}/priv/bb:1`]);
      assert.equal(denied.code, 1);
      assert.match(denied.stderr, /unauthorized: authentication required/);
      const wrong = abode.run(['login', '-u', 'alice', '--password-stdin', secure.host], { input: 'nope\n' });
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /incorrect username or password/);
      assert.equal(
        ok(['login', '-u', 'alice', '--password-stdin', secure.host], 's3cret\n'),
        'Login Succeeded\n',
      );
      assert.equal((await fs.stat(join(abode.root, 'auth.json'))).mode & 0o777, 0o600);
      ok(['tag', 'busybox', `${secure.host}/priv/bb:1`]);
      assert.match(ok(['push', `${secure.host}/priv/bb:1`]), /1: digest: sha256:/);
      ok(['rmi', `${secure.host}/priv/bb:1`]);
      assert.match(ok(['pull', `${secure.host}/priv/bb:1`]), /Status: /);
      assert.equal(ok(['logout', secure.host]), `Removing login credentials for ${secure.host}\n`);
      const after = abode.run(['logout', secure.host]);
      assert.equal(after.code, 1);
      assert.match(after.stderr, /Not logged in to/);
      ok(['rmi', `${secure.host}/priv/bb:1`]);
      assert.match(abode.run(['pull', `${secure.host}/priv/bb:1`]).stderr, /unauthorized/);
    });
  });
});
