/** The runtime conformance suite against abode's own `container` runtime. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { detectCgroups } from '../../src/platform/cgroups/index.js';
import { ContainerRuntime } from '../../src/runtime/container/index.js';
import { runRuntimeSuite } from '../../src/runtime/testsuite.js';
import { commonSkip, shimPath, suiteRoot } from './runtime-bundles.js';

const { runRoot, makeBundle, releaseBundle, cleanup } = suiteRoot('abode-rt-container-');
const runtimes: ContainerRuntime[] = [];

runRuntimeSuite({
  name: 'container',
  skip: commonSkip(),
  newRuntime: async () => {
    const runtime = new ContainerRuntime({
      runRoot,
      shimPath,
      cgroups: await detectCgroups(),
      cgroupParent: 'abode',
    });
    runtimes.push(runtime);
    return runtime;
  },
  makeBundle,
  releaseBundle,
  runRoots: [runRoot],
  // Each runtime keeps a standby monitor in a pool cgroup: close() must leave neither behind.
  cleanup: async () => {
    for (const runtime of runtimes) await runtime.close();
    const left = runtimes
      .flatMap((runtime) => [...runtime.pools])
      .filter((path) => existsSync(`/sys/fs/cgroup/memory/${path}`) || existsSync(`/sys/fs/cgroup/${path}`));
    await cleanup();
    assert.deepEqual(left, [], 'standby pool cgroups were left behind');
  },
});
