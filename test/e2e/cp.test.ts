import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Abode, repoRoot } from './harness.js';

const abode = new Abode();
const work = mkdtempSync(join(tmpdir(), 'abode-cp-'));
const ok = (args: string[], input?: string) => {
  const result = abode.run(args, { input });
  assert.equal(result.code, 0, `abode ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
};
const mountsOf = (root: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.includes(root));

before(() => {
  ok(['run', '-d', '--name', 'web', 'busybox', 'sleep', '600']);
  ok(['exec', 'web', 'sh', '-c', 'mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b']);
});
after(() => {
  abode.cleanup();
  rmSync(work, { recursive: true, force: true });
});

describe('abode cp out of an instance', () => {
  test('a file out of a running instance, to a new name and into a directory', () => {
    ok(['cp', 'web:/data/a', join(work, 'a.txt')]);
    assert.equal(readFileSync(join(work, 'a.txt'), 'utf8'), 'one\n');
    mkdirSync(join(work, 'into'));
    ok(['cp', 'web:/etc/passwd', join(work, 'into')]);
    assert.match(readFileSync(join(work, 'into', 'passwd'), 'utf8'), /^root:/);
  });

  test('a directory out: a new name gets the tree, dir/. copies its contents', () => {
    ok(['cp', 'web:/data', join(work, 'data-copy')]);
    assert.equal(readFileSync(join(work, 'data-copy', 'sub', 'b'), 'utf8'), 'two\n');
    mkdirSync(join(work, 'existing'));
    ok(['cp', 'web:/data', join(work, 'existing')]);
    assert.deepEqual(readdirSync(join(work, 'existing')), ['data']);
    mkdirSync(join(work, 'contents'));
    ok(['cp', 'web:/data/.', join(work, 'contents')]);
    assert.deepEqual(readdirSync(join(work, 'contents')).sort(), ['a', 'sub']);
  });

  test('symlinks are copied as links; absolute targets kept; -L follows the source', () => {
    ok(['cp', 'web:/bin/sh', join(work, 'sh-link')]);
    assert.ok(lstatSync(join(work, 'sh-link')).isSymbolicLink());
    assert.match(readlinkSync(join(work, 'sh-link')), /busybox/);
    ok(['exec', 'web', 'ln', '-s', '/data/a', '/data-link']);
    ok(['cp', '-L', 'web:/data-link', join(work, 'followed')]);
    assert.equal(readFileSync(join(work, 'followed'), 'utf8'), 'one\n');
  });

  test('- writes a tar to stdout', () => {
    const result = spawnSync(
      'sh',
      ['-c', `node ${JSON.stringify(join(repoRoot, 'dist/src/cli/main.js'))} cp web:/data - | tar -t`],
      { env: abode.env, encoding: 'utf8' },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(result.stdout.split('\n').filter(Boolean).sort(), [
      'data/',
      'data/a',
      'data/sub/',
      'data/sub/b',
    ]);
  });

  test("a path through a link to / reads the instance's file, not the host's", () => {
    ok(['exec', 'web', 'ln', '-s', '/', '/escape']);
    ok(['exec', 'web', 'sh', '-c', 'echo instance-only > /etc/marker']);
    ok(['cp', 'web:/escape/etc/hostname', join(work, 'hostname')]);
    const id = ok(['inspect', '--format', '{{.Id}}', 'web']).trim();
    assert.equal(readFileSync(join(work, 'hostname'), 'utf8').trim(), id.slice(0, 12));
    ok(['cp', 'web:/escape/etc/marker', join(work, 'marker')]);
    assert.equal(readFileSync(join(work, 'marker'), 'utf8'), 'instance-only\n');
    // A relative link climbing above the root stops at it.
    ok(['exec', 'web', 'ln', '-s', '../../../../..', '/data/up']);
    ok(['cp', 'web:/data/up/etc/marker', join(work, 'marker2')]);
    assert.equal(readFileSync(join(work, 'marker2'), 'utf8'), 'instance-only\n');
  });

  test('a missing path fails as docker does, exit 1', () => {
    const result = abode.run(['cp', 'web:/nope', join(work, 'nope')]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /Error response from daemon: Could not find the file \/nope in container web/,
    );
    const missing = abode.run(['cp', 'ghost:/etc/hostname', join(work, 'ghost')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No such container: ghost/);
  });
});

describe('abode cp into an instance', () => {
  test('a file to a new name, a directory to a new name and into a directory', () => {
    const src = join(work, 'site');
    mkdirSync(join(src, 'css'), { recursive: true });
    writeFileSync(join(src, 'index.html'), '<h1>hi</h1>\n');
    writeFileSync(join(src, 'css', 'main.css'), 'body{}\n');
    symlinkSync('index.html', join(src, 'home.html'));
    ok(['cp', join(src, 'index.html'), 'web:/tmp/page.html']);
    assert.equal(ok(['exec', 'web', 'cat', '/tmp/page.html']), '<h1>hi</h1>\n');
    ok(['cp', src, 'web:/srv']);
    assert.equal(ok(['exec', 'web', 'cat', '/srv/css/main.css']), 'body{}\n');
    assert.equal(ok(['exec', 'web', 'readlink', '/srv/home.html']).trim(), 'index.html');
    ok(['cp', src, 'web:/tmp']);
    assert.equal(ok(['exec', 'web', 'cat', '/tmp/site/index.html']), '<h1>hi</h1>\n');
    ok(['exec', 'web', 'mkdir', '/merge']);
    ok(['cp', `${src}/.`, 'web:/merge']);
    assert.equal(
      ok(['exec', 'web', 'ls', '/merge']).split('\n').filter(Boolean).sort().join(' '),
      'css home.html index.html',
    );
  });

  test('writing through a link to / stays in the instance', () => {
    const file = join(work, 'evil.txt');
    writeFileSync(file, 'inside\n');
    ok(['exec', 'web', 'sh', '-c', 'ln -sf / /escape-in']);
    ok(['cp', file, 'web:/escape-in/tmp/evil.txt']);
    assert.equal(ok(['exec', 'web', 'cat', '/tmp/evil.txt']), 'inside\n');
    assert.throws(() => lstatSync('/tmp/evil.txt'));
  });

  test('- reads a tar from stdin', () => {
    const tar = spawnSync('tar', ['-c', '-C', work, 'a.txt']).stdout;
    const result = spawnSync(
      process.execPath,
      [join(repoRoot, 'dist/src/cli/main.js'), 'cp', '-', 'web:/tmp'],
      { env: abode.env, input: tar },
    );
    assert.equal(result.status, 0, String(result.stderr));
    assert.equal(ok(['exec', 'web', 'cat', '/tmp/a.txt']), 'one\n');
  });
});

describe('abode cp with a stopped instance', () => {
  test('copies out and in, and leaves nothing mounted', () => {
    const before = mountsOf(abode.root);
    ok(['run', '--name', 'done', 'busybox', 'sh', '-c', 'echo stopped > /note']);
    ok(['cp', 'done:/note', join(work, 'note')]);
    assert.equal(readFileSync(join(work, 'note'), 'utf8'), 'stopped\n');
    ok(['cp', join(work, 'a.txt'), 'done:/added']);
    ok(['cp', 'done:/added', join(work, 'added')]);
    assert.equal(readFileSync(join(work, 'added'), 'utf8'), 'one\n');
    const missing = abode.run(['cp', 'done:/nope', join(work, 'x')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /Could not find the file \/nope in container done/);
    assert.deepEqual(mountsOf(abode.root), before);
    assert.deepEqual(readdirSync(join(abode.root, 'tmp')), []);
  });
});
