import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { InvalidArgumentError } from '../core/errors.js';
import { applyTar, cleanEntryPath } from './tar-apply.js';
import { writeTar, type TarEntry } from './tar-write.js';

const temps: string[] = [];
const temp = (d: string) => (temps.push(d), d);
after(() => Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true }))));

async function sandbox(): Promise<{ outside: string; target: string }> {
  const outside = temp(await fs.mkdtemp(join(tmpdir(), 'abode-apply-')));
  const target = join(outside, 'a', 'b', 'target');
  await fs.mkdir(target, { recursive: true });
  return { outside, target };
}

/** Every path under dir except those under `skip`. */
async function walk(dir: string, skip: string): Promise<string[]> {
  const out: string[] = [];
  for (const n of await fs.readdir(dir)) {
    const p = join(dir, n);
    if (p === skip) continue;
    out.push(p);
    const st = await fs.lstat(p);
    if (st.isDirectory()) out.push(...(await walk(p, skip)));
  }
  return out;
}

const fakeOverlay = {
  whiteout: async (p: string) => fs.writeFile(p, 'WHITEOUT'),
  opaque: async (d: string) => fs.writeFile(join(d, '.OPAQUE'), ''),
};

function apply(entries: TarEntry[], target: string) {
  return applyTar(Readable.from([writeTar(entries)]), target, fakeOverlay);
}

test('cleanEntryPath keeps paths inside the root', () => {
  assert.equal(cleanEntryPath('/abs/x'), 'abs/x');
  assert.equal(cleanEntryPath('./a/../b/'), 'b');
  assert.equal(cleanEntryPath('../evil'), undefined);
  assert.equal(cleanEntryPath('a/../../evil'), undefined);
  assert.equal(cleanEntryPath('./'), '');
});

test('unpacks files, dirs, symlinks (verbatim targets) and hard links with their modes', async () => {
  const { target } = await sandbox();
  const r = await apply(
    [
      { type: 'dir', path: 'bin', mode: 0o755 },
      { type: 'dir', path: 'tmp', mode: 0o1777 },
      { type: 'file', path: 'bin/tool', mode: 0o4755, data: 'tool' },
      { type: 'symlink', path: 'bin/sh', target: 'tool' },
      { type: 'symlink', path: 'etc-link', target: '/etc/passwd' },
      { type: 'hardlink', path: 'bin/tool2', target: 'bin/tool' },
      { type: 'file', path: 'deep/er/file', mode: 0o600, data: 'x' },
    ],
    target,
  );
  assert.equal(r.size, 5);
  assert.equal(await fs.readlink(join(target, 'bin/sh')), 'tool');
  assert.equal(await fs.readlink(join(target, 'etc-link')), '/etc/passwd');
  assert.equal((await fs.stat(join(target, 'tmp'))).mode & 0o7777, 0o1777);
  assert.equal((await fs.stat(join(target, 'bin/tool'))).mode & 0o7777, 0o4755);
  assert.equal((await fs.stat(join(target, 'bin/tool2'))).ino, (await fs.stat(join(target, 'bin/tool'))).ino);
  assert.equal(await fs.readFile(join(target, 'deep/er/file'), 'utf8'), 'x');
});

test('absolute paths land inside the target', async () => {
  const { target } = await sandbox();
  await apply([{ type: 'file', path: '/abs', mode: 0o644, data: 'in' }], target);
  assert.equal(await fs.readFile(join(target, 'abs'), 'utf8'), 'in');
});

test('../evil is rejected and nothing is written outside the target', async () => {
  const { outside, target } = await sandbox();
  await assert.rejects(
    apply([{ type: 'file', path: '../evil', mode: 0o644, data: 'evil' }], target),
    (e: unknown) => e instanceof InvalidArgumentError && /outside the root/.test(e.message),
  );
  await assert.rejects(apply([{ type: 'file', path: 'x/../../../evil', mode: 0o644, data: 'e' }], target));
  assert.deepEqual(await walk(outside, target), [join(outside, 'a'), join(outside, 'a/b')]);
});

test('a symlink pointing out, then a file through it, never writes outside', async () => {
  for (const linkTarget of ['../../..', '/tmp', join(tmpdir())]) {
    const { outside, target } = await sandbox();
    await assert.rejects(
      apply(
        [
          { type: 'symlink', path: 'escape', target: linkTarget },
          { type: 'file', path: 'escape/evil', mode: 0o644, data: 'evil' },
        ],
        target,
      ),
      /symbolic link/,
    );
    assert.deepEqual(await walk(outside, target), [join(outside, 'a'), join(outside, 'a/b')]);
    await assert.rejects(fs.stat(join(tmpdir(), 'evil')));
  }
});

test('a file entry replaces a symlink instead of writing through it', async () => {
  const { outside, target } = await sandbox();
  const victim = join(outside, 'victim');
  await fs.writeFile(victim, 'safe');
  // writeTar sorts entries by path, so the symlink and the file come as two layers applied in order.
  await apply([{ type: 'symlink', path: 'g', target: victim }], target);
  await apply([{ type: 'file', path: 'g', mode: 0o644, data: 'replaced' }], target);
  assert.equal(await fs.readFile(victim, 'utf8'), 'safe');
  assert.equal(await fs.readFile(join(target, 'g'), 'utf8'), 'replaced');
});

test('hard links must point inside the root', async () => {
  const { target } = await sandbox();
  await assert.rejects(
    apply([{ type: 'hardlink', path: 'h', target: '../../../etc/passwd' }], target),
    /outside the root/,
  );
  await assert.rejects(apply([{ type: 'hardlink', path: 'h', target: '/etc/passwd' }], target), /missing/);
});

test('whiteouts and opaque markers go through the overlay hooks, not as files', async () => {
  const { target } = await sandbox();
  await apply(
    [
      { type: 'dir', path: 'etc', mode: 0o755 },
      { type: 'file', path: 'etc/.wh.gone', mode: 0o644, data: '' },
      { type: 'dir', path: 'var', mode: 0o755 },
      { type: 'file', path: 'var/.wh..wh..opq', mode: 0o644, data: '' },
      { type: 'file', path: 'var/.wh..wh.plnk', mode: 0o644, data: '' },
    ],
    target,
  );
  assert.equal(await fs.readFile(join(target, 'etc/gone'), 'utf8'), 'WHITEOUT');
  assert.deepEqual((await fs.readdir(join(target, 'etc'))).sort(), ['gone']);
  assert.deepEqual(await fs.readdir(join(target, 'var')), ['.OPAQUE']);
});

test('a stream that is not a tar is rejected', async () => {
  const { target } = await sandbox();
  await assert.rejects(
    applyTar(Readable.from([Buffer.from('this is not a tar archive\n'.repeat(100))]), target, fakeOverlay),
    InvalidArgumentError,
  );
  await assert.rejects(
    applyTar(Readable.from([Buffer.from('short')]), target, fakeOverlay),
    InvalidArgumentError,
  );
});
