import assert from 'node:assert/strict';
import { test } from 'node:test';
import { globRegExp, IgnoreMatcher, parseDockerignore } from './dockerignore.js';

test('parse: comments, blanks, leading slashes and ./ are cleaned', () => {
  assert.deepEqual(parseDockerignore('# c\n\n/secret\n./build/\n!keep.txt\n*.log\n'), [
    'secret',
    'build',
    '!keep.txt',
    '*.log',
  ]);
});

test('globs: * stays in one directory, ** spans directories, ? and classes', () => {
  assert.ok(globRegExp('*.txt').test('a.txt'));
  assert.ok(!globRegExp('*.txt').test('d/a.txt'));
  assert.ok(globRegExp('**/*.txt').test('d/e/a.txt'));
  assert.ok(globRegExp('**/*.txt').test('a.txt'));
  assert.ok(globRegExp('a?c').test('abc'));
  assert.ok(globRegExp('[a-c]x').test('bx'));
  assert.ok(!globRegExp('[!a-c]x').test('bx'));
});

test('matching: directories exclude their contents, exceptions, last match wins', () => {
  const m = new IgnoreMatcher(
    parseDockerignore('node_modules\n*.log\n!important.log\nsecret.txt\ndocs/**/*.md'),
  );
  assert.ok(m.excludes('node_modules'));
  assert.ok(m.excludes('node_modules/pkg/index.js'));
  assert.ok(m.excludes('debug.log'));
  assert.ok(!m.excludes('important.log'));
  assert.ok(m.excludes('secret.txt'));
  assert.ok(!m.excludes('src/secret.txt'));
  assert.ok(m.excludes('docs/a/b/x.md'));
  assert.ok(!m.excludes('src/main.ts'));
  assert.ok(m.skipsDirectory('node_modules'), 'no exception can match below node_modules');
  const e = new IgnoreMatcher(parseDockerignore('vendor\n!vendor/keep/*'));
  assert.ok(!e.skipsDirectory('vendor'), 'an exception below vendor keeps it walked');
  assert.ok(e.excludes('vendor/x') && !e.excludes('vendor/keep/y'));
  assert.ok(new IgnoreMatcher(['node_modules']).skipsDirectory('node_modules'));
});
