import type { OciResources } from '../../core/oci.js';
import { BaseCgroup, BaseDriver, waitFor, type CgroupDir, type DriverOptions } from './common.js';
import type { V1Mount } from './mountinfo.js';
import { planMemory, validateResources } from './resources.js';
import type { Cgroup, CgroupHierarchy, CgroupInfo, CgroupStats } from './types.js';

/** v1 controllers each container joins (when mounted). */
export const V1_JOINED = ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset', 'freezer', 'devices', 'blkio'];

/** USER_HZ, the unit of cpuacct.stat. */
const NS_PER_TICK = 1e9 / 100;

export interface V1DriverOptions extends DriverOptions {
  /** v1 hierarchies from mountinfo. */
  mounts: V1Mount[];
  /** Hybrid hosts: the cgroup2 mount point; containers also get a (controller-less) directory there. */
  unified?: { mountPoint: string; controllers: string[] };
}

/** cgroup v1 (and hybrid) driver: one directory per hierarchy, limits in the v1 files. */
export class CgroupV1Driver extends BaseDriver {
  readonly mode: 'v1' | 'hybrid';
  private readonly joined: CgroupHierarchy[];
  private readonly all: CgroupHierarchy[];

  constructor(opts: V1DriverOptions) {
    super(opts);
    this.mode = opts.unified ? 'hybrid' : 'v1';
    this.all = opts.mounts.map((m) => ({
      version: 1 as const,
      mountPoint: m.mountPoint,
      controllers: m.controllers,
    }));
    this.joined = this.all.filter((h) => h.controllers.some((c) => V1_JOINED.includes(c)));
    if (opts.unified) {
      const unified = { version: 2 as const, ...opts.unified };
      this.all.push(unified);
      // runc does the same: in hybrid mode the container is also tracked in the unified hierarchy.
      this.joined.push({ ...unified, controllers: [] });
    }
  }

  protected hierarchies(): CgroupHierarchy[] {
    return this.joined;
  }

  protected available(): Set<string> {
    return new Set(this.joined.flatMap((h) => h.controllers));
  }

  describe(): CgroupInfo {
    return this.info(this.all.map((h) => ({ ...h, controllers: [...h.controllers] })));
  }

  protected async beforeMkdir(): Promise<void> {}

  /** A new cpuset cgroup starts with empty cpus/mems and refuses tasks; copy the parent's values. */
  protected async afterMkdir(h: CgroupHierarchy, dir: string, parentDir: string): Promise<void> {
    if (h.version !== 1 || !h.controllers.includes('cpuset')) return;
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      const own = await this.files.read(`${dir}/${file}`);
      if (own !== '') continue;
      const inherited = await this.files.read(`${parentDir}/${file}`);
      if (inherited) await this.files.write(`${dir}/${file}`, inherited);
    }
  }

  protected newCgroup(path: string, dirs: CgroupDir[]): Cgroup {
    return new CgroupV1(path, dirs, this.files, this.kill);
  }
}

class CgroupV1 extends BaseCgroup {
  async update(resources: OciResources): Promise<void> {
    validateResources(resources);
    const { memory, cpu, pids } = resources;
    const plan = planMemory(memory);
    if (
      plan.limit !== undefined ||
      plan.swap !== undefined ||
      plan.reservation !== undefined ||
      memory?.disableOOMKiller !== undefined
    ) {
      const dir = this.need('memory', 'set memory limits');
      const limitFile = `${dir}/memory.limit_in_bytes`;
      const swapFile = `${dir}/memory.memsw.limit_in_bytes`;
      const hasSwap = plan.swap !== undefined && (await this.files.fs.exists(swapFile));
      if (plan.limit !== undefined && plan.swap !== undefined && hasSwap) {
        // The kernel requires limit <= memsw at every step: write memsw first only when it is not below the current
        // limit (an unlimited current limit means the new limit must go first).
        const current = await this.files.readLimit(limitFile);
        const swapFirst = plan.swap === -1 || (typeof current === 'number' && current <= plan.swap);
        if (swapFirst) await this.files.write(swapFile, String(plan.swap));
        await this.files.write(limitFile, String(plan.limit));
        if (!swapFirst) await this.files.write(swapFile, String(plan.swap));
      } else {
        if (plan.limit !== undefined) await this.files.write(limitFile, String(plan.limit));
        if (plan.swap !== undefined && hasSwap) await this.files.write(swapFile, String(plan.swap));
      }
      if (plan.reservation !== undefined)
        await this.files.write(`${dir}/memory.soft_limit_in_bytes`, String(plan.reservation));
      if (memory?.disableOOMKiller !== undefined)
        await this.files.write(`${dir}/memory.oom_control`, memory.disableOOMKiller ? '1' : '0');
    }
    if (cpu?.shares)
      await this.files.write(`${this.need('cpu', 'set cpu shares')}/cpu.shares`, String(cpu.shares));
    if (cpu?.period || cpu?.quota) {
      const dir = this.need('cpu', 'set a cpu quota');
      const periodFile = `${dir}/cpu.cfs_period_us`;
      let periodDone = !cpu.period;
      if (cpu.period) {
        try {
          await this.files.write(periodFile, String(cpu.period));
          periodDone = true;
        } catch {
          // The current quota may not fit the new period; retried after the quota below.
        }
      }
      if (cpu.quota)
        await this.files.write(`${dir}/cpu.cfs_quota_us`, String(cpu.quota < 0 ? -1 : cpu.quota));
      if (!periodDone) await this.files.write(periodFile, String(cpu.period));
    }
    if (cpu?.cpus || cpu?.mems) {
      const dir = this.need('cpuset', 'set a cpuset');
      if (cpu.cpus) await this.files.write(`${dir}/cpuset.cpus`, cpu.cpus);
      if (cpu.mems) await this.files.write(`${dir}/cpuset.mems`, cpu.mems);
    }
    if (pids && pids.limit !== 0) {
      const dir = this.need('pids', 'set a pids limit');
      await this.files.write(`${dir}/pids.max`, pids.limit > 0 ? String(pids.limit) : 'max');
    }
  }

