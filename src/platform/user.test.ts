import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveUser, type UserDb } from './user.js';

const db: UserDb = {
  passwd: [
    { name: 'root', uid: 0, gid: 0 },
    { name: 'nobody', uid: 65534, gid: 65534 },
    { name: 'app', uid: 1000, gid: 1000 },
  ],
  group: [
    { name: 'root', gid: 0, members: [] },
    { name: 'app', gid: 1000, members: [] },
    { name: 'wheel', gid: 10, members: ['app'] },
  ],
};

test('docker --user forms resolve against passwd and group', () => {
  assert.deepEqual(resolveUser('', db), { uid: 0, gid: 0, additionalGids: [] });
  assert.deepEqual(resolveUser('app', db), { uid: 1000, gid: 1000, additionalGids: [10] });
  assert.deepEqual(resolveUser('1000:10', db), { uid: 1000, gid: 10, additionalGids: [] });
  assert.deepEqual(resolveUser('4242', db), { uid: 4242, gid: 0, additionalGids: [] });
  assert.deepEqual(resolveUser('nobody:wheel', db), { uid: 65534, gid: 10, additionalGids: [] });
  assert.throws(() => resolveUser('ghost', db), /unable to find user ghost/);
  assert.throws(() => resolveUser('app:ghosts', db), /unable to find group ghosts/);
});
