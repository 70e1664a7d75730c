import { UnavailableError } from '../../core/errors.js';
import type { CgroupMode } from './types.js';

/** v1 controllers abode knows; other super options (rw, name=..., xattr, ...) are not controllers. */
const V1_CONTROLLERS = new Set([
  'cpuset',
  'cpu',
  'cpuacct',
  'blkio',
  'memory',
  'devices',
  'freezer',
  'net_cls',
  'perf_event',
  'net_prio',
  'hugetlb',
  'pids',
  'rdma',
  'misc',
]);

/** A cgroup v1 hierarchy: one mount carrying one or more controllers (e.g. `cpu,cpuacct`). */
export interface V1Mount {
  mountPoint: string;
  /** Path of the hierarchy mounted there (`/` unless inside a cgroup namespace or a bind mount). */
  root: string;
  controllers: string[];
}

/** The cgroup mounts found in a mountinfo file. */
export interface CgroupMounts {
  /** v1 hierarchies with at least one controller, first mount of each controller only. */
  v1: V1Mount[];
  /** The first cgroup2 mount, if any. */
  v2?: { mountPoint: string; root: string };
}

/** Undoes mountinfo's octal escapes (`\040` for a space, ...). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Extracts the cgroup v1 and cgroup2 mounts from the text of /proc/self/mountinfo. */
export function parseMountinfo(text: string): CgroupMounts {
  const v1: V1Mount[] = [];
  const seen = new Set<string>();
  let v2: CgroupMounts['v2'];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 4) continue;
    const fstype = fields[sep + 1];
    const root = unescape(fields[3]!);
    const mountPoint = unescape(fields[4]!);
    if (fstype === 'cgroup2') {
      v2 ??= { mountPoint, root };
    } else if (fstype === 'cgroup') {
      const controllers = fields[sep + 3]!.split(',').filter((o) => V1_CONTROLLERS.has(o));
      const fresh = controllers.filter((c) => !seen.has(c));
      if (fresh.length === 0) continue;
      fresh.forEach((c) => seen.add(c));
      v1.push({ mountPoint, root, controllers: fresh });
    }
  }
  return v2 ? { v1, v2 } : { v1 };
}

/** hybrid when v1 controllers and a cgroup2 mount coexist; UnavailableError when no cgroups are mounted. */
export function modeOf(mounts: CgroupMounts): CgroupMode {
  if (mounts.v1.length > 0) return mounts.v2 ? 'hybrid' : 'v1';
  if (mounts.v2) return 'v2';
  throw new UnavailableError('no cgroup hierarchy is mounted (checked /proc/self/mountinfo)');
}
