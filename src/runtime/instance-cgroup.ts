/**
 * An instance's cgroup as the runtimes read and clean it: stats and pids, the signal of last resort
 * when the monitor has gone, and delete's end of the monitor, the cgroup and the run directory.
 */
import { rm } from 'node:fs/promises';
import { constants } from 'node:os';
import type { ResourceStats } from '../core/runtime.js';
import type { Cgroup, CgroupDriver } from '../platform/cgroups/index.js';
import { shimRequest } from '../platform/shim.js';
import type { ShimInstanceFiles } from './shim-instance.js';

/** The cgroup's usage and limits as the Runtime interface reports them. */
export async function cgroupStats(cgroup: Cgroup): Promise<ResourceStats> {
  const stats = await cgroup.stats();
  return {
    memory: { usage: stats.memory.usage, limit: stats.memory.limit },
    cpu: { usageNs: stats.cpu.usageNs },
    pids: { current: stats.pids.current, limit: stats.pids.limit ?? null },
  };
}

/** Stats of the cgroup at `path`. */
export async function instanceStats(cgroups: CgroupDriver, path: string): Promise<ResourceStats> {
  return cgroupStats(await cgroups.open(path));
}

/** Host pids of the processes in the cgroup at `path`. */
export async function instancePids(cgroups: CgroupDriver, path: string): Promise<number[]> {
  return (await cgroups.open(path)).pids();
}

/** The name of signal number `signal` (SIGKILL for one this host does not know). */
export function signalName(signal: number): NodeJS.Signals {
  const found = Object.entries(constants.signals).find(([, n]) => n === signal);
  return (found?.[0] ?? 'SIGKILL') as NodeJS.Signals;
}

/** Signals the instance through its monitor; when the monitor is gone, sends `orphans` to what remains in the cgroup. */
export async function signalInstance(
  cgroups: CgroupDriver,
  files: Pick<ShimInstanceFiles, 'socketPath'> & { cgroupPath: string },
  signal: number,
  orphans: NodeJS.Signals,
): Promise<void> {
  try {
    await shimRequest(files.socketPath, `signal ${signal}`);
  } catch {
    const cgroup = await cgroups.open(files.cgroupPath);
    await cgroup.killAll(orphans).catch(() => undefined);
  }
}

/**
 * Delete for an instance in its own cgroup: SIGKILL through the monitor, then `settle` (what the
 * runtime must wait for), then the cgroup and the run directory go. Without `files` (no runtime state)
 * only a cgroup left at `cgroupPath` is removed.
 */
export async function removeInstance(
  cgroups: CgroupDriver,
  cgroupPath: string,
  files: ShimInstanceFiles | undefined,
  settle?: (cgroup: Cgroup | undefined) => Promise<void>,
): Promise<void> {
  if (!files) {
    await cgroups
      .open(cgroupPath)
      .then((cgroup) => cgroup.destroy())
      .catch(() => undefined);
    return;
  }
  try {
    await shimRequest(files.socketPath, 'signal 9');
  } catch {
    // already gone
  }
  const cgroup = await cgroups.open(cgroupPath).catch(() => undefined);
  await settle?.(cgroup);
  await Promise.all([cgroup?.destroy(), rm(files.runDir, { recursive: true, force: true })]);
}
