import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from './errors.js';
import {
  familiarize,
  familiarString,
  formatReference,
  normalizeReference,
  parseNormalizedTagged,
  parseReference,
} from './reference.js';

const D = `sha256:${'a'.repeat(64)}`;

test('normalizes like docker', () => {
  const cases: [string, string, string][] = [
    ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36', 'busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['index.docker.io/library/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['user/app', 'docker.io/user/app:latest', 'user/app:latest'],
    ['docker.io/library/a/b', 'docker.io/library/a/b:latest', 'library/a/b:latest'],
    ['localhost/app', 'localhost/app:latest', 'localhost/app:latest'],
    ['localhost:5000/app:v1', 'localhost:5000/app:v1', 'localhost:5000/app:v1'],
    [
      'registry.example.com:443/team/app:1.0-rc_1',
      'registry.example.com:443/team/app:1.0-rc_1',
      'registry.example.com:443/team/app:1.0-rc_1',
    ],
    ['[::1]:5000/app', '[::1]:5000/app:latest', '[::1]:5000/app:latest'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`, `busybox@${D}`],
    [`busybox:1@${D}`, `docker.io/library/busybox:1@${D}`, `busybox:1@${D}`],
    ['a__b/c.d-e', 'docker.io/a__b/c.d-e:latest', 'a__b/c.d-e:latest'],
  ];
  for (const [input, full, short] of cases) {
    assert.equal(normalizeReference(input), full, input);
    assert.equal(familiarString(parseNormalizedTagged(input)), short, input);
    assert.equal(familiarize(full), short, input);
  }
});

test('parseReference keeps the parts and adds no tag', () => {
  assert.deepEqual(parseReference('host:5000/a/b:t'), { domain: 'host:5000', path: 'a/b', tag: 't' });
  assert.deepEqual(parseReference('busybox'), { domain: 'docker.io', path: 'library/busybox' });
  assert.equal(formatReference(parseReference('busybox')), 'docker.io/library/busybox');
});

test('invalid references fail with docker message', () => {
  const bad = [
    '',
    ':latest',
    'busybox:',
    'Busybox',
    'a//b',
    'a/',
    '-a',
    'a-',
    'a:b:c',
    'busybox@sha256:abc',
    'busybox@md5:' + 'a'.repeat(32),
    'a'.repeat(64),
    'x'.repeat(256),
    'busybox:' + 't'.repeat(129),
    'has space',
    'a/b@',
  ];
  for (const s of bad) {
    assert.throws(
      () => parseReference(s),
      (e: unknown) => e instanceof InvalidArgumentError && e.message.startsWith('invalid reference format'),
      JSON.stringify(s),
    );
  }
  assert.throws(() => parseReference('Busybox'), /repository name must be lowercase/);
});
