import { test } from 'node:test';
import assert from 'node:assert/strict';
import { signalNumber } from './signals.js';

test("signals accept docker's forms", () => {
  assert.equal(signalNumber('KILL'), 9);
  assert.equal(signalNumber('SIGTERM'), 15);
  assert.equal(signalNumber('hup'), 1);
  assert.equal(signalNumber('10'), 10);
  assert.equal(signalNumber('RTMIN+2'), 36);
  assert.throws(() => signalNumber('NOPE'), /invalid signal: NOPE/);
  assert.throws(() => signalNumber(0), /invalid signal/);
});
