import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bytesSize,
  createdAgo,
  fromHumanSize,
  humanDuration,
  humanSize,
  humanSizeWithPrecision,
  parseBytes,
  parseCpus,
  statusString,
} from './units.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

test('humanDuration follows go-units thresholds', () => {
  const cases: [number, string][] = [
    [-5 * S, 'Less than a second'],
    [0, 'Less than a second'],
    [999, 'Less than a second'],
    [1 * S, '1 second'],
    [1999, '1 second'],
    [2 * S, '2 seconds'],
    [59 * S, '59 seconds'],
    [60 * S, 'About a minute'],
    [119 * S, 'About a minute'],
    [2 * M, '2 minutes'],
    [59 * M, '59 minutes'],
    [60 * M, 'About an hour'],
    [89 * M, 'About an hour'],
    [90 * M, '2 hours'],
    [47 * H, '47 hours'],
    [48 * H, '2 days'],
    [13 * D, '13 days'],
    [14 * D, '2 weeks'],
    [59 * D, '8 weeks'],
    [60 * D, '2 months'],
    [729 * D, '24 months'],
    [730 * D, '2 years'],
    [3 * 365 * D, '3 years'],
  ];
  for (const [ms, want] of cases) assert.equal(humanDuration(ms), want, String(ms));
});

test('createdAgo', () => {
  const now = Date.parse('2024-01-01T00:10:00Z');
  assert.equal(createdAgo(now - 3 * M, now), '3 minutes ago');
  assert.equal(createdAgo(new Date(now - 2 * D), new Date(now)), '2 days ago');
  assert.equal(createdAgo('2024-01-01T00:09:55Z', now), '5 seconds ago');
});

test('statusString matches docker ps STATUS', () => {
  const now = Date.parse('2024-01-01T00:10:00Z');
  assert.equal(statusString({ status: 'running', startedAt: now - 5 * S, now }), 'Up 5 seconds');
  assert.equal(statusString({ status: 'paused', startedAt: now - 3 * M, now }), 'Up 3 minutes (Paused)');
  assert.equal(
    statusString({ status: 'exited', exitCode: 0, startedAt: now - H, finishedAt: now - 2 * M, now }),
    'Exited (0) 2 minutes ago',
  );
  assert.equal(
    statusString({ status: 'exited', exitCode: 137, startedAt: now - H, finishedAt: now - 2 * H, now }),
    'Exited (137) 2 hours ago',
  );
  assert.equal(statusString({ status: 'created', now }), 'Created');
  assert.equal(statusString({ status: 'exited', startedAt: '0001-01-01T00:00:00Z', now }), 'Created');
  assert.equal(
    statusString({ status: 'restarting', exitCode: 1, finishedAt: now - 3 * S, now }),
    'Restarting (1) 3 seconds ago',
  );
  assert.equal(
    statusString({ status: 'running', health: 'starting', startedAt: now - 5 * S, now }),
    'Up 5 seconds (health: starting)',
  );
  assert.equal(
    statusString({ status: 'running', health: 'healthy', startedAt: now - H, now }),
    'Up About an hour (healthy)',
  );
  assert.equal(statusString({ status: 'dead', now }), 'Dead');
  assert.equal(statusString({ status: 'removing', now }), 'Removal In Progress');
});

test('humanSize is decimal with 4 significant digits', () => {
  assert.equal(humanSize(0), '0B');
  assert.equal(humanSize(123), '123B');
  assert.equal(humanSize(1000), '1kB');
  assert.equal(humanSize(1500), '1.5kB');
  assert.equal(humanSize(7_340_032), '7.34MB');
  assert.equal(humanSize(3.4e9), '3.4GB');
  assert.equal(humanSize(999_999), '1000kB');
  assert.equal(humanSize(1_062_500), '1.062MB'); // exact tie rounds to even, as Go
  assert.equal(humanSize(187_000_000), '187MB');
  assert.equal(humanSizeWithPrecision(1234, 3), '1.23kB');
});

test('bytesSize is binary with 4 significant digits', () => {
  assert.equal(bytesSize(1_572_864), '1.5MiB');
  assert.equal(bytesSize(1024), '1KiB');
  assert.equal(bytesSize(1023), '1023B');
  assert.equal(bytesSize(8e9), '7.451GiB');
});

test('parseBytes is RAMInBytes', () => {
  const cases: [string, number][] = [
    ['32', 32],
    ['32b', 32],
    ['32B', 32],
    ['32k', 32 * 1024],
    ['32K', 32 * 1024],
    ['32kb', 32 * 1024],
    ['32Kib', 32 * 1024],
    ['32Mb', 32 * 1024 * 1024],
    ['512m', 536_870_912],
    ['32Gb', 32 * 1024 ** 3],
    ['32Tb', 32 * 1024 ** 4],
    ['32PB', 32 * 1024 ** 5],
    ['0.3m', 314_572],
    ['1 k', 1024],
  ];
  for (const [s, n] of cases) assert.equal(parseBytes(s), n, s);
  for (const s of ['12q', '', 'm', '-1', '-1m', '1kibb', '1bb', '1kk']) {
    assert.throws(() => parseBytes(s), { message: `invalid size: '${s}'` }, s);
  }
  assert.throws(() => parseBytes('k1'), { message: 'strconv.ParseFloat: parsing "k1": invalid syntax' });
  assert.throws(() => parseBytes('1.2.3m'), {
    message: 'strconv.ParseFloat: parsing "1.2.3": invalid syntax',
  });
  assert.equal(fromHumanSize('44kB'), 44_000);
  assert.equal(fromHumanSize('17MB'), 17_000_000);
});

test('parseCpus is docker ParseCPUs', () => {
  assert.equal(parseCpus('1.5'), 1_500_000_000);
  assert.equal(parseCpus('2'), 2_000_000_000);
  assert.equal(parseCpus('0.01'), 10_000_000);
  assert.equal(parseCpus('.5'), 500_000_000);
  assert.equal(parseCpus('1/2'), 500_000_000);
  assert.equal(parseCpus('1e-3'), 1_000_000);
  assert.throws(() => parseCpus('abc'), { message: 'failed to parse abc as a rational number' });
  assert.throws(() => parseCpus(''), { message: 'failed to parse  as a rational number' });
  assert.throws(() => parseCpus('1/0'), { message: 'failed to parse 1/0 as a rational number' });
  assert.throws(() => parseCpus('0.0000000001'), { message: 'value is too precise' });
});
