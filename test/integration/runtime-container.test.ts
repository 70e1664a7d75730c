/** The runtime conformance suite against abode's own `container` runtime. */
import assert from 'node:assert/strict';
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
