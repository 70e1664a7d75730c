import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../core/errors.js';
import { parseKeyed, parseLimit } from './fs.js';
import { checkCgroupPath, cpusToQuota, planMemory, sharesToWeight, validateResources } from './resources.js';

const MiB = 1024 * 1024;

function problems(fn: () => void): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof InvalidArgumentError);
    return (err.details?.problems as string[]) ?? [];
  }
  return [];
}

describe('sharesToWeight', () => {
  it('converts as runc does', () => {
    assert.equal(sharesToWeight(0), 0);
    assert.equal(sharesToWeight(2), 1);
    assert.equal(sharesToWeight(512), 20);
    assert.equal(sharesToWeight(1024), 39);
    assert.equal(sharesToWeight(262144), 10000);
  });
});

describe('cpusToQuota', () => {
  it('turns --cpus into quota and period', () => {
    assert.deepEqual(cpusToQuota(0.5), { quota: 50000, period: 100000 });
    assert.deepEqual(cpusToQuota(2), { quota: 200000, period: 100000 });
    assert.deepEqual(cpusToQuota(0.001), { quota: 1000, period: 100000 });
    assert.throws(() => cpusToQuota(0), InvalidArgumentError);
  });
});

describe('validateResources', () => {
  it('accepts sensible and unset values', () => {
    validateResources(undefined);
    validateResources({});
    validateResources({
      memory: { limit: 6 * MiB, reservation: 6 * MiB, swap: -1 },
      cpu: { shares: 1024, quota: -1, period: 100000, cpus: '0-3,5', mems: '0' },
      pids: { limit: -1 },
    });
    validateResources({ memory: { limit: -1 }, cpu: { quota: 0, period: 0, shares: 0 }, pids: { limit: 0 } });
  });

  it("reports every problem at once, in docker's words", () => {
    assert.deepEqual(
      problems(() => validateResources({ memory: { limit: 6 * MiB - 1, reservation: MiB } })),
      ['Minimum memory limit allowed is 6MB', 'Minimum memory reservation allowed is 6MB'],
    );
    assert.deepEqual(
      problems(() => validateResources({ memory: { limit: 64 * MiB, swap: 32 * MiB } })),
      ['Minimum memoryswap limit should be larger than memory limit, see usage'],
    );
    assert.deepEqual(
      problems(() => validateResources({ memory: { swap: 32 * MiB } })),
      ['You should always set the Memory limit when using Memoryswap limit, see usage'],
    );
    assert.deepEqual(
      problems(() => validateResources({ memory: { limit: 16 * MiB, reservation: 32 * MiB } })),
      ['Minimum memory limit can not be less than memory reservation limit, see usage'],
    );
    assert.deepEqual(
      problems(() =>
        validateResources({ cpu: { shares: 300000, quota: 500, period: 2000000, cpus: '0-a', mems: 'x' } }),
      ),
      [
        'CPU shares must be between 2 and 262144, got 300000',
        'CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)',
        'CPU cfs quota can not be less than 1ms (i.e. 1000)',
        'Invalid value 0-a for cpuset cpus',
        'Invalid value x for cpuset mems',
      ],
    );
    assert.deepEqual(
      problems(() => validateResources({ memory: { limit: -5 }, pids: { limit: 2.5 } })),
      ['invalid memory limit -5', 'pids limit must be an integer, got 2.5'],
    );
  });
});

describe('planMemory', () => {
  it("applies docker's swap default of twice the limit", () => {
    assert.deepEqual(planMemory(undefined), {});
    assert.deepEqual(planMemory({ limit: 32 * MiB }), { limit: 32 * MiB, swap: 64 * MiB });
    assert.deepEqual(planMemory({ limit: 32 * MiB, swap: 40 * MiB }), { limit: 32 * MiB, swap: 40 * MiB });
    assert.deepEqual(planMemory({ limit: -1 }), { limit: -1, swap: -1 });
    assert.deepEqual(planMemory({ limit: 0, reservation: 8 * MiB }), { reservation: 8 * MiB });
  });
});

describe('checkCgroupPath', () => {
  it('accepts relative paths and rejects escapes', () => {
    assert.equal(checkCgroupPath('abode/x'), 'abode/x');
    assert.equal(checkCgroupPath('abode//x/'), 'abode/x');
    for (const bad of ['', '/', '/abode/x', 'abode/../x', '..', 'a/./b'])
      assert.throws(() => checkCgroupPath(bad), InvalidArgumentError, bad);
  });
});

describe('file parsing', () => {
  it('reads limits and keyed files', () => {
    assert.equal(parseLimit('max\n'), null);
    assert.equal(parseLimit('-1'), null);
    assert.equal(parseLimit('9223372036854771712'), null);
    assert.equal(parseLimit('33554432\n'), 33554432);
    assert.equal(parseLimit('garbage'), undefined);
    assert.deepEqual(
      parseKeyed('oom_kill_disable 0\nunder_oom 0\noom_kill 3\nbogus x\n'),
      new Map([
        ['oom_kill_disable', 0],
        ['under_oom', 0],
        ['oom_kill', 3],
      ]),
    );
  });
});
