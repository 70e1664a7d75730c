import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDeb822, parseSourcesList, pickMirror } from './debian.js';

test('apt one-line sources: options, comments', () => {
  assert.deepEqual(
    parseSourcesList(
      '# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\ndeb-src http://x bookworm main\n',
    ),
    [{ uri: 'http://mirror.example/debian/', suites: ['bookworm'], components: ['main', 'contrib'] }],
  );
});

test('deb822 sources: several suites, disabled stanzas, deb-src skipped', () => {
  const text = `Types: deb
URIs: http://deb.example.org/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://off.example/debian
Suites: bookworm
`;
  const sources = parseDeb822(text);
  assert.equal(sources.length, 2);
  assert.equal(pickMirror(sources), 'http://deb.example.org/debian');
});

test('the mirror carrying the suite itself wins over -security and -updates', () => {
  assert.equal(
    pickMirror([
      { uri: 'http://sec/debian-security', suites: ['bookworm-security'], components: [] },
      { uri: 'http://m/debian/', suites: ['bookworm'], components: [] },
    ]),
    'http://m/debian',
  );
  assert.equal(pickMirror([]), undefined);
});
