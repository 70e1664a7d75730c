/** The runtime conformance suite against abode's own `container` runtime. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { existsSync } from 'node:fs';
import { detectCgroups } from '../../src/platform/cgroups/index.js';
import { ContainerRuntime } from '../../src/runtime/container/index.js';
import { StandbyPool } from '../../src/runtime/standby-pool.js';
import { runRuntimeSuite } from '../../src/runtime/testsuite.js';
import { commonSkip, shimPath, suiteRoot } from './runtime-bundles.js';

const { runRoot, makeBundle, releaseBundle, cleanup } = suiteRoot('abode-rt-container-');
const pools: StandbyPool[] = [];

runRuntimeSuite({
  name: 'container',
  skip: commonSkip(),
  newRuntime: async () => {
    const options = { runRoot, shimPath, cgroups: await detectCgroups(), cgroupParent: 'abode' };
    // As the daemon has it: a standby monitor in a fresh cgroup for each create.
    const pool = new StandbyPool(options);
    pools.push(pool);
    return new ContainerRuntime({ ...options, pool });
  },
  makeBundle,
  releaseBundle,
  runRoots: [runRoot],
  // Each pool keeps a standby monitor in a pool cgroup: close() must leave neither behind.
  cleanup: async () => {
    for (const pool of pools) await pool.close();
    const left = pools
      .flatMap((pool) => [...pool.made])
      .filter((path) => existsSync(`/sys/fs/cgroup/memory/${path}`) || existsSync(`/sys/fs/cgroup/${path}`));
    await cleanup();
    assert.deepEqual(left, [], 'standby pool cgroups were left behind');
  },
});

describe('standby pool', { skip: commonSkip() }, () => {
  it('never gives one standby monitor to two creates at once', async () => {
    const pool = new StandbyPool({
      runRoot,
      shimPath,
      cgroups: await detectCgroups(),
      cgroupParent: 'abode',
    });
    const taken = await Promise.all([pool.take(undefined), pool.take(undefined)]);
    try {
      assert.ok(taken[0] !== undefined || taken[1] !== undefined, 'neither create got the standby');
      assert.notEqual(taken[0], taken[1]);
    } finally {
      for (const standby of taken.filter((t) => t !== undefined)) {
        standby.child.kill('SIGKILL');
        // the standby is unreferenced: wait on a timer, not on its exit event
        while (standby.child.exitCode === null && standby.child.signalCode === null)
          await new Promise((resolve) => setTimeout(resolve, 10));
        await standby.cgroup.destroy();
      }
      await pool.close();
    }
  });
});
