/**
 * An instance's cgroup as the runtimes read and clean it: stats and pids, the signal of last resort
 * when the monitor has gone, and delete's end of the monitor, the cgroup and the run directory.
 * CgroupShimRuntime is that much of a Runtime for those (container, vm) that make the cgroup themselves.
 */
import { rm } from 'node:fs/promises';
import { constants } from 'node:os';
import type { ResourceStats } from '../core/runtime.js';
import type { OciResources } from '../core/oci.js';
import type { Cgroup, CgroupDriver } from '../platform/cgroups/index.js';
import { shimRequest } from '../platform/shim.js';
import { ShimRuntime, type ShimInstanceFiles } from './shim-instance.js';
import type { Standby, StandbyPool } from './standby-pool.js';

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

/** What a runtime remembers of an instance that runs in a cgroup of its own making. */
export interface CgroupInstanceFiles extends ShimInstanceFiles {
  cgroupPath: string;
  /** The monitor came from the standby pool and sits in the instance's cgroup (not counted as the instance's). */
  monitorInCgroup?: boolean;
}

/** A runtime on abode-shim whose instances each get a cgroup `cgroupParent/ID` from `cgroups`. */
export abstract class CgroupShimRuntime<F extends CgroupInstanceFiles> extends ShimRuntime<F> {
  constructor(
    runRoot: string,
    kind: string,
    protected readonly cgroups: CgroupDriver,
    private readonly cgroupParent: string,
  ) {
    super(runRoot, kind);
  }

  protected cgroupPath(id: string): string {
    return `${this.cgroupParent}/${id}`;
  }

  /**
   * The new instance's cgroup: the standby pool's, with the monitor waiting in it (`standby`), when the
   * pool has one; else a cgroup `cgroupParent/ID` of its own. Either gets `resources`.
   */
  protected async instanceCgroup(
    id: string,
    resources: OciResources | undefined,
    pool: StandbyPool | undefined,
  ): Promise<{ cgroupPath: string; cgroup: Cgroup; standby?: Standby['child'] }> {
    const standby = await pool?.take(resources);
    if (standby) return { cgroupPath: standby.cgroupPath, cgroup: standby.cgroup, standby: standby.child };
    const cgroupPath = this.cgroupPath(id);
    return { cgroupPath, cgroup: await this.cgroups.create(cgroupPath, resources) };
  }

  /** What kill sends to what remains in the cgroup when the monitor is gone. */
  protected abstract orphanSignal(signal: number): NodeJS.Signals;

  /** What delete waits for between the monitor's SIGKILL and removing the cgroup; nothing by default. */
  protected async settle(_files: F, _cgroup: Cgroup | undefined): Promise<void> {}

  async kill(id: string, signal: number): Promise<void> {
    await signalInstance(this.cgroups, await this.files(id), signal, this.orphanSignal(signal));
  }

  async stats(id: string): Promise<ResourceStats> {
    const files = await this.files(id);
    const stats = await instanceStats(this.cgroups, files.cgroupPath);
    if (!files.monitorInCgroup) return stats;
    const limit = stats.pids.limit === null ? null : stats.pids.limit - 1;
    return { ...stats, pids: { current: Math.max(0, stats.pids.current - 1), limit } };
  }

  async pids(id: string): Promise<number[]> {
    const files = await this.files(id);
    const pids = await instancePids(this.cgroups, files.cgroupPath);
    return files.monitorInCgroup ? pids.filter((pid) => pid !== files.shimPid) : pids;
  }

  async delete(id: string): Promise<void> {
    const files = await this.files(id).catch(() => undefined);
    await removeInstance(this.cgroups, files?.cgroupPath ?? this.cgroupPath(id), files, (cgroup) =>
      files ? this.settle(files, cgroup) : Promise.resolve(),
    );
  }
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
