import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cacheKey, filesDigest, type SourceFile } from './cache-key.js';

const file = (path: string, digest: string, mode = 0o100644): SourceFile => ({
  path,
  type: 'file',
  mode,
  digest,
});

test('the same parent, instruction and inputs give the same key', () => {
  const a = cacheKey({ parent: 'sha256:p', instruction: 'RUN make', extra: ['V=1'] });
  assert.equal(a, cacheKey({ parent: 'sha256:p', instruction: 'RUN make', extra: ['V=1'] }));
  assert.match(a, /^sha256:[a-f0-9]{64}$/);
});

test('any input changes the key: parent, instruction, build args, file content, mode, name', () => {
  const base = { parent: 'sha256:p', instruction: 'COPY . /', files: [file('a', 'sha256:1')] };
  const k = cacheKey(base);
  assert.notEqual(k, cacheKey({ ...base, parent: 'sha256:q' }));
  assert.notEqual(k, cacheKey({ ...base, instruction: 'COPY . /x' }));
  assert.notEqual(k, cacheKey({ ...base, extra: ['V=2'] }));
  assert.notEqual(k, cacheKey({ ...base, files: [file('a', 'sha256:2')] }));
  assert.notEqual(k, cacheKey({ ...base, files: [file('a', 'sha256:1', 0o100755)] }));
  assert.notEqual(k, cacheKey({ ...base, files: [file('b', 'sha256:1')] }));
});

test('file order does not matter (only names, types, modes and contents)', () => {
  assert.equal(
    filesDigest([file('a', 'sha256:1'), file('b', 'sha256:2')]),
    filesDigest([file('b', 'sha256:2'), file('a', 'sha256:1')]),
  );
});
