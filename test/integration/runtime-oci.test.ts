/** The runtime conformance suite against `oci:runc` (an external OCI runtime under abode-shim). */
import { findOnPath, OciRuntime } from '../../src/runtime/oci/index.js';
import { runRuntimeSuite } from '../../src/runtime/testsuite.js';
import { commonSkip, shimPath, suiteRoot } from './runtime-bundles.js';

const binary = process.env.ABODE_OCI_RUNTIME ?? 'runc';
const { runRoot, makeBundle, releaseBundle, cleanup } = suiteRoot('abode-rt-oci-');

runRuntimeSuite({
  name: `oci:${binary}`,
  skip:
    commonSkip() ||
    (!findOnPath(binary) ? `${binary} is not installed (apt-get install -y ${binary})` : false),
  newRuntime: () => new OciRuntime({ binary, runRoot, shimPath }),
  makeBundle,
  releaseBundle,
  runRoots: [runRoot],
  cleanup,
});
