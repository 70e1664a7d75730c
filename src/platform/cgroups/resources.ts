import { InvalidArgumentError, invalidAll } from '../../core/errors.js';
import type { OciResources } from '../../core/oci.js';

/** docker's minimum memory limit and reservation (6 MiB). */
export const MIN_MEMORY = 6 * 1024 * 1024;
export const MIN_CPU_SHARES = 2;
export const MAX_CPU_SHARES = 262144;
export const MIN_CFS_PERIOD = 1000;
export const MAX_CFS_PERIOD = 1000000;
export const MIN_CFS_QUOTA = 1000;
export const DEFAULT_CFS_PERIOD = 100000;

const CPUSET = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/** Checks every limit and throws one InvalidArgumentError listing all problems (docker's wording where it has one). */
export function validateResources(resources: OciResources | undefined): void {
  if (!resources) return;
  const problems: string[] = [];
  const int = (name: string, v: number | undefined): v is number => {
    if (v === undefined) return false;
    if (!Number.isSafeInteger(v)) {
      problems.push(`${name} must be an integer, got ${v}`);
      return false;
    }
    return true;
  };
  const { memory, cpu, pids } = resources;
  if (memory) {
    const { limit, reservation, swap } = memory;
    if (int('memory limit', limit)) {
      if (limit < -1) problems.push(`invalid memory limit ${limit}`);
      else if (limit > 0 && limit < MIN_MEMORY) problems.push('Minimum memory limit allowed is 6MB');
    }
    if (int('memory reservation', reservation)) {
      if (reservation < -1) problems.push(`invalid memory reservation ${reservation}`);
      else if (reservation > 0 && reservation < MIN_MEMORY)
        problems.push('Minimum memory reservation allowed is 6MB');
      else if (limit !== undefined && limit > 0 && reservation > limit)
        problems.push('Minimum memory limit can not be less than memory reservation limit, see usage');
    }
    if (int('memory swap', swap)) {
      if (swap < -1) problems.push(`invalid memory swap limit ${swap}`);
      else if (swap > 0 && !(limit !== undefined && limit > 0))
        problems.push('You should always set the Memory limit when using Memoryswap limit, see usage');
      else if (swap > 0 && limit !== undefined && swap < limit)
        problems.push('Minimum memoryswap limit should be larger than memory limit, see usage');
    }
  }
  if (cpu) {
    if (int('cpu shares', cpu.shares) && cpu.shares !== 0) {
      if (cpu.shares < MIN_CPU_SHARES || cpu.shares > MAX_CPU_SHARES)
        problems.push(
          `CPU shares must be between ${MIN_CPU_SHARES} and ${MAX_CPU_SHARES}, got ${cpu.shares}`,
        );
    }
    if (int('cpu period', cpu.period) && cpu.period !== 0) {
      if (cpu.period < MIN_CFS_PERIOD || cpu.period > MAX_CFS_PERIOD)
        problems.push('CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)');
    }
    if (int('cpu quota', cpu.quota) && cpu.quota !== 0 && cpu.quota !== -1) {
      if (cpu.quota < MIN_CFS_QUOTA) problems.push('CPU cfs quota can not be less than 1ms (i.e. 1000)');
    }
    if (cpu.cpus !== undefined && cpu.cpus !== '' && !CPUSET.test(cpu.cpus))
      problems.push(`Invalid value ${cpu.cpus} for cpuset cpus`);
    if (cpu.mems !== undefined && cpu.mems !== '' && !CPUSET.test(cpu.mems))
      problems.push(`Invalid value ${cpu.mems} for cpuset mems`);
  }
  if (pids) int('pids limit', pids.limit);
  if (problems.length > 0) throw invalidAll(problems);
}

/** runc's conversion of v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000); 0 stays 0 (unset). */
export function sharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

/** Converts docker's `--cpus` (e.g. 0.5) into a CFS quota and period in microseconds. */
export function cpusToQuota(cpus: number, period = DEFAULT_CFS_PERIOD): { quota: number; period: number } {
  if (!Number.isFinite(cpus) || cpus <= 0) throw new InvalidArgumentError(`invalid number of CPUs: ${cpus}`);
  return { quota: Math.max(MIN_CFS_QUOTA, Math.round(cpus * period)), period };
}

/** Memory settings with docker's defaults applied: limit/swap -1 is unlimited, undefined leaves the file alone. */
export interface MemoryPlan {
  limit?: number;
  /** memory+swap total (v1 memsw semantics). */
  swap?: number;
  reservation?: number;
}

/** Applies docker's rule: a limit without swap means memory+swap = 2x limit; an unlimited limit makes swap unlimited. */
export function planMemory(memory: OciResources['memory']): MemoryPlan {
  const plan: MemoryPlan = {};
  if (!memory) return plan;
  const { limit, swap, reservation } = memory;
  if (limit !== undefined && limit !== 0) plan.limit = limit;
  if (swap !== undefined && swap !== 0) plan.swap = swap;
  else if (plan.limit !== undefined) plan.swap = plan.limit === -1 ? -1 : 2 * plan.limit;
  if (reservation !== undefined && reservation !== 0) plan.reservation = reservation;
  return plan;
}

/** Checks a cgroup path (relative, `/`-separated, no `.`/`..`/empty segments) and returns it without stray slashes. */
export function checkCgroupPath(path: string): string {
  const segments = path.split('/').filter((s) => s !== '');
  if (
    path.startsWith('/') ||
    segments.length === 0 ||
    segments.some((s) => s === '.' || s === '..' || s.includes('\0') || s.includes('\n'))
  )
    throw new InvalidArgumentError(`invalid cgroup path "${path}": expected a relative path like abode/<id>`);
  return segments.join('/');
}

/** Whether `resources` asks for anything of the given kind. */
export function wants(resources: OciResources | undefined): {
  memory: boolean;
  cpu: boolean;
  cpuset: boolean;
  pids: boolean;
} {
  const m = planMemory(resources?.memory);
  const c = resources?.cpu;
  return {
    memory:
      m.limit !== undefined || m.reservation !== undefined || resources?.memory?.disableOOMKiller === true,
    cpu: !!c && (!!c.shares || !!c.quota || !!c.period),
    cpuset: !!c && (!!c.cpus || !!c.mems),
    pids: resources?.pids !== undefined && resources.pids.limit !== 0,
  };
}
