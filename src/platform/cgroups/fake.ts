import type { CgroupFs, KillFn } from './fs.js';

/** One hierarchy of the imitated host. */
export interface FakeHierarchy {
  version: 1 | 2;
  mountPoint: string;
  controllers: string[];
}

export interface FakeKernelOptions {
  /** Whether memsw / memory.swap.max exist (swap accounting); default true. */
  swapAccounting?: boolean;
  /** Highest cpu number; cpuset values beyond it are rejected like the kernel does. Default 3. */
  maxCpu?: number;
  /** Whether v2 has cgroup.kill (kernel >= 5.14); default true. */
  cgroupKill?: boolean;
}

const UNLIMITED = '9223372036854771712';

function fail(code: string, path: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${path}`);
  err.code = code;
  return err;
}

const dirname = (p: string): string => p.slice(0, p.lastIndexOf('/'));
const basename = (p: string): string => p.slice(p.lastIndexOf('/') + 1);
const isInt = (v: string): boolean => /^-?\d+$/.test(v);

/** An in-memory imitation of cgroupfs for unit tests: control files appear on mkdir and writes are checked like the kernel does. */
export class FakeCgroupKernel implements CgroupFs {
  /** Directory → its control files. */
  readonly dirs = new Map<string, Map<string, string>>();
  /** Pids of live fake processes. */
  readonly procs = new Set<number>();
  /** Signals received, per pid. */
  readonly signals = new Map<number, NodeJS.Signals[]>();
  /** Makes chosen writes fail with EINVAL (fault injection). */
  failWrite: ((file: string, value: string) => boolean) | undefined;
  /** Called when a fake process dies, with the signal that ended it. */
  onExit: ((pid: number, signal: NodeJS.Signals) => void) | undefined;
  private nextPid = 1000;
  private readonly swap: boolean;
  private readonly maxCpu: number;
  private readonly cgroupKill: boolean;

  constructor(
    readonly hierarchies: FakeHierarchy[],
    opts: FakeKernelOptions = {},
  ) {
    this.swap = opts.swapAccounting ?? true;
    this.maxCpu = opts.maxCpu ?? 3;
    this.cgroupKill = opts.cgroupKill ?? true;
    for (const h of hierarchies) this.dirs.set(h.mountPoint, this.filesFor(h, h.mountPoint, true));
  }

  /** A /proc/self/mountinfo text describing the hierarchies. */
  mountinfo(): string {
    return this.hierarchies
      .map((h, i) => {
        const type = h.version === 2 ? 'cgroup2' : 'cgroup';
        const opts = h.version === 2 ? 'rw,nsdelegate' : ['rw', ...h.controllers].join(',');
        return `${40 + i} 30 0:${40 + i} / ${h.mountPoint.replace(/ /g, '\\040')} rw,nosuid,nodev,noexec,relatime shared:${i} - ${type} ${type} ${opts}`;
      })
      .join('\n')
      .concat('\n');
  }

  /** A new fake process in no cgroup. */
  spawn(): number {
    const pid = this.nextPid++;
    this.procs.add(pid);
    return pid;
  }

  /** Signal delivery: SIGKILL/SIGTERM/SIGINT end the process and take it out of every cgroup. */
  readonly kill: KillFn = (pid, signal) => {
    if (!this.procs.has(pid)) throw fail('ESRCH', String(pid));
    this.signals.set(pid, [...(this.signals.get(pid) ?? []), signal]);
    if (signal === 'SIGKILL' || signal === 'SIGTERM' || signal === 'SIGINT') this.exit(pid, signal);
  };

  /** Imitates the OOM killer: kills `pid` and counts an oom_kill in its memory cgroup. */
  oomKill(pid: number): void {
    for (const [dir, files] of this.dirs) {
      if (!this.pidsIn(dir).includes(pid)) continue;
      for (const name of ['memory.oom_control', 'memory.events']) {
        const text = files.get(name);
        if (text !== undefined)
          files.set(
            name,
            text.replace(/oom_kill (\d+)/, (_, n: string) => `oom_kill ${Number(n) + 1}`),
          );
      }
    }
    this.exit(pid, 'SIGKILL');
  }

  private exit(pid: number, signal: NodeJS.Signals): void {
    this.procs.delete(pid);
    this.onExit?.(pid, signal);
    for (const files of this.dirs.values()) {
      const list = files.get('cgroup.procs');
      if (list !== undefined) files.set('cgroup.procs', this.without(list, pid));
    }
  }

  private without(list: string, pid: number): string {
    return list
      .split('\n')
      .filter((l) => l !== '' && Number(l) !== pid)
      .map((l) => `${l}\n`)
      .join('');
  }

  private hierarchyOf(path: string): FakeHierarchy | undefined {
    return this.hierarchies.find((h) => path === h.mountPoint || path.startsWith(`${h.mountPoint}/`));
  }

  private pidsIn(dir: string): number[] {
    return (this.dirs.get(dir)?.get('cgroup.procs') ?? '').split('\n').filter(Boolean).map(Number);
  }

  private subtreePids(dir: string): number[] {
    return [...this.dirs.keys()]
      .filter((d) => d === dir || d.startsWith(`${dir}/`))
      .flatMap((d) => this.pidsIn(d));
  }

  private filesFor(h: FakeHierarchy, dir: string, root: boolean): Map<string, string> {
    const f = new Map<string, string>([['cgroup.procs', '']]);
    if (h.version === 1) {
      f.set('tasks', '');
      for (const c of h.controllers) this.addV1(f, c, root);
      return f;
    }
    const parent = root ? undefined : this.dirs.get(dirname(dir));
    const controllers = root ? h.controllers.join(' ') : (parent?.get('cgroup.subtree_control') ?? '');
    f.set('cgroup.controllers', controllers);
    f.set('cgroup.subtree_control', '');
    f.set('cpu.stat', 'usage_usec 0\nuser_usec 0\nsystem_usec 0\n');
    if (!root) {
      f.set('cgroup.events', 'populated 0\nfrozen 0\n');
      f.set('cgroup.freeze', '0');
      if (this.cgroupKill) f.set('cgroup.kill', '');
      for (const c of controllers.split(' ').filter(Boolean)) this.addV2(f, c);
    }
    return f;
  }

  private addV1(f: Map<string, string>, controller: string, root: boolean): void {
    switch (controller) {
      case 'memory':
        f.set('memory.limit_in_bytes', UNLIMITED);
        if (this.swap) f.set('memory.memsw.limit_in_bytes', UNLIMITED);
        f.set('memory.soft_limit_in_bytes', UNLIMITED);
        f.set('memory.usage_in_bytes', '0');
        f.set('memory.max_usage_in_bytes', '0');
        f.set('memory.stat', 'cache 0\nrss 0\ntotal_cache 0\ntotal_rss 0\n');
        f.set('memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n');
        break;
      case 'cpu':
        f.set('cpu.shares', '1024');
        f.set('cpu.cfs_period_us', '100000');
        f.set('cpu.cfs_quota_us', '-1');
        f.set('cpu.stat', 'nr_periods 0\nnr_throttled 0\nthrottled_time 0\n');
        break;
      case 'cpuacct':
        f.set('cpuacct.usage', '0');
        f.set('cpuacct.stat', 'user 0\nsystem 0\n');
        f.set('cpuacct.usage_user', '0');
        f.set('cpuacct.usage_sys', '0');
        break;
      case 'cpuset':
        f.set('cpuset.cpus', root ? `0-${this.maxCpu}` : '');
        f.set('cpuset.mems', root ? '0' : '');
        break;
      case 'pids':
        if (!root) f.set('pids.max', 'max');
        if (!root) f.set('pids.current', '');
        break;
      case 'freezer':
        if (!root) f.set('freezer.state', 'THAWED');
        break;
      case 'devices':
        f.set('devices.list', 'a *:* rwm');
        break;
    }
  }

  private addV2(f: Map<string, string>, controller: string): void {
    switch (controller) {
      case 'memory':
        f.set('memory.current', '0');
        f.set('memory.max', 'max');
        f.set('memory.low', '0');
        f.set('memory.peak', '0');
        if (this.swap) f.set('memory.swap.max', 'max');
        f.set('memory.stat', 'anon 0\nfile 0\n');
        f.set('memory.events', 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n');
        break;
      case 'cpu':
        f.set('cpu.max', 'max 100000');
        f.set('cpu.weight', '100');
        f.set(
          'cpu.stat',
          'usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n',
        );
        break;
      case 'pids':
        f.set('pids.max', 'max');
        f.set('pids.current', '');
        break;
      case 'cpuset':
        f.set('cpuset.cpus', '');
        f.set('cpuset.mems', '');
        break;
      case 'io':
        f.set('io.max', '');
        break;
    }
  }

  async readFile(path: string): Promise<string> {
    if (path === '/proc/self/mountinfo') return this.mountinfo();
    if (this.dirs.has(path)) throw fail('EISDIR', path);
    const dir = dirname(path);
    const name = basename(path);
    const value = this.dirs.get(dir)?.get(name);
    if (value === undefined) throw fail('ENOENT', path);
    if (name === 'pids.current') return `${this.subtreePids(dir).length}\n`;
    if (name === 'cgroup.events')
      return value.replace(/populated \d/, `populated ${this.subtreePids(dir).length > 0 ? 1 : 0}`);
    return value.endsWith('\n') || value === '' ? value : `${value}\n`;
  }

  async writeFile(path: string, data: string): Promise<void> {
    const dir = dirname(path);
    const name = basename(path);
    const files = this.dirs.get(dir);
    if (!files?.has(name)) throw fail('ENOENT', path);
    const value = data.trim();
    if (this.failWrite?.(path, value)) throw fail('EINVAL', path);
    const h = this.hierarchyOf(dir)!;
    const inval = (bad: boolean): void => {
      if (bad) throw fail('EINVAL', path);
    };
    const limit = (v: string): bigint => BigInt(v === '-1' || v === 'max' ? UNLIMITED : v);
    switch (name) {
      case 'cgroup.procs': {
        const pid = Number(value);
        if (!this.procs.has(pid)) throw fail('ESRCH', path);
        if (h.version === 1 && (files.get('cpuset.cpus') === '' || files.get('cpuset.mems') === ''))
          throw fail('ENOSPC', path);
        if (h.version === 2 && dir !== h.mountPoint && files.get('cgroup.subtree_control') !== '')
          throw fail('EBUSY', path);
        for (const [d, f] of this.dirs)
          if (this.hierarchyOf(d) === h)
            f.set('cgroup.procs', this.without(f.get('cgroup.procs') ?? '', pid));
        files.set('cgroup.procs', `${files.get('cgroup.procs')}${pid}\n`);
        return;
      }
      case 'cgroup.subtree_control': {
        const offered = (files.get('cgroup.controllers') ?? '').split(' ');
        const enabled = new Set((files.get('cgroup.subtree_control') ?? '').split(' ').filter(Boolean));
        if (dir !== h.mountPoint && this.pidsIn(dir).length > 0) throw fail('EBUSY', path);
        for (const token of value.split(/\s+/)) {
          const c = token.slice(1);
          if (!/^[+-]/.test(token) || !offered.includes(c)) throw fail('ENOENT', path);
          if (token[0] === '+') enabled.add(c);
          else enabled.delete(c);
        }
        const list = [...enabled].sort().join(' ');
        files.set('cgroup.subtree_control', list);
        for (const [d, f] of this.dirs) {
          if (dirname(d) !== dir || d === dir) continue;
          const before = new Set((f.get('cgroup.controllers') ?? '').split(' '));
          for (const c of enabled) if (!before.has(c)) this.addV2(f, c);
          f.set('cgroup.controllers', list);
        }
        return;
      }
      case 'memory.limit_in_bytes': {
        inval(!isInt(value));
        const memsw = files.get('memory.memsw.limit_in_bytes');
        inval(memsw !== undefined && limit(value) > BigInt(memsw));
        files.set(name, String(limit(value)));
        return;
      }
      case 'memory.memsw.limit_in_bytes':
        inval(!isInt(value) || limit(value) < BigInt(files.get('memory.limit_in_bytes')!));
        files.set(name, String(limit(value)));
        return;
      case 'memory.soft_limit_in_bytes':
        inval(!isInt(value));
        files.set(name, String(limit(value)));
        return;
      case 'cpu.cfs_period_us':
        inval(!isInt(value) || Number(value) < 1000 || Number(value) > 1000000);
        break;
      case 'cpu.cfs_quota_us':
        inval(!isInt(value) || (Number(value) !== -1 && Number(value) < 1000));
        break;
      case 'cpu.shares':
        inval(!isInt(value));
        break;
      case 'cpu.weight':
        inval(!isInt(value) || Number(value) < 1 || Number(value) > 10000);
        break;
      case 'cpu.max': {
        const [quota, period] = value.split(' ');
        inval(quota !== 'max' && !(isInt(quota!) && Number(quota) >= 1000));
        if (period !== undefined) inval(!isInt(period) || Number(period) < 1000 || Number(period) > 1000000);
        files.set(name, `${quota} ${period ?? files.get(name)!.split(' ')[1]}`);
        return;
      }
      case 'memory.max':
      case 'memory.swap.max':
      case 'memory.low':
      case 'pids.max':
        inval(value !== 'max' && !/^\d+$/.test(value));
        break;
      case 'cpuset.cpus':
      case 'cpuset.mems': {
        const max = name === 'cpuset.cpus' ? this.maxCpu : 0;
        inval(value.split(/[,-]/).some((n) => n !== '' && (!isInt(n) || Number(n) > max)));
        break;
      }
      case 'freezer.state':
        inval(value !== 'FROZEN' && value !== 'THAWED');
        break;
      case 'cgroup.freeze':
        inval(value !== '0' && value !== '1');
        files.set('cgroup.events', `populated 0\nfrozen ${value}\n`);
        break;
      case 'cgroup.kill':
        inval(value !== '1');
        for (const pid of this.subtreePids(dir)) this.kill(pid, 'SIGKILL');
        return;
    }
    files.set(name, value);
  }

  async mkdir(path: string): Promise<void> {
    if (this.dirs.has(path)) throw fail('EEXIST', path);
    const h = this.hierarchyOf(path);
    if (!h || !this.dirs.has(dirname(path))) throw fail('ENOENT', path);
    this.dirs.set(path, this.filesFor(h, path, false));
  }

  async rmdir(path: string): Promise<void> {
    if (!this.dirs.has(path)) throw fail('ENOENT', path);
    const h = this.hierarchyOf(path)!;
    const hasChildren = [...this.dirs.keys()].some((d) => d.startsWith(`${path}/`));
    if (path === h.mountPoint || hasChildren || this.pidsIn(path).length > 0) throw fail('EBUSY', path);
    this.dirs.delete(path);
  }

  async listDirs(path: string): Promise<string[]> {
    if (!this.dirs.has(path)) throw fail('ENOENT', path);
    return [...this.dirs.keys()].filter((d) => dirname(d) === path && d !== path).map(basename);
  }

  async exists(path: string): Promise<boolean> {
    return this.dirs.has(path) || this.dirs.get(dirname(path))?.has(basename(path)) === true;
  }
}

/** The three host layouts the drivers support, as fake hierarchies under `base`. */
export const fakeLayouts = {
  v1: (base: string): FakeHierarchy[] => [
    { version: 1, mountPoint: `${base}/cpu,cpuacct`, controllers: ['cpu', 'cpuacct'] },
    ...['memory', 'pids', 'cpuset', 'freezer', 'devices', 'blkio'].map((c) => ({
      version: 1 as const,
      mountPoint: `${base}/${c}`,
      controllers: [c],
    })),
  ],
  v2: (base: string): FakeHierarchy[] => [
    { version: 2, mountPoint: base, controllers: ['cpu', 'cpuset', 'io', 'memory', 'pids', 'hugetlb'] },
  ],
  hybrid: (base: string): FakeHierarchy[] => [
    ...['cpu', 'cpuacct', 'memory', 'pids', 'cpuset', 'freezer', 'devices', 'blkio'].map((c) => ({
      version: 1 as const,
      mountPoint: `${base}/${c}`,
      controllers: [c],
    })),
    { version: 2, mountPoint: `${base}/unified`, controllers: ['hugetlb'] },
  ],
};
