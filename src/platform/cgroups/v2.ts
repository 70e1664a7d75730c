import { ConflictError } from '../../core/errors.js';
import type { OciResources } from '../../core/oci.js';
import { BaseCgroup, BaseDriver, waitFor, type CgroupDir, type DriverOptions } from './common.js';
import { errno } from './fs.js';
import { planMemory, sharesToWeight, validateResources, wants } from './resources.js';
import type { Cgroup, CgroupHierarchy, CgroupInfo, CgroupStats } from './types.js';

/** Controllers enabled for abode's subtree when the host offers them. */
export const V2_WANTED = ['cpu', 'cpuset', 'io', 'memory', 'pids'];

export interface V2DriverOptions extends DriverOptions {
  /** The cgroup2 mount point (usually /sys/fs/cgroup). */
  mountPoint: string;
  /** Contents of `<mountPoint>/cgroup.controllers`. */
  controllers: string[];
}

/** cgroup v2 driver: one directory in the unified hierarchy, controllers enabled down the path. */
export class CgroupV2Driver extends BaseDriver {
  readonly mode = 'v2' as const;
  private readonly hierarchy: CgroupHierarchy;

  constructor(opts: V2DriverOptions) {
    super(opts);
    this.hierarchy = { version: 2, mountPoint: opts.mountPoint, controllers: [...opts.controllers] };
  }

  protected hierarchies(): CgroupHierarchy[] {
    return [this.hierarchy];
  }

  protected available(): Set<string> {
    return new Set(this.hierarchy.controllers);
  }

  describe(): CgroupInfo {
    return this.info([{ ...this.hierarchy, controllers: [...this.hierarchy.controllers] }]);
  }

  /** Enables the wanted controllers in `parentDir/cgroup.subtree_control`; failing for a required one is an error. */
  protected async beforeMkdir(
    _h: CgroupHierarchy,
    parentDir: string,
    resources?: OciResources,
  ): Promise<void> {
    const offered = new Set(((await this.files.read(`${parentDir}/cgroup.controllers`)) ?? '').split(/\s+/));
    const enabled = new Set(
      ((await this.files.read(`${parentDir}/cgroup.subtree_control`)) ?? '').split(/\s+/),
    );
    const want = wants(resources);
    const required = new Set(Object.keys(want).filter((c) => want[c as keyof typeof want]));
    for (const c of V2_WANTED) {
      if (enabled.has(c) || !offered.has(c)) continue;
      const file = `${parentDir}/cgroup.subtree_control`;
      try {
        await this.files.fs.writeFile(file, `+${c}`);
      } catch (err) {
        if (!required.has(c)) continue;
        if (errno(err) === 'EBUSY')
          throw new ConflictError(
            `cannot enable the ${c} controller in ${file}: that cgroup holds processes itself (cgroup v2 no-internal-process rule)`,
          );
        throw new ConflictError(`cannot enable the ${c} controller in ${file}: ${(err as Error).message}`);
      }
    }
  }

  protected async afterMkdir(): Promise<void> {}

  protected newCgroup(path: string, dirs: CgroupDir[]): Cgroup {
    return new CgroupV2(path, dirs, this.files, this.kill);
  }
}

class CgroupV2 extends BaseCgroup {
  private get dir(): string {
    return this.dirs[0]!.dir;
  }

  async update(resources: OciResources): Promise<void> {
    validateResources(resources);
    const dir = this.dir;
    const { memory, cpu, pids } = resources;
    const plan = planMemory(memory);
    if (plan.limit !== undefined)
      await this.files.write(`${dir}/memory.max`, plan.limit < 0 ? 'max' : String(plan.limit));
    if (plan.swap !== undefined && (await this.files.fs.exists(`${dir}/memory.swap.max`))) {
      // OCI's swap is memory+swap (v1 memsw); v2's memory.swap.max is the swap alone.
      const swap =
        plan.swap < 0 || plan.limit === undefined || plan.limit < 0 ? 'max' : String(plan.swap - plan.limit);
      await this.files.write(`${dir}/memory.swap.max`, swap);
    }
    if (plan.reservation !== undefined)
      await this.files.write(`${dir}/memory.low`, plan.reservation < 0 ? 'max' : String(plan.reservation));
    if (cpu?.shares) await this.files.write(`${dir}/cpu.weight`, String(sharesToWeight(cpu.shares)));
    if (cpu?.quota || cpu?.period) {
      const file = `${dir}/cpu.max`;
      const [curQuota = 'max', curPeriod = '100000'] = ((await this.files.read(file)) ?? '').split(/\s+/);
      const quota = cpu.quota ? (cpu.quota < 0 ? 'max' : String(cpu.quota)) : curQuota;
      const period = cpu.period ? String(cpu.period) : curPeriod;
      await this.files.write(file, `${quota} ${period}`);
    }
    if (cpu?.cpus) await this.files.write(`${dir}/cpuset.cpus`, cpu.cpus);
    if (cpu?.mems) await this.files.write(`${dir}/cpuset.mems`, cpu.mems);
    if (pids && pids.limit !== 0)
      await this.files.write(`${dir}/pids.max`, pids.limit > 0 ? String(pids.limit) : 'max');
  }

  async stats(): Promise<CgroupStats> {
    const f = this.files;
    const dir = this.dir;
    const stats: CgroupStats = {
      memory: { usage: 0, limit: null },
      cpu: { usageNs: 0 },
      pids: { current: 0 },
    };
    stats.memory.usage = (await f.readNumber(`${dir}/memory.current`)) ?? 0;
    stats.memory.limit = (await f.readLimit(`${dir}/memory.max`)) ?? null;
    const peak = await f.readNumber(`${dir}/memory.peak`);
    if (peak !== undefined) stats.memory.maxUsage = peak;
    const cache = (await f.readKeyed(`${dir}/memory.stat`)).get('file');
    if (cache !== undefined) stats.memory.cache = cache;
    const cpu = await f.readKeyed(`${dir}/cpu.stat`);
    stats.cpu.usageNs = (cpu.get('usage_usec') ?? 0) * 1000;
    if (cpu.has('user_usec')) stats.cpu.userNs = cpu.get('user_usec')! * 1000;
    if (cpu.has('system_usec')) stats.cpu.systemNs = cpu.get('system_usec')! * 1000;
    if (cpu.has('nr_throttled')) stats.cpu.throttledPeriods = cpu.get('nr_throttled')!;
    stats.pids.current = (await f.readNumber(`${dir}/pids.current`)) ?? (await this.pids()).length;
    const max = await f.readLimit(`${dir}/pids.max`);
    if (max !== undefined) stats.pids.limit = max;
    return stats;
  }

  async oomKilled(): Promise<boolean> {
    return ((await this.files.readKeyed(`${this.dir}/memory.events`)).get('oom_kill') ?? 0) > 0;
  }

  async killAll(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const dir = this.dir;
    if (signal === 'SIGKILL' && (await this.files.fs.exists(`${dir}/cgroup.kill`))) {
      await this.files.write(`${dir}/cgroup.kill`, '1');
      return;
    }
    const freeze = `${dir}/cgroup.freeze`;
    if (!(await this.files.fs.exists(freeze))) return this.signalEach(signal);
    await this.files.write(freeze, '1');
    try {
      await waitFor(async () => (await this.files.readKeyed(`${dir}/cgroup.events`)).get('frozen') === 1);
      await this.signalEach(signal);
    } finally {
      await this.files.write(freeze, '0').catch(async (err: unknown) => {
        if (await this.files.fs.exists(freeze)) throw err;
      });
    }
  }
}
