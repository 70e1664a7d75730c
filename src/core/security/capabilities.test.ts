import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../errors.js';
import {
  ALL_CAPABILITIES,
  CAPABILITIES,
  DEFAULT_CAPABILITIES,
  capabilityMask,
  resolveCapabilities,
} from './capabilities.js';

test('the capability table covers CAP_CHOWN (0) to CAP_CHECKPOINT_RESTORE (40) without gaps', () => {
  assert.equal(ALL_CAPABILITIES.length, 41);
  assert.deepEqual(
    ALL_CAPABILITIES.map((c) => CAPABILITIES[c]),
    [...Array(41).keys()],
  );
  assert.equal(CAPABILITIES.CAP_CHOWN, 0);
  assert.equal(CAPABILITIES.CAP_SYS_ADMIN, 21);
  assert.equal(CAPABILITIES.CAP_CHECKPOINT_RESTORE, 40);
});

test('no options gives docker defaults', () => {
  assert.deepEqual(resolveCapabilities(), [...DEFAULT_CAPABILITIES]);
  assert.deepEqual(resolveCapabilities({ capAdd: [], capDrop: [] }), [...DEFAULT_CAPABILITIES]);
  assert.equal(DEFAULT_CAPABILITIES.length, 14);
});

test('docker default mask is the well-known 0xa80425fb', () => {
  assert.equal(capabilityMask(DEFAULT_CAPABILITIES), 0xa80425fbn);
});

test('privileged gets every capability and ignores add/drop', () => {
  assert.deepEqual(resolveCapabilities({ privileged: true, capDrop: ['ALL'] }), [...ALL_CAPABILITIES]);
  assert.equal(capabilityMask(resolveCapabilities({ privileged: true })), (1n << 41n) - 1n);
});

test('add and drop accept names without CAP_, in any case', () => {
  const caps = resolveCapabilities({
    capAdd: ['sys_admin', 'Cap_Net_Admin'],
    capDrop: ['chown', 'CAP_KILL'],
  });
  assert.ok(caps.includes('CAP_SYS_ADMIN'));
  assert.ok(caps.includes('CAP_NET_ADMIN'));
  assert.ok(!caps.includes('CAP_CHOWN'));
  assert.ok(!caps.includes('CAP_KILL'));
  assert.equal(caps.length, 14);
});

test('adding a default capability does not duplicate it', () => {
  assert.deepEqual(resolveCapabilities({ capAdd: ['CHOWN'] }), [...DEFAULT_CAPABILITIES]);
});

test('capAdd ALL gives all capabilities minus capDrop', () => {
  const caps = resolveCapabilities({ capAdd: ['all'], capDrop: ['NET_RAW', 'sys_admin'] });
  assert.equal(caps.length, 39);
  assert.ok(!caps.includes('CAP_NET_RAW'));
  assert.ok(!caps.includes('CAP_SYS_ADMIN'));
});

test('capDrop ALL keeps only capAdd', () => {
  assert.deepEqual(resolveCapabilities({ capDrop: ['ALL'], capAdd: ['net_bind_service'] }), [
    'CAP_NET_BIND_SERVICE',
  ]);
  assert.deepEqual(resolveCapabilities({ capDrop: ['ALL'] }), []);
});

test('unknown names are all reported in one InvalidArgumentError', () => {
  assert.throws(
    () => resolveCapabilities({ capAdd: ['foo', 'SYS_ADMIN'], capDrop: ['cap_bar'] }),
    (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.match(err.message, /unknown capability "CAP_FOO"/);
      assert.match(err.message, /unknown capability "CAP_BAR"/);
      return true;
    },
  );
});

test('capabilityMask sets one bit per capability and rejects unknown names and ALL', () => {
  assert.equal(capabilityMask([]), 0n);
  assert.equal(
    capabilityMask(['CAP_CHOWN', 'sys_admin', 'CAP_CHECKPOINT_RESTORE']),
    1n | (1n << 21n) | (1n << 40n),
  );
  assert.throws(() => capabilityMask(['CAP_NOPE']), InvalidArgumentError);
  assert.throws(() => capabilityMask(['ALL']), InvalidArgumentError);
});
