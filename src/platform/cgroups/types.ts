import type { OciResources } from '../../core/oci.js';

/** How the host mounts cgroups: v1 controllers only, cgroup2 only, or v1 controllers plus a controller-less cgroup2. */
export type CgroupMode = 'v1' | 'v2' | 'hybrid';

/** One mounted hierarchy as reported by describe(). */
export interface CgroupHierarchy {
  version: 1 | 2;
  mountPoint: string;
  controllers: string[];
}

/** What `abode info` shows about the host's cgroups. */
export interface CgroupInfo {
  mode: CgroupMode;
  parent: string;
  hierarchies: CgroupHierarchy[];
  /** Controllers abode can use (union over hierarchies). */
  controllers: string[];
}

/** Resource usage read from the cgroup files; a null limit means unlimited. */
export interface CgroupStats {
  memory: { usage: number; limit: number | null; maxUsage?: number; cache?: number };
  cpu: { usageNs: number; userNs?: number; systemNs?: number; throttledPeriods?: number };
  pids: { current: number; limit?: number | null };
}

/** One container's cgroup, spanning every hierarchy it lives in. */
export interface Cgroup {
  /** Path relative to the hierarchy roots, e.g. `abode/<id>`. */
  readonly path: string;
  /** The `cgroup.procs` file of each hierarchy; writing a pid into each moves that process in. */
  procsFiles(): string[];
  /** Directory of this cgroup in the hierarchy holding `controller`, or undefined when not available. */
  controllerDir(controller: string): string | undefined;
  /** Pids of all processes in this cgroup and its descendants, sorted, without duplicates. */
  pids(): Promise<number[]>;
  /** Current usage and limits. */
  stats(): Promise<CgroupStats>;
  /** True when the kernel's OOM killer has killed a process in this cgroup. */
  oomKilled(): Promise<boolean>;
  /** Applies the given limits; fields left undefined keep their current value. */
  update(resources: OciResources): Promise<void>;
  /** Sends `signal` once to every process in the cgroup (frozen meanwhile so none can fork away). */
  killAll(signal?: NodeJS.Signals): Promise<void>;
  /** SIGKILLs what remains, waits (bounded) until empty, then removes the directories; missing ones are fine. */
  destroy(): Promise<void>;
}

/** Creates and finds cgroups on one host, whatever its cgroup mode. */
export interface CgroupDriver {
  readonly mode: CgroupMode;
  /** Default parent of abode's cgroups (`abode` unless configured). */
  readonly parent: string;
  /** Mode, mount points and available controllers. */
  describe(): CgroupInfo;
  /** `<parent>/<id>`, the path create() expects for a container. */
  pathFor(id: string): string;
  /** Validates `resources`, creates the directories in every hierarchy and applies the limits; rolls back on failure. */
  create(path: string, resources: OciResources | undefined): Promise<Cgroup>;
  /** Reattaches to an existing cgroup; NotFoundError when it exists in no hierarchy. */
  open(path: string): Promise<Cgroup>;
  /** Paths (`<parent>/<name>`) of the child cgroups of `parent` found in any hierarchy, sorted. */
  listChildren(parent?: string): Promise<string[]>;
}
