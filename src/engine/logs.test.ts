import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCriLine, readLog } from './logs.js';
import { criLogText } from '../core/cri-log.js';

test('CRI lines parse into stream, time and text; partial lines keep no newline', () => {
  assert.deepEqual(parseCriLine('2026-12-01T11:00:00.1Z stdout F hello world'), {
    stream: 'stdout',
    time: '2026-12-01T11:00:00.1Z',
    text: 'hello world\n',
  });
  assert.equal(parseCriLine('2026-12-01T11:00:00.1Z stderr P part')?.text, 'part');
  assert.equal(parseCriLine('garbage'), undefined);
});

test('readLog filters streams and takes the tail', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'abode-logs-'));
  const file = join(dir, 'log');
  writeFileSync(
    file,
    ['a', 'b', 'c'].map((t, i) => `T${i} ${i === 1 ? 'stderr' : 'stdout'} F ${t}\n`).join(''),
  );
  const collect = async (opts: Parameters<typeof readLog>[1]) => {
    const out: string[] = [];
    for await (const entry of readLog(file, opts, () => true)) out.push(entry.text);
    return out;
  };
  assert.deepEqual(await collect({ follow: false, stdout: true, stderr: false }), ['a\n', 'c\n']);
  assert.deepEqual(await collect({ follow: false, stdout: true, stderr: true, tail: 1 }), ['c\n']);
  rmSync(dir, { recursive: true });
});

test('criLogText joins one stream back, partial lines included', () => {
  const log = [
    '2026-12-01T00:00:00.000000000Z stdout P hel',
    '2026-12-01T00:00:00.000000001Z stderr F oops',
    '2026-12-01T00:00:00.000000002Z stdout F lo',
    '2026-12-01T00:00:00.000000003Z stdout F world',
    '',
  ].join('\n');
  assert.equal(criLogText(log, 'stdout'), 'hello\nworld\n');
  assert.equal(criLogText(log, 'stderr'), 'oops\n');
});
