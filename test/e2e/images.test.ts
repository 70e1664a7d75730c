// Image commands through the CLI, and interop with the real tools: images abode saves are read by skopeo,
// umoci and podman; images skopeo, umoci, buildah and podman make load and run in abode.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Abode } from './harness.js';

const abode = new Abode();
const ok = (args: string[], input?: string) => abode.ok(args, input);
const work = mkdtempSync(join(tmpdir(), 'abode-images-e2e-'));
const podman = [
  '--root',
  join(work, 'podman/root'),
  '--runroot',
  join(work, 'podman/run'),
  '--storage-driver',
  'vfs',
  '--cgroup-manager=cgroupfs',
];
const buildah = [
  '--root',
  join(work, 'buildah/root'),
  '--runroot',
  join(work, 'buildah/run'),
  '--storage-driver',
  'vfs',
];

/** Runs a tool, failing the test with its stderr unless it exits 0. */
function tool(cmd: string, args: string[], cwd = work): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

const du = (path: string) => Number(execFileSync('du', ['-sb', path]).toString().split('\t')[0]);

/** A root file system with a static busybox (from abode's built-in image) and a marker file. */
let rootfs: string;

before(() => {
  ok(['run', '--rm', 'busybox', 'true']);
  const layer = JSON.parse(ok(['image', 'inspect', 'busybox']))[0].GraphDriver.Data.LowerDir.split(':')[0];
  rootfs = join(work, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  cpSync(join(layer, 'bin/busybox'), join(rootfs, 'bin/busybox'));
  for (const name of ['sh', 'cat']) symlinkSync('busybox', join(rootfs, 'bin', name));
});
after(() => {
  abode.cleanup();
  spawnSync('podman', [...podman, 'system', 'reset', '-f'], { stdio: 'ignore' });
  spawnSync('buildah', [...buildah, 'rm', '--all'], { stdio: 'ignore' });
  spawnSync('umount', ['-R', work], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
});

function withFile(text: string): string {
  const dir = join(work, `rootfs-${text}`);
  cpSync(rootfs, dir, { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(dir, 'file'), `${text}\n`);
  return dir;
}

describe('save and load', () => {
  test('docker-archive and OCI layout (tar and directory) round trip, from a file and from stdin', () => {
    const id = JSON.parse(ok(['image', 'inspect', 'busybox']))[0].Id as string;
    assert.equal(ok(['images', '-q', '--no-trunc', 'busybox']), `${id}\n`);
    const dockerTar = join(work, 'bb-docker.tar');
    const ociTar = join(work, 'bb-oci.tar');
    const ociDir = join(work, 'bb-layout/');
    ok(['save', '-o', dockerTar, 'busybox']);
    ok(['save', '--format', 'oci', '-o', ociTar, 'busybox:latest']);
    ok(['image', 'save', '--format', 'oci', '-o', ociDir, 'busybox']);
    assert.match(
      tool('tar', ['-tf', dockerTar]),
      /manifest\.json\n[\s\S]*repositories|repositories[\s\S]*manifest\.json/,
    );
    assert.deepEqual(JSON.parse(readFileSync(join(ociDir, 'oci-layout'), 'utf8')), {
      imageLayoutVersion: '1.0.0',
    });
    for (const load of [
      ['load', '-i', dockerTar],
      ['load', '-i', ociTar],
      ['image', 'load', '-i', ociDir],
    ]) {
      ok(['rmi', 'busybox']);
      assert.equal(ok(load), 'Loaded image: busybox:latest\n');
      assert.equal(JSON.parse(ok(['image', 'inspect', 'busybox']))[0].Id, id);
      assert.equal(ok(['run', '--rm', 'busybox', 'echo', 'ran']), 'ran\n');
    }
    // stdin, and save to stdout
    const r = spawnSync(
      'sh',
      [
        '-c',
        `node ${join(process.cwd(), 'dist/src/cli/main.js')} save busybox | node ${join(process.cwd(), 'dist/src/cli/main.js')} load`,
      ],
      {
        env: abode.env,
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'Loaded image: busybox:latest\n');
  });

  test('bad archives: a clear error, exit 1, nothing loaded', () => {
    const junk = join(work, 'junk.tar');
    writeFileSync(junk, Buffer.alloc(3000, 1));
    let r = abode.run(['load', '-i', junk]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid tar archive/);
    const plain = join(work, 'plain.tar');
    writeFileSync(join(work, 'hello.txt'), 'hi');
    tool('tar', ['-cf', plain, 'hello.txt']);
    r = abode.run(['load', '-i', plain]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not a docker-archive .* or an OCI image layout/);
    r = abode.run(['save', '-o', join(work, 'none.tar'), 'no-such-image']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no-such-image/);
  });
});

describe('abode archives are read by skopeo, umoci and podman', () => {
  test('skopeo inspect of docker-archive and oci-archive', () => {
    const d = join(work, 'interop-docker.tar');
    const o = join(work, 'interop-oci.tar');
    ok(['save', '-o', d, 'busybox']);
    ok(['save', '--format', 'oci', '-o', o, 'busybox']);
    const id = JSON.parse(ok(['image', 'inspect', 'busybox']))[0];
    for (const ref of [`docker-archive:${d}`, `oci-archive:${o}`]) {
      const info = JSON.parse(tool('skopeo', ['inspect', ref]));
      assert.equal(info.Os, 'linux');
      assert.equal(info.Layers.length, id.RootFS.Layers.length);
      const config = JSON.parse(tool('skopeo', ['inspect', '--config', ref]));
      assert.deepEqual(config.rootfs.diff_ids, id.RootFS.Layers);
    }
  });

  test('umoci unpack of the OCI layout', () => {
    const layout = join(work, 'umoci-layout/');
    ok(['save', '--format', 'oci', '-o', layout, 'busybox']);
    tool('umoci', ['unpack', '--image', `${layout}:latest`, join(work, 'umoci-bundle')]);
    assert.ok(readFileSync(join(work, 'umoci-bundle/rootfs/etc/passwd'), 'utf8').startsWith('root:'));
  });

  test('podman load of both formats; podman image inspect sees the same image', () => {
    const id = JSON.parse(ok(['image', 'inspect', 'busybox']))[0].Id as string;
    const d = join(work, 'podman-docker.tar');
    const o = join(work, 'podman-oci.tar');
    ok(['save', '-o', d, 'busybox']);
    ok(['save', '--format', 'oci', '-o', o, 'busybox']);
    for (const file of [d, o]) {
      tool('podman', [...podman, 'load', '-q', '-i', file]);
      const inspect = JSON.parse(
        tool('podman', [...podman, 'image', 'inspect', 'docker.io/library/busybox:latest']),
      );
      assert.equal(`sha256:${inspect[0].Id}`, id);
      assert.deepEqual(
        inspect[0].RootFS.Layers,
        JSON.parse(ok(['image', 'inspect', 'busybox']))[0].RootFS.Layers,
      );
      tool('podman', [...podman, 'rmi', '-f', 'docker.io/library/busybox:latest']);
    }
  });
});

describe('images made by other tools load and run in abode', () => {
  test('umoci (init, new, unpack, repack, config)', () => {
    const layout = join(work, 'umoci-made');
    tool('umoci', ['init', '--layout', layout]);
    tool('umoci', ['new', '--image', `${layout}:v1`]);
    const bundle = join(work, 'umoci-made-bundle');
    tool('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    cpSync(withFile('from-umoci'), join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    tool('umoci', ['repack', '--image', `${layout}:v1`, bundle]);
    tool('umoci', ['config', '--image', `${layout}:v1`, '--config.cmd', '/bin/sh']);
    // umoci names the manifest only by its tag (ref.name "v1"): it loads unnamed, as docker does
    const out = ok(['load', '-i', layout]);
    const m = /^Loaded image ID: (sha256:[a-f0-9]{64})\n$/.exec(out);
    assert.ok(m, out);
    assert.equal(ok(['run', '--rm', m[1]!, 'cat', '/file']), 'from-umoci\n');
  });

  test('skopeo copy to docker-archive and oci-archive', () => {
    const layout = join(work, 'umoci-made');
    const d = join(work, 'skopeo-docker.tar');
    const o = join(work, 'skopeo-oci.tar');
    tool('skopeo', ['copy', '-q', `oci:${layout}:v1`, `docker-archive:${d}:skopeo/made:1`]);
    tool('skopeo', ['copy', '-q', `oci:${layout}:v1`, `oci-archive:${o}:skopeo/made:2`]);
    assert.equal(ok(['load', '-i', d]), 'Loaded image: skopeo/made:1\n');
    assert.equal(ok(['load', '-i', o]), 'Loaded image: skopeo/made:2\n');
    assert.equal(ok(['run', '--rm', 'skopeo/made:1', 'cat', '/file']), 'from-umoci\n');
    assert.equal(ok(['run', '--rm', 'skopeo/made:2', 'cat', '/file']), 'from-umoci\n');
  });

  test('buildah (from scratch, copy, commit, push oci-archive)', () => {
    const container = tool('buildah', [...buildah, 'from', 'scratch']).trim();
    tool('buildah', [...buildah, 'copy', container, `${withFile('from-buildah')}/`, '/']);
    tool('buildah', [...buildah, 'config', '--cmd', '/bin/sh', container]);
    tool('buildah', [...buildah, 'commit', '-q', container, 'buildah-made']);
    const archive = join(work, 'buildah.tar');
    tool('buildah', [...buildah, 'push', '-q', 'buildah-made', `oci-archive:${archive}:buildah/made:1`]);
    assert.equal(ok(['load', '-i', archive]), 'Loaded image: buildah/made:1\n');
    assert.equal(ok(['run', '--rm', 'buildah/made:1', 'cat', '/file']), 'from-buildah\n');
  });

  test('podman (import, save in both formats)', () => {
    const rootTar = join(work, 'podman-rootfs.tar');
    tool('tar', ['-C', withFile('from-podman'), '-cf', rootTar, '.']);
    tool('podman', [...podman, 'import', '-q', rootTar, 'docker.io/podman/made:1']);
    const d = join(work, 'podman-save-docker.tar');
    const o = join(work, 'podman-save-oci.tar');
    tool('podman', [...podman, 'save', '-q', '-o', d, 'docker.io/podman/made:1']);
    tool('podman', [...podman, 'save', '-q', '--format', 'oci-archive', '-o', o, 'docker.io/podman/made:1']);
    assert.equal(ok(['load', '-i', d]), 'Loaded image: podman/made:1\n');
    assert.equal(ok(['run', '--rm', 'podman/made:1', 'cat', '/file']), 'from-podman\n');
    ok(['rmi', 'podman/made:1']);
    assert.equal(ok(['load', '-i', o]), 'Loaded image: podman/made:1\n');
    assert.equal(ok(['run', '--rm', 'podman/made:1', 'cat', '/file']), 'from-podman\n');
  });
});

describe('inspecting and cleaning up', () => {
  test('history, image inspect (docker shape), images --digests', () => {
    const history = ok(['history', 'busybox']);
    assert.match(history, /^IMAGE +CREATED +CREATED BY +SIZE +COMMENT\n[a-f0-9]{12} /);
    assert.equal(ok(['history', '-q', 'busybox']).trim().split('\n').length, 1);
    const [img] = JSON.parse(ok(['image', 'inspect', 'busybox']));
    for (const key of [
      'Id',
      'RepoTags',
      'RepoDigests',
      'Created',
      'Architecture',
      'Os',
      'Size',
      'Config',
      'RootFS',
    ])
      assert.ok(key in img, key);
    assert.deepEqual(img.RepoTags, ['docker.io/library/busybox:latest']);
    assert.equal(img.RootFS.Type, 'layers');
    assert.match(img.RootFS.Layers[0], /^sha256:[a-f0-9]{64}$/);
    assert.equal(
      ok(['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', 'busybox']),
      'linux/amd64\n',
    );
    assert.match(ok(['images', '--digests']), /^REPOSITORY +TAG +DIGEST +IMAGE ID +CREATED +SIZE\n/);
    const r = abode.run(['image', 'inspect', 'nope:1']);
    assert.equal(r.code, 1);
  });

  test('rmi refuses an image an instance uses unless -f, which only untags it', () => {
    ok(['tag', 'busybox', 'inuse:1']);
    const id = ok(['create', '--name', 'user-of-inuse', 'inuse:1', 'true']).trim();
    ok(['tag', 'busybox', 'other:1']);
    ok(['rmi', 'other:1']);
    ok(['rmi', 'busybox']); // another tag remains
    const r = abode.run(['rmi', 'inuse:1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /container is using its referenced image|must force/);
    assert.match(ok(['rmi', '-f', 'inuse:1']), /Untagged: inuse:1/);
    assert.equal(ok(['start', '-a', id]), '');
    ok(['rm', id]);
  });

  test('image prune -a and system df; the disk is really freed', () => {
    // a big image of its own, then dangling after re-tagging
    const big = join(work, 'big');
    mkdirSync(big, { recursive: true });
    writeFileSync(join(big, 'blob'), Buffer.alloc(32 << 20, 'a'));
    tool('tar', ['-C', big, '-cf', join(work, 'big.tar'), '.']);
    ok(['import', join(work, 'big.tar'), 'big:1']);
    const df = ok(['system', 'df']);
    assert.match(df, /^TYPE +TOTAL +ACTIVE +SIZE +RECLAIMABLE\nImages +\d+ +\d+ +[\d.]+[kMG]?B /);
    assert.match(df, /\nContainers +\d+ +\d+ /);
    assert.match(df, /\nLocal Volumes +\d+ +\d+ /);
    assert.match(ok(['system', 'df', '-v']), /Images space usage:[\s\S]*big +1 /);
    const keep = ok(['run', '-d', 'busybox', 'sleep', '60']).trim();
    const before = du(abode.root);
    const out = ok(['image', 'prune', '-a', '-f']);
    assert.match(out, /Deleted Images:\n[\s\S]*untagged: big:1[\s\S]*Total reclaimed space: [\d.]+MB\n$/);
    const freed = before - du(abode.root);
    assert.ok(freed > 32 << 20, `only ${freed} bytes freed`);
    // the image an instance uses stays
    assert.match(ok(['images']), /busybox/);
    assert.doesNotMatch(ok(['images']), /big/);
    ok(['rm', '-f', keep]);
  });
});
