/**
 * The runtime conformance suite against `vm`: QEMU microVMs under abode-shim with abode-agent as the
 * guest's PID 1 (TCG where there is no KVM, ≈2 s a boot). Made as the daemon makes it; the kernel
 * comes from a cache that outlives the run (fetched once with apt-get), the initramfs and the image's
 * disk are built in the throw-away root.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestKernel } from '../../src/platform/qemu/kernel.js';
import { ensureKernel } from '../../src/platform/qemu/kernel.js';
import { detectCgroups } from '../../src/platform/cgroups/index.js';
import { accelerator } from '../../src/platform/host.js';
import { findOnPath } from '../../src/runtime/host-process.js';
import { VmRuntime } from '../../src/runtime/vm/index.js';
import { runRuntimeSuite } from '../../src/runtime/testsuite.js';
import { commonSkip, repoRoot, shimPath, suiteRoot } from './runtime-bundles.js';

const MiB = 1024 * 1024;
const agentPath = process.env.ABODE_AGENT ?? join(repoRoot, 'native/build/abode-agent');
const qemu = process.env.ABODE_QEMU ?? 'qemu-system-x86_64';
const skip =
  commonSkip() ||
  (!existsSync(agentPath) ? `no ${agentPath} (make -C native)` : false) ||
  (!findOnPath(qemu) || !findOnPath('qemu-img')
    ? 'QEMU is not installed (apt-get install -y qemu-system-x86 qemu-utils)'
    : false);

const { root, runRoot, makeBundle, releaseBundle, cleanup } = suiteRoot('abode-rt-vm-');
const cacheRoot = join(root, 'vm');

/** Guest kernel caches that outlive a run: the daemon's default state root's, else this suite's own. */
const KERNEL_CACHES = ['/var/lib/abode/vm/kernel', '/tmp/abode-vm-kernel'];

/** Points the throw-away root's kernel cache at a lasting one (fetching into it the first time). */
async function shareKernelCache(): Promise<void> {
  if (process.env.ABODE_VM_KERNEL) return;
  const cache = KERNEL_CACHES.find(holdsKernel) ?? KERNEL_CACHES[KERNEL_CACHES.length - 1]!;
  await ensureKernel(cache);
  mkdirSync(cacheRoot, { recursive: true });
  symlinkSync(cache, join(cacheRoot, 'kernel'));
}

function holdsKernel(cache: string): boolean {
  try {
    const kernel = JSON.parse(readFileSync(join(cache, 'current.json'), 'utf8')) as GuestKernel;
    return existsSync(kernel.image) && kernel.modules.every((m) => existsSync(m));
  } catch {
    return false;
  }
}

let prepared: Promise<void> | undefined;

runRuntimeSuite({
  name: 'vm',
  skip,
  newRuntime: async () => {
    prepared ??= shareKernelCache();
    await prepared;
    return new VmRuntime({
      runRoot,
      cacheRoot,
      shimPath,
      agentPath,
      cgroups: await detectCgroups(),
      cgroupParent: 'abode',
      accelerator,
      qemu,
      ...(process.env.ABODE_VM_KERNEL ? { kernel: process.env.ABODE_VM_KERNEL } : {}),
    });
  },
  makeBundle,
  releaseBundle,
  runRoots: [runRoot],
  cleanup,
  differs: {
    pid1: "the guest's PID 1 is abode-agent (its init), which runs the main process and every exec as its children",
    maskedPaths: "the guest's /proc shows only the guest's kernel, so there is nothing of the host's to mask",
    readOnlyRoot:
      'not implemented for VMs yet: abode-agent mounts the root disk read-write whatever root.readonly says',
    hostPids: "the host sees QEMU, not the guest's processes (they are in the guest's own kernel)",
  },
  // --memory is the guest's RAM, and 64 MiB is too little for Debian's cloud kernel to boot (it
  // panics, out of memory); the cgroup holds QEMU, so its limit is the guest's RAM plus QEMU's overhead.
  // stats() reports the guest's RAM (QMP query-balloon) as the limit; the cgroup allows QEMU_OVERHEAD more
  statsMemory: { memory: 128 * MiB, limit: 128 * MiB },
});
