/**
 * Standby monitors: an abode-shim already sitting in a fresh cgroup of the pool, waiting for a spec.
 * Moving a process into a v1 cgroup waits out an RCU grace period (~15 ms here), and a monitor's start
 * takes a few more: both happen ahead of the next create instead of inside it. The monitor then stays
 * in the instance's cgroup (its pid is not the instance's; the pids limit counts it). One pool serves
 * every runtime that makes its own cgroups (container, vm).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { OciResources } from '../core/oci.js';
import type { Cgroup, CgroupDriver } from '../platform/cgroups/index.js';
import { spawnStandbyShim } from '../platform/shim.js';

/** A standby monitor and the pool cgroup it sits in (which becomes the instance's). */
export interface Standby {
  child: ChildProcess;
  cgroupPath: string;
  cgroup: Cgroup;
}

export interface StandbyPoolOptions {
  runRoot: string;
  shimPath: string;
  cgroups: CgroupDriver;
  /** Parent of the pool's cgroups (`PARENT/pool-…`), the instances' parent. */
  cgroupParent: string;
}

/** After a take, the next standby starts this much later: its cgroup migration holds up forks, execs and exits host-wide for a moment. */
const REFILL_DELAY_MS = 30;

/** One standby monitor kept ready at a time. */
export class StandbyPool {
  private next?: Promise<Standby | undefined>;
  private closed = false;
  /** Every pool cgroup this pool made (each becomes an instance's cgroup or goes with close()). */
  readonly made = new Set<string>();

  constructor(private readonly options: StandbyPoolOptions) {
    this.refill();
  }

  private refill(): void {
    this.next = (async (): Promise<Standby | undefined> => {
      const cgroupPath = `${this.options.cgroupParent}/pool-${randomBytes(8).toString('hex')}`;
      this.made.add(cgroupPath);
      const cgroup = await this.options.cgroups.create(cgroupPath, undefined);
      await mkdir(this.options.runRoot, { recursive: true });
      const child = spawnStandbyShim(
        this.options.shimPath,
        cgroup.procsFiles(),
        join(this.options.runRoot, 'standby.stderr'),
      );
      return { child, cgroupPath, cgroup };
    })().catch(() => undefined);
  }

  /**
   * Takes the standby monitor (and starts the next), its cgroup set to `resources`; undefined when none
   * is usable (the caller makes a cgroup and a monitor of its own).
   */
  async take(resources: OciResources | undefined): Promise<Standby | undefined> {
    if (this.closed) return undefined;
    // Claimed before the wait: two creates at once must never get the same monitor.
    const claimed = this.next;
    this.next = undefined;
    const taken = await claimed;
    setTimeout(() => {
      if (!this.next && !this.closed) this.refill();
    }, REFILL_DELAY_MS).unref();
    if (!taken) return undefined;
    if (taken.child.exitCode !== null || taken.child.signalCode !== null) {
      await taken.cgroup.destroy().catch(() => undefined);
      return undefined;
    }
    try {
      // The monitor counts against the pids limit: allow for it.
      const pids = resources?.pids?.limit !== undefined ? { pids: { limit: resources.pids.limit + 1 } } : {};
      if (resources) await taken.cgroup.update({ ...resources, ...pids });
      return taken;
    } catch (error) {
      taken.child.kill('SIGKILL');
      await taken.cgroup.destroy().catch(() => undefined);
      throw error;
    }
  }

  /** Ends the standby monitor and removes its cgroup. */
  async close(): Promise<void> {
    this.closed = true;
    const standby = await this.next;
    this.next = undefined;
    if (standby) {
      standby.child.stdin?.end();
      standby.child.kill('SIGKILL');
      await standby.cgroup.destroy().catch(() => undefined);
    }
  }

  /** Removes pool cgroups no instance uses (left by a daemon that died). */
  async collect(inUse: (cgroupPath: string) => boolean): Promise<void> {
    const current = (await this.next)?.cgroupPath;
    const { cgroups, cgroupParent } = this.options;
    for (const path of await cgroups.listChildren(cgroupParent).catch(() => [])) {
      if (!path.split('/').pop()?.startsWith('pool-') || path === current || inUse(path)) continue;
      const cgroup = await cgroups.open(path).catch(() => undefined);
      if (cgroup && (await cgroup.pids()).length === 0) await cgroup.destroy().catch(() => undefined);
    }
  }
}
