import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import {
  cpusToQuota,
  detectCgroups,
  nodeCgroupFs,
  parseMountinfo,
  type Cgroup,
  type CgroupDriver,
  type CgroupMode,
} from '../../src/platform/cgroups/index.js';
import { removeParent, runCgroupSuite, type CgroupTestContext } from '../../src/platform/cgroups/suite.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
const hasCgroups =
  existsSync('/proc/self/mountinfo') && readFileSync('/proc/self/mountinfo', 'utf8').includes(' - cgroup');
const skip = !isRoot || !hasCgroups ? 'needs root and mounted cgroups' : false;

/** The mode as seen independently of the driver: what is mounted at /sys/fs/cgroup. */
function hostMode(): CgroupMode {
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'v2';
  const mounts = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
  return mounts.v2 ? 'hybrid' : 'v1';
}

const children = new Set<ChildProcess>();
const parents = new Set<CgroupDriver>();

after(async () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const driver of parents) await removeParent(driver).catch(() => undefined);
});

async function newDriver(): Promise<CgroupDriver> {
  const driver = await detectCgroups({ parent: `abode-test-${randomBytes(4).toString('hex')}` });
  parents.add(driver);
  return driver;
}

function track(child: ChildProcess): Promise<string | null> {
  children.add(child);
  return once(child, 'exit').then(([, signal]) => signal as string | null);
}

/** Runs `cmd` after a shell wrapper has written its own pid into every procs file; resolves once it is inside. */
async function spawnInside(
  cgroup: Cgroup,
  cmd: string[],
): Promise<{ pid: number; exited: Promise<string | null> }> {
  const script = 'for f in "$@"; do echo $$ > "$f" || exit 99; done; echo in; exec "$CMD0" $CMDARGS';
  const [cmd0, ...args] = cmd;
  const child = spawn(
    'sh',
    ['-c', script.replace('$CMDARGS', args.map((a) => `'${a}'`).join(' ')), 'sh', ...cgroup.procsFiles()],
    {
      env: { ...process.env, CMD0: cmd0 },
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const exited = track(child);
  const [line] = (await Promise.race([once(child.stdout!, 'data'), exited.then(() => ['exited'])])) as [
    unknown,
  ];
  assert.equal(String(line).trim(), 'in', 'the wrapper could not enter the cgroup');
  return { pid: child.pid!, exited };
}

async function realContext(): Promise<CgroupTestContext> {
  const driver = await newDriver();
  return {
    driver,
    fs: nodeCgroupFs,
    async startProcess(cgroup) {
      // What the native shim does: write the pid into each procs file.
      const child = spawn('sleep', ['30'], { stdio: 'ignore' });
      const exited = track(child);
      for (const file of cgroup.procsFiles()) await nodeCgroupFs.writeFile(file, String(child.pid));
      return { pid: child.pid!, exited };
    },
    async runMemoryHog(cgroup) {
      const hog = 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));';
      const { exited } = await spawnInside(cgroup, [process.execPath, '-e', hog]);
      assert.equal(await exited, 'SIGKILL');
    },
    cleanup: () => removeParent(driver),
  };
}

describe('cgroups on this host', { skip }, () => {
  if (skip) return;

  runCgroupSuite({ name: `real ${hostMode()} host`, expectedMode: hostMode(), setup: realContext });

  it('detectCgroups() finds every mounted controller hierarchy from mountinfo', async () => {
    const driver = await newDriver();
    const mounts = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    const info = driver.describe();
    for (const m of mounts.v1)
      assert.ok(info.hierarchies.some((h) => h.mountPoint === m.mountPoint && h.version === 1));
    if (driver.mode === 'hybrid')
      assert.ok(info.hierarchies.some((h) => h.version === 2 && h.mountPoint === mounts.v2?.mountPoint));
  });

  it('limits reach the real files and a real process is counted and charged', async () => {
    const driver = await newDriver();
    const cg = await driver.create(driver.pathFor('real'), {
      memory: { limit: 32 * MiB },
      pids: { limit: 20 },
      cpu: cpusToQuota(0.5),
    });
    const file = (controller: string, name: string): string =>
      readFileSync(`${cg.controllerDir(controller)}/${name}`, 'utf8').trim();
    if (driver.mode === 'v2') {
      assert.equal(file('memory', 'memory.max'), String(32 * MiB));
      assert.equal(file('cpu', 'cpu.max'), '50000 100000');
    } else {
      assert.equal(file('memory', 'memory.limit_in_bytes'), String(32 * MiB));
      assert.equal(file('cpu', 'cpu.cfs_quota_us'), '50000');
      assert.equal(file('cpu', 'cpu.cfs_period_us'), '100000');
    }
    assert.equal(file('pids', 'pids.max'), '20');

    // The wrapper enters the cgroup then execs sleep, so the exec is charged to it.
    const { pid, exited } = await spawnInside(cg, ['sleep', '30']);
    assert.deepEqual(await cg.pids(), [pid]);
    for (const procs of cg.procsFiles())
      assert.match(readFileSync(procs, 'utf8'), new RegExp(`^${pid}$`, 'm'));
    const own = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    assert.ok(own.includes(`/${cg.path}`), own);
    const stats = await cg.stats();
    assert.equal(stats.memory.limit, 32 * MiB);
    assert.ok(stats.memory.usage > 0, 'memory usage should be charged');
    assert.ok(stats.cpu.usageNs > 0, 'cpu time should be charged');
    assert.deepEqual(stats.pids, { current: 1, limit: 20 });
    assert.equal(await cg.oomKilled(), false);

    await cg.destroy();
    assert.equal(await exited, 'SIGKILL');
    for (const h of driver.describe().hierarchies)
      assert.equal(existsSync(`${h.mountPoint}/${cg.path}`), false, `${h.mountPoint}/${cg.path} left behind`);
  });

  it('the pids limit stops forks beyond it', async () => {
    const driver = await newDriver();
    const cg = await driver.create(driver.pathFor('forks'), { pids: { limit: 5 } });
    // The shell gives up at the first failed fork; the sleeps it did start stay behind.
    const { exited } = await spawnInside(cg, [
      'sh',
      '-c',
      'for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait',
    ]);
    await exited;
    const events = readFileSync(`${cg.controllerDir('pids')}/pids.events`, 'utf8');
    assert.ok(Number(/max (\d+)/.exec(events)?.[1]) > 0, events);
    assert.equal((await cg.stats()).pids.current, 4);
    await cg.destroy();
  });
});
