import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConflictError, UnavailableError } from '../../core/errors.js';
import { detectCgroups } from './detect.js';
import { fakeLayouts, FakeCgroupKernel, type FakeHierarchy, type FakeKernelOptions } from './fake.js';
import { removeParent, runCgroupSuite, type CgroupTestContext } from './suite.js';
import type { Cgroup, CgroupMode } from './types.js';
import { CgroupV1Driver } from './v1.js';
import { CgroupV2Driver } from './v2.js';

const MiB = 1024 * 1024;
let counter = 0;

async function fakeContext(
  layout: FakeHierarchy[],
  opts: FakeKernelOptions = {},
): Promise<CgroupTestContext & { kernel: FakeCgroupKernel }> {
  const kernel = new FakeCgroupKernel(layout, opts);
  const exits = new Map<number, (signal: string | null) => void>();
  kernel.onExit = (pid, signal) => exits.get(pid)?.(signal);
  const driver = await detectCgroups({ fs: kernel, kill: kernel.kill, parent: `abode-test-${++counter}` });
  const enter = async (cgroup: Cgroup, pid: number): Promise<void> => {
    for (const file of cgroup.procsFiles()) await kernel.writeFile(file, String(pid));
  };
  return {
    kernel,
    driver,
    fs: kernel,
    async startProcess(cgroup) {
      const pid = kernel.spawn();
      const exited = new Promise<string | null>((resolve) => exits.set(pid, resolve));
      await enter(cgroup, pid);
      return { pid, exited };
    },
    async runMemoryHog(cgroup) {
      const pid = kernel.spawn();
      await enter(cgroup, pid);
      kernel.oomKill(pid);
    },
    cleanup: () => removeParent(driver),
  };
}

const layouts: [CgroupMode, FakeHierarchy[], FakeKernelOptions][] = [
  ['v1', fakeLayouts.v1('/fake/cgroup'), {}],
  ['v2', fakeLayouts.v2('/fake/cgroup'), {}],
  ['hybrid', fakeLayouts.hybrid('/fake/cgroup'), {}],
  ['v1', fakeLayouts.v1('/fake/cgroup'), { swapAccounting: false }],
  ['v2', fakeLayouts.v2('/fake/cgroup'), { swapAccounting: false, cgroupKill: false }],
];

for (const [mode, layout, opts] of layouts) {
  runCgroupSuite({
    name: `fake ${mode}${opts.swapAccounting === false ? ' without swap accounting' : ''}`,
    expectedMode: mode,
    setup: () => fakeContext(layout, opts),
  });
}

