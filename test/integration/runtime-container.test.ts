/** The runtime conformance suite against abode's own `container` runtime. */
import { detectCgroups } from '../../src/platform/cgroups/index.js';
import { ContainerRuntime } from '../../src/runtime/container/index.js';
import { runRuntimeSuite } from '../../src/runtime/testsuite.js';
import { commonSkip, shimPath, suiteRoot } from './runtime-bundles.js';

const { runRoot, makeBundle, releaseBundle, cleanup } = suiteRoot('abode-rt-container-');

runRuntimeSuite({
  name: 'container',
  skip: commonSkip(),
  newRuntime: async () =>
    new ContainerRuntime({ runRoot, shimPath, cgroups: await detectCgroups(), cgroupParent: 'abode' }),
  makeBundle,
  releaseBundle,
  runRoots: [runRoot],
  cleanup,
});