  async stats(): Promise<CgroupStats> {
    const f = this.files;
    const stats: CgroupStats = {
      memory: { usage: 0, limit: null },
      cpu: { usageNs: 0 },
      pids: { current: 0 },
    };
    const mem = this.controllerDir('memory');
    if (mem) {
      stats.memory.usage = (await f.readNumber(`${mem}/memory.usage_in_bytes`)) ?? 0;
      stats.memory.limit = (await f.readLimit(`${mem}/memory.limit_in_bytes`)) ?? null;
      const maxUsage = await f.readNumber(`${mem}/memory.max_usage_in_bytes`);
      if (maxUsage !== undefined) stats.memory.maxUsage = maxUsage;
      const stat = await f.readKeyed(`${mem}/memory.stat`);
      const cache = stat.get('total_cache') ?? stat.get('cache');
      if (cache !== undefined) stats.memory.cache = cache;
    }
    const acct = this.controllerDir('cpuacct');
    if (acct) {
      stats.cpu.usageNs = (await f.readNumber(`${acct}/cpuacct.usage`)) ?? 0;
      const ticks = await f.readKeyed(`${acct}/cpuacct.stat`);
      const user = (await f.readNumber(`${acct}/cpuacct.usage_user`)) ?? mul(ticks.get('user'), NS_PER_TICK);
      const system =
        (await f.readNumber(`${acct}/cpuacct.usage_sys`)) ?? mul(ticks.get('system'), NS_PER_TICK);
      if (user !== undefined) stats.cpu.userNs = user;
      if (system !== undefined) stats.cpu.systemNs = system;
    }
    const cpu = this.controllerDir('cpu');
    if (cpu) {
      const throttled = (await f.readKeyed(`${cpu}/cpu.stat`)).get('nr_throttled');
      if (throttled !== undefined) stats.cpu.throttledPeriods = throttled;
    }
    const pids = this.controllerDir('pids');
    const current = pids ? await f.readNumber(`${pids}/pids.current`) : undefined;
    stats.pids.current = current ?? (await this.pids()).length;
    if (pids) stats.pids.limit = (await f.readLimit(`${pids}/pids.max`)) ?? null;
    return stats;
  }

  async oomKilled(): Promise<boolean> {
    const mem = this.controllerDir('memory');
    if (!mem) return false;
    return ((await this.files.readKeyed(`${mem}/memory.oom_control`)).get('oom_kill') ?? 0) > 0;
  }

  async killAll(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const freezer = this.controllerDir('freezer');
    const state = `${freezer}/freezer.state`;
    if (!freezer || !(await this.files.fs.exists(state))) return this.signalEach(signal);
    await this.files.write(state, 'FROZEN');
    try {
      await waitFor(async () => (await this.files.read(state)) === 'FROZEN');
      await this.signalEach(signal);
    } finally {
      await this.files.write(state, 'THAWED').catch(async (err: unknown) => {
        if (await this.files.fs.exists(state)) throw err;
      });
    }
  }
}

function mul(v: number | undefined, by: number): number | undefined {
  return v === undefined ? undefined : v * by;
}
