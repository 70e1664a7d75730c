import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Digester, digestHex, isDigest, parseDigest, sha256Digest, shortId } from './digest.js';
import { InvalidArgumentError } from './errors.js';

const EMPTY = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

test('sha256Digest and Digester agree with the known empty digest', () => {
  assert.equal(sha256Digest(''), EMPTY);
  const d = new Digester();
  d.update(Buffer.from('ab'));
  d.update(Buffer.from('c'));
  assert.equal(d.digest(), sha256Digest('abc'));
  assert.equal(d.size, 3);
});

test('parseDigest accepts sha256:<64 hex> only', () => {
  assert.equal(parseDigest(EMPTY), EMPTY);
  assert.equal(isDigest(EMPTY.toUpperCase()), false);
  for (const bad of ['', 'sha256:', 'sha256:abc', `${EMPTY}0`, EMPTY.slice(7), 'md5:abc']) {
    assert.throws(() => parseDigest(bad), InvalidArgumentError, bad);
  }
  assert.throws(() => parseDigest(`sha512:${'a'.repeat(128)}`), /unsupported digest algorithm/);
});

test('digestHex and shortId', () => {
  assert.equal(digestHex(EMPTY), EMPTY.slice(7));
  assert.equal(shortId(EMPTY), 'e3b0c44298fc');
});