describe('cgroups: fake-kernel specifics', () => {
  it('detects the driver class from the mount table', async () => {
    for (const [mode, layout] of layouts) {
      const kernel = new FakeCgroupKernel(layout);
      const driver = await detectCgroups({ fs: kernel });
      assert.equal(driver.mode, mode);
      assert.ok(mode === 'v2' ? driver instanceof CgroupV2Driver : driver instanceof CgroupV1Driver);
      assert.equal(driver.parent, 'abode');
      assert.equal(driver.pathFor('x'), 'abode/x');
    }
  });

  it('v1 maps a combined cpu,cpuacct mount to one directory', async () => {
    const ctx = await fakeContext(fakeLayouts.v1('/fake/cgroup'));
    const cg = await ctx.driver.create(ctx.driver.pathFor('c'), { cpu: { shares: 100 } });
    assert.equal(cg.controllerDir('cpu'), cg.controllerDir('cpuacct'));
    assert.equal(cg.controllerDir('cpu'), `/fake/cgroup/cpu,cpuacct/${cg.path}`);
    assert.equal(new Set(cg.procsFiles()).size, cg.procsFiles().length);
    await ctx.cleanup();
  });

  it('hybrid also places the container in the unified hierarchy', async () => {
    const ctx = await fakeContext(fakeLayouts.hybrid('/fake/cgroup'));
    const cg = await ctx.driver.create(ctx.driver.pathFor('h'), undefined);
    assert.ok(cg.procsFiles().includes(`/fake/cgroup/unified/${cg.path}/cgroup.procs`));
    const info = ctx.driver.describe();
    assert.deepEqual(info.hierarchies.find((h) => h.version === 2)?.controllers, ['hugetlb']);
    await ctx.cleanup();
  });

  it('v2 enables the controllers in cgroup.subtree_control down the path', async () => {
    const ctx = await fakeContext(fakeLayouts.v2('/fake/cgroup'));
    await ctx.driver.create(ctx.driver.pathFor('s'), { memory: { limit: 64 * MiB } });
    for (const dir of ['/fake/cgroup', `/fake/cgroup/${ctx.driver.parent}`])
      assert.equal(
        (await ctx.kernel.readFile(`${dir}/cgroup.subtree_control`)).trim(),
        'cpu cpuset io memory pids',
      );
    await ctx.cleanup();
  });

  it('v2 explains the no-internal-process rule when the parent holds processes', async () => {
    const ctx = await fakeContext(fakeLayouts.v2('/fake/cgroup'));
    const parent = `/fake/cgroup/${ctx.driver.parent}`;
    await ctx.kernel.mkdir(parent);
    const pid = ctx.kernel.spawn();
    await ctx.kernel.writeFile(`${parent}/cgroup.procs`, String(pid));
    await assert.rejects(
      ctx.driver.create(ctx.driver.pathFor('x'), { memory: { limit: 64 * MiB } }),
      (err) => {
        assert.ok(err instanceof ConflictError);
        assert.match(err.message, /no-internal-process rule/);
        return true;
      },
    );
    assert.equal(await ctx.kernel.exists(`${parent}/x`), false);
    ctx.kernel.kill(pid, 'SIGKILL');
    await ctx.cleanup();
  });

  it('a limit needing a missing controller is UnavailableError and creates nothing', async () => {
    const layout: FakeHierarchy[] = [
      { version: 2, mountPoint: '/fake/cgroup', controllers: ['cpu', 'memory'] },
    ];
    const ctx = await fakeContext(layout);
    await assert.rejects(ctx.driver.create(ctx.driver.pathFor('p'), { pids: { limit: 10 } }), (err) => {
      assert.ok(err instanceof UnavailableError);
      assert.match(err.message, /pids cgroup controller is not available/);
      return true;
    });
    assert.equal(await ctx.kernel.exists(`/fake/cgroup/${ctx.driver.parent}`), false);
  });

  it('a write failing midway rolls back every hierarchy', async () => {
    const ctx = await fakeContext(fakeLayouts.v1('/fake/cgroup'));
    ctx.kernel.failWrite = (file) => file.endsWith('/pids.max');
    await assert.rejects(
      ctx.driver.create(ctx.driver.pathFor('r'), { memory: { limit: 64 * MiB }, pids: { limit: 5 } }),
      /kernel rejected the value/,
    );
    const left = [...ctx.kernel.dirs.keys()].filter((d) => d.includes(ctx.driver.parent));
    assert.deepEqual(left, []);
  });

  it('v1 writes memsw before the limit when raising and after it when lowering', async () => {
    const ctx = await fakeContext(fakeLayouts.v1('/fake/cgroup'));
    const cg = await ctx.driver.create(ctx.driver.pathFor('m'), {
      memory: { limit: 32 * MiB, swap: 48 * MiB },
    });
    const dir = cg.controllerDir('memory')!;
    const get = async (f: string): Promise<string> => (await ctx.kernel.readFile(`${dir}/${f}`)).trim();
    assert.equal(await get('memory.memsw.limit_in_bytes'), String(48 * MiB));
    await cg.update({ memory: { limit: 256 * MiB, swap: 512 * MiB } });
    assert.equal(await get('memory.limit_in_bytes'), String(256 * MiB));
    assert.equal(await get('memory.memsw.limit_in_bytes'), String(512 * MiB));
    await cg.update({ memory: { limit: 8 * MiB, swap: 8 * MiB } });
    assert.equal(await get('memory.limit_in_bytes'), String(8 * MiB));
    assert.equal(await get('memory.memsw.limit_in_bytes'), String(8 * MiB));
    await cg.update({ memory: { limit: 32 * MiB, reservation: 16 * MiB, disableOOMKiller: true } });
    assert.equal(await get('memory.soft_limit_in_bytes'), String(16 * MiB));
    assert.match(await get('memory.oom_control'), /^1$|oom_kill_disable 1/);
    await ctx.cleanup();
  });

  it('v2 converts OCI memory+swap into memory.swap.max and shares into cpu.weight', async () => {
    const ctx = await fakeContext(fakeLayouts.v2('/fake/cgroup'));
    const cg = await ctx.driver.create(ctx.driver.pathFor('w'), {
      memory: { limit: 64 * MiB, swap: 96 * MiB, reservation: 32 * MiB },
      cpu: { shares: 1024, cpus: '0-1', mems: '0' },
    });
    const dir = cg.controllerDir('memory')!;
    const get = async (f: string): Promise<string> => (await ctx.kernel.readFile(`${dir}/${f}`)).trim();
    assert.equal(await get('memory.swap.max'), String(32 * MiB));
    assert.equal(await get('memory.low'), String(32 * MiB));
    assert.equal(await get('cpu.weight'), '39');
    assert.equal(await get('cpuset.cpus'), '0-1');
    await cg.update({ memory: { limit: -1 } });
    assert.equal(await get('memory.max'), 'max');
    assert.equal(await get('memory.swap.max'), 'max');
    await cg.update({ cpu: { period: 50000 } });
    assert.equal(await get('cpu.max'), 'max 50000');
    await ctx.cleanup();
  });

  it('stats() reads usage, cache, cpu time and throttling from the files', async () => {
    const v1 = await fakeContext(fakeLayouts.v1('/fake/cgroup'));
    const a = await v1.driver.create(v1.driver.pathFor('s'), undefined);
    const mem = v1.kernel.dirs.get(a.controllerDir('memory')!)!;
    mem.set('memory.usage_in_bytes', '4096000');
    mem.set('memory.max_usage_in_bytes', '8192000');
    mem.set('memory.stat', 'cache 100\nrss 5\ntotal_cache 200\n');
    const acct = v1.kernel.dirs.get(a.controllerDir('cpuacct')!)!;
    acct.set('cpuacct.usage', '123456789');
    acct.delete('cpuacct.usage_user');
    acct.delete('cpuacct.usage_sys');
    acct.set('cpuacct.stat', 'user 7\nsystem 3\n');
    acct.set('cpu.stat', 'nr_periods 10\nnr_throttled 4\nthrottled_time 99\n');
    assert.deepEqual(await a.stats(), {
      memory: { usage: 4096000, limit: null, maxUsage: 8192000, cache: 200 },
      cpu: { usageNs: 123456789, userNs: 70_000_000, systemNs: 30_000_000, throttledPeriods: 4 },
      pids: { current: 0, limit: null },
    });
    await v1.cleanup();

    const v2 = await fakeContext(fakeLayouts.v2('/fake/cgroup'));
    const b = await v2.driver.create(v2.driver.pathFor('s'), { memory: { limit: 64 * MiB } });
    const files = v2.kernel.dirs.get(b.controllerDir('memory')!)!;
    files.set('memory.current', '5000');
    files.set('memory.peak', '6000');
    files.set('memory.stat', 'anon 10\nfile 300\n');
    files.set('cpu.stat', 'usage_usec 15\nuser_usec 10\nsystem_usec 5\nnr_periods 3\nnr_throttled 2\n');
    assert.deepEqual(await b.stats(), {
      memory: { usage: 5000, limit: 64 * MiB, maxUsage: 6000, cache: 300 },
      cpu: { usageNs: 15000, userNs: 10000, systemNs: 5000, throttledPeriods: 2 },
      pids: { current: 0, limit: null },
    });
    await v2.cleanup();
  });

  it('v1 killAll() freezes the cgroup while signalling and thaws it afterwards', async () => {
    const ctx = await fakeContext(fakeLayouts.v1('/fake/cgroup'));
    const cg = await ctx.driver.create(ctx.driver.pathFor('f'), undefined);
    const proc = await ctx.startProcess(cg);
    const states: string[] = [];
    const state = `${cg.controllerDir('freezer')}/freezer.state`;
    const write = ctx.kernel.writeFile.bind(ctx.kernel);
    ctx.kernel.writeFile = async (path, data) => {
      if (path === state) states.push(data);
      return write(path, data);
    };
    await cg.killAll('SIGUSR1');
    assert.deepEqual(states, ['FROZEN', 'THAWED']);
    assert.deepEqual(ctx.kernel.signals.get(proc.pid), ['SIGUSR1']);
    assert.equal((await ctx.kernel.readFile(state)).trim(), 'THAWED');
    await ctx.cleanup();
  });
});
