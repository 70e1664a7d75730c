import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveInRoot, safeEntryPath } from './archive.js';

let base: string;
let root: string;

before(() => {
  // base/outside is "the host"; base/root is the instance's root with hostile links.
  base = mkdtempSync(join(tmpdir(), 'abode-archive-'));
  root = join(base, 'root');
  mkdirSync(join(base, 'outside'));
  writeFileSync(join(base, 'outside', 'secret'), 'host');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'outside'));
  writeFileSync(join(root, 'outside', 'secret'), 'instance');
  writeFileSync(join(root, 'etc', 'hostname'), 'web\n');
  mkdirSync(join(root, 'a', 'b'), { recursive: true });
  symlinkSync('/', join(root, 'etc', 'x'));
  symlinkSync('../../..', join(root, 'a', 'up'));
  symlinkSync('../../../../..', join(root, 'a', 'b', 'way-up'));
  symlinkSync('/etc', join(root, 'etcabs'));
  symlinkSync('hostname', join(root, 'etc', 'rel'));
  symlinkSync('loop2', join(root, 'loop1'));
  symlinkSync('loop1', join(root, 'loop2'));
  symlinkSync(join(base, 'outside'), join(root, 'hostabs'));
});
after(() => rmSync(base, { recursive: true, force: true }));

const inside = (p: string) => assert.ok(p === root || p.startsWith(root + '/'), `${p} is outside ${root}`);

describe('resolveInRoot', () => {
  test('plain paths resolve under the root', async () => {
    const r = await resolveInRoot(root, '/etc/hostname');
    assert.deepEqual(r, { hostPath: join(root, 'etc/hostname'), path: '/etc/hostname', exists: true });
    assert.equal((await resolveInRoot(root, '/')).hostPath, root);
  });

  test('an absolute link to / stays in the root (/etc/x -> /)', async () => {
    const r = await resolveInRoot(root, '/etc/x/etc/hostname');
    assert.equal(r.hostPath, join(root, 'etc/hostname'));
    assert.equal(r.path, '/etc/hostname');
    const o = await resolveInRoot(root, '/etc/x/outside/secret');
    assert.equal(o.hostPath, join(root, 'outside/secret'));
  });

  test('relative links climbing past the root stop at it (a -> ../../..)', async () => {
    for (const p of ['/a/up/outside/secret', '/a/b/way-up/outside/secret', '/../../outside/secret']) {
      const r = await resolveInRoot(root, p);
      inside(r.hostPath);
      assert.equal(r.hostPath, join(root, 'outside/secret'), p);
    }
  });

  test('absolute host paths in links are taken inside the root', async () => {
    await assert.rejects(resolveInRoot(root, '/hostabs/secret'), { code: 'ENOENT' });
    const r = await resolveInRoot(root, '/etcabs/hostname');
    assert.equal(r.hostPath, join(root, 'etc/hostname'));
  });

  test('the last link is kept unless followed', async () => {
    assert.equal((await resolveInRoot(root, '/etc/x')).hostPath, join(root, 'etc/x'));
    assert.equal((await resolveInRoot(root, '/etc/x', { followFinal: true })).hostPath, root);
    assert.equal((await resolveInRoot(root, '/etc/x/')).hostPath, root);
    assert.equal((await resolveInRoot(root, '/etc/rel', { followFinal: true })).path, '/etc/hostname');
  });

  test('a missing last component is reported, missing parents and loops are errors', async () => {
    const r = await resolveInRoot(root, '/etc/x/nope');
    assert.deepEqual(r, { hostPath: join(root, 'nope'), path: '/nope', exists: false });
    await assert.rejects(resolveInRoot(root, '/nope/file'), { code: 'ENOENT' });
    await assert.rejects(resolveInRoot(root, '/etc/hostname/x'), { code: 'ENOTDIR' });
    await assert.rejects(resolveInRoot(root, '/etc/hostname/'), { code: 'ENOTDIR' });
    await assert.rejects(resolveInRoot(root, '/loop1/x'), { code: 'ELOOP' });
  });
});

describe('safeEntryPath', () => {
  test('refuses absolute and climbing entries', () => {
    assert.equal(safeEntryPath('a/./b/'), 'a/b');
    assert.equal(safeEntryPath('./'), '');
    assert.equal(safeEntryPath('/etc/passwd'), undefined);
    assert.equal(safeEntryPath('a/../../x'), undefined);
    assert.equal(safeEntryPath('..'), undefined);
  });
});
