import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AbodeError, AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { waitFor } from './common.js';
import type { CgroupFs } from './fs.js';
import { cpusToQuota } from './resources.js';
import type { Cgroup, CgroupDriver, CgroupMode } from './types.js';

const MiB = 1024 * 1024;

/** What one test of the shared suite gets: a driver with a parent of its own, plus process helpers. */
export interface CgroupTestContext {
  driver: CgroupDriver;
  /** The file system the driver works on, to check the control files. */
  fs: CgroupFs;
  /** Starts a long-running process and moves it into `cgroup` via procsFiles(); `exited` resolves with the killing signal. */
  startProcess(cgroup: Cgroup): Promise<{ pid: number; exited: Promise<string | null> }>;
  /** Runs a process in `cgroup` that allocates until the OOM killer ends it; resolves once it has. */
  runMemoryHog(cgroup: Cgroup): Promise<void>;
  /** Removes whatever the test left. */
  cleanup(): Promise<void>;
}

export interface CgroupSuiteOptions {
  name: string;
  expectedMode: CgroupMode;
  setup(): Promise<CgroupTestContext>;
}

/** Removes the driver's parent cgroup (and anything under it) from every hierarchy. */
export async function removeParent(driver: CgroupDriver): Promise<void> {
  for (const child of await driver.listChildren()) await (await driver.open(child)).destroy();
  try {
    await (await driver.open(driver.parent)).destroy();
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
}

async function read(
  fs: CgroupFs,
  cgroup: Cgroup,
  controller: string,
  file: string,
): Promise<string | undefined> {
  const dir = cgroup.controllerDir(controller);
  assert.ok(dir, `no directory for controller ${controller}`);
  if (!(await fs.exists(`${dir}/${file}`))) return undefined;
  return (await fs.readFile(`${dir}/${file}`)).trim();
}

/** Paths under every mounted hierarchy where `path` would live. */
function everywhere(driver: CgroupDriver, path: string): string[] {
  return driver.describe().hierarchies.map((h) => `${h.mountPoint}/${path}`);
}

async function assertGone(ctx: CgroupTestContext, path: string): Promise<void> {
  for (const dir of everywhere(ctx.driver, path))
    assert.equal(await ctx.fs.exists(dir), false, `${dir} left behind`);
}

/** One behavioural suite for every driver: run against fake v1/v2/hybrid kernels and against the real host. */
export function runCgroupSuite(opts: CgroupSuiteOptions): void {
  const test = (name: string, body: (ctx: CgroupTestContext) => Promise<void>): void => {
    it(name, async () => {
      const ctx = await opts.setup();
      try {
        await body(ctx);
      } finally {
        await ctx.cleanup();
      }
    });
  };

  describe(`cgroups: ${opts.name}`, () => {
    test('describe() reports the mode, the mount points and the controllers', async ({ driver }) => {
      const info = driver.describe();
      assert.equal(driver.mode, opts.expectedMode);
      assert.equal(info.mode, opts.expectedMode);
      assert.equal(info.parent, driver.parent);
      for (const c of ['memory', 'cpu', 'pids'])
        assert.ok(info.controllers.includes(c), `controller ${c} missing`);
      assert.ok(info.hierarchies.every((h) => h.mountPoint.startsWith('/')));
      assert.equal(
        info.hierarchies.some((h) => h.version === 2),
        opts.expectedMode !== 'v1',
      );
    });

    test('create() writes memory, cpu and pids limits into the control files', async (ctx) => {
      const { driver, fs } = ctx;
      const cg = await driver.create(driver.pathFor('limits'), {
        memory: { limit: 32 * MiB },
        pids: { limit: 20 },
        cpu: { ...cpusToQuota(0.5), shares: 512 },
      });
      assert.equal(cg.path, `${driver.parent}/limits`);
      for (const file of cg.procsFiles()) {
        assert.match(file, new RegExp(`/${driver.parent}/limits/cgroup\\.procs$`));
        assert.ok(await fs.exists(file), `${file} missing`);
      }
      if (driver.mode === 'v2') {
        assert.equal(cg.procsFiles().length, 1);
        assert.equal(await read(fs, cg, 'memory', 'memory.max'), String(32 * MiB));
        const swap = await read(fs, cg, 'memory', 'memory.swap.max');
        if (swap !== undefined) assert.equal(swap, String(32 * MiB));
        assert.equal(await read(fs, cg, 'cpu', 'cpu.max'), '50000 100000');
        assert.equal(await read(fs, cg, 'cpu', 'cpu.weight'), '20');
      } else {
        assert.ok(cg.procsFiles().length >= 5, 'one procs file per v1 hierarchy');
        assert.equal(await read(fs, cg, 'memory', 'memory.limit_in_bytes'), String(32 * MiB));
        const memsw = await read(fs, cg, 'memory', 'memory.memsw.limit_in_bytes');
        if (memsw !== undefined) assert.equal(memsw, String(64 * MiB));
        assert.equal(await read(fs, cg, 'cpu', 'cpu.cfs_quota_us'), '50000');
        assert.equal(await read(fs, cg, 'cpu', 'cpu.cfs_period_us'), '100000');
        assert.equal(await read(fs, cg, 'cpu', 'cpu.shares'), '512');
        for (const c of ['cpuacct', 'freezer']) assert.ok(cg.controllerDir(c), `not in the ${c} hierarchy`);
      }
      assert.equal(await read(fs, cg, 'pids', 'pids.max'), '20');
      const stats = await cg.stats();
      assert.equal(stats.memory.limit, 32 * MiB);
      assert.equal(stats.pids.limit, 20);
      assert.equal(stats.pids.current, 0);
      assert.equal(await cg.oomKilled(), false);
    });

    test('create() without resources leaves everything unlimited', async ({ driver }) => {
      const cg = await driver.create(driver.pathFor('plain'), undefined);
      const stats = await cg.stats();
      assert.equal(stats.memory.limit, null);
      assert.equal(stats.pids.limit, null);
      assert.ok(stats.cpu.usageNs >= 0);
    });

    test('a process moved in through procsFiles() shows in pids() and stats(); destroy() kills it and removes every directory', async (ctx) => {
      const { driver } = ctx;
      const cg = await driver.create(driver.pathFor('procs'), { pids: { limit: 20 } });
      const proc = await ctx.startProcess(cg);
      assert.deepEqual(await cg.pids(), [proc.pid]);
      assert.equal((await cg.stats()).pids.current, 1);
      await cg.destroy();
      assert.equal(await proc.exited, 'SIGKILL');
      for (const file of cg.procsFiles())
        assert.equal(await ctx.fs.exists(file), false, `${file} left behind`);
      assert.deepEqual(await driver.listChildren(), []);
      await cg.destroy();
    });

    test('killAll() delivers the given signal to every process', async (ctx) => {
      const cg = await ctx.driver.create(ctx.driver.pathFor('signal'), undefined);
      const a = await ctx.startProcess(cg);
      const b = await ctx.startProcess(cg);
      assert.deepEqual(
        await cg.pids(),
        [a.pid, b.pid].sort((x, y) => x - y),
      );
      await cg.killAll('SIGTERM');
      assert.equal(await a.exited, 'SIGTERM');
      assert.equal(await b.exited, 'SIGTERM');
      assert.ok(await waitFor(async () => (await cg.pids()).length === 0, 2000));
      await cg.destroy();
    });

    test('invalid limits are rejected with every problem listed and nothing created', async (ctx) => {
      const { driver } = ctx;
      const path = driver.pathFor('invalid');
      await assert.rejects(driver.create(path, { memory: { limit: 1 * MiB } }), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.match(err.message, /Minimum memory limit allowed is 6MB/);
        return true;
      });
      await assert.rejects(
        driver.create(path, { pids: { limit: 1.5 }, cpu: { shares: 1, period: 10 } }),
        (err: unknown) => {
          assert.ok(err instanceof InvalidArgumentError);
          assert.match(err.message, /pids limit must be an integer/);
          assert.match(err.message, /CPU shares must be between 2 and 262144/);
          assert.match(err.message, /CPU cfs period can not be less than 1ms/);
          return true;
        },
      );
      await assert.rejects(driver.create('../escape', undefined), InvalidArgumentError);
      await assert.rejects(driver.create('/absolute', undefined), InvalidArgumentError);
      await assertGone(ctx, driver.parent);
    });

    test('a failure midway removes the directories it created', async (ctx) => {
      const { driver } = ctx;
      const path = driver.pathFor('midway');
      // Syntactically valid, but no host has 4096 cpus: the kernel (or a missing cpuset controller) refuses it.
      await assert.rejects(
        driver.create(path, { memory: { limit: 32 * MiB }, cpu: { cpus: '0-4095' } }),
        AbodeError,
      );
      await assertGone(ctx, driver.parent);
    });

    test('update() raises and lowers limits, keeping what it is not given', async (ctx) => {
      const { driver, fs } = ctx;
      const cg = await driver.create(driver.pathFor('update'), {
        memory: { limit: 32 * MiB },
        cpu: { quota: 50000, period: 100000 },
      });
      await cg.update({ memory: { limit: 128 * MiB } });
      assert.equal((await cg.stats()).memory.limit, 128 * MiB);
      await cg.update({ memory: { limit: 16 * MiB } });
      assert.equal((await cg.stats()).memory.limit, 16 * MiB);
      await cg.update({ pids: { limit: 50 } });
      const stats = await cg.stats();
      assert.equal(stats.pids.limit, 50);
      assert.equal(stats.memory.limit, 16 * MiB);
      await cg.update({ cpu: { quota: 20000 } });
      if (driver.mode === 'v2') assert.equal(await read(fs, cg, 'cpu', 'cpu.max'), '20000 100000');
      else {
        assert.equal(await read(fs, cg, 'cpu', 'cpu.cfs_quota_us'), '20000');
        assert.equal(await read(fs, cg, 'cpu', 'cpu.cfs_period_us'), '100000');
      }
      await cg.update({ memory: { limit: -1 }, pids: { limit: -1 }, cpu: { quota: -1 } });
      const unlimited = await cg.stats();
      assert.equal(unlimited.memory.limit, null);
      assert.equal(unlimited.pids.limit, null);
      await assert.rejects(cg.update({ memory: { limit: 100 } }), InvalidArgumentError);
    });

    test('open() reattaches to an existing cgroup and listChildren() finds it', async (ctx) => {
      const { driver } = ctx;
      const a = await driver.create(driver.pathFor('a'), { pids: { limit: 20 } });
      await driver.create(driver.pathFor('b'), undefined);
      assert.deepEqual(await driver.listChildren(), [`${driver.parent}/a`, `${driver.parent}/b`]);
      const proc = await ctx.startProcess(a);
      const again = await driver.open(`${driver.parent}/a`);
      assert.deepEqual(again.procsFiles(), a.procsFiles());
      assert.deepEqual(await again.pids(), [proc.pid]);
      assert.equal((await again.stats()).pids.limit, 20);
      await again.destroy();
      assert.equal(await proc.exited, 'SIGKILL');
      assert.deepEqual(await driver.listChildren(), [`${driver.parent}/b`]);
      await assert.rejects(driver.open(`${driver.parent}/a`), NotFoundError);
    });

    test('create() on an existing path is AlreadyExistsError and leaves it intact', async (ctx) => {
      const { driver } = ctx;
      const first = await driver.create(driver.pathFor('dup'), { pids: { limit: 20 } });
      await assert.rejects(driver.create(driver.pathFor('dup'), undefined), AlreadyExistsError);
      for (const file of first.procsFiles()) assert.ok(await ctx.fs.exists(file));
      assert.equal((await first.stats()).pids.limit, 20);
    });

    test('oomKilled() turns true once the OOM killer has killed a process inside', async (ctx) => {
      const cg = await ctx.driver.create(ctx.driver.pathFor('oom'), { memory: { limit: 64 * MiB } });
      assert.equal(await cg.oomKilled(), false);
      await ctx.runMemoryHog(cg);
      assert.equal(await cg.oomKilled(), true);
      await cg.destroy();
    });

    if (opts.expectedMode !== 'v2')
      test('a v1 cpuset child inherits its parent cpus and mems so that tasks can join', async (ctx) => {
        const cg = await ctx.driver.create(ctx.driver.pathFor('cpuset'), undefined);
        const dir = cg.controllerDir('cpuset');
        assert.ok(dir);
        const root = dir.slice(0, -`/${cg.path}`.length);
        const cpus = (await ctx.fs.readFile(`${root}/cpuset.cpus`)).trim();
        assert.notEqual(cpus, '');
        assert.equal(await read(ctx.fs, cg, 'cpuset', 'cpuset.cpus'), cpus);
        assert.notEqual(await read(ctx.fs, cg, 'cpuset', 'cpuset.mems'), '');
        const proc = await ctx.startProcess(cg);
        assert.deepEqual(await cg.pids(), [proc.pid]);
      });
  });
}
