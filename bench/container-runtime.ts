/**
 * Benchmark 2: the runtime's own start-to-exit, bundle ready → process reaped. abode's ContainerRuntime is
 * driven in-process (create + start + wait + delete, as the daemon does); runc runs the same rootfs with
 * buildSpec's config.json (`runc run`, which also deletes the container).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Bundle } from '../src/core/runtime.js';
import { detectCgroups } from '../src/platform/cgroups/index.js';
import { ContainerRuntime } from '../src/runtime/container/index.js';
import { StandbyPool } from '../src/runtime/standby-pool.js';
import { CGROUP_PARENT, SHIM, shortId, type Fixture } from './fixture.js';
import { interleave, median, ms, now, table, timeCommand, verdict, type Samples } from './stats.js';

const TARGET = 0.8;

export interface RuntimeResult {
  line: string;
  table: string;
  phases: string;
}

export async function containerRuntime(fx: Fixture): Promise<RuntimeResult> {
  const options = {
    runRoot: join(fx.dir, 'runtime-run'),
    shimPath: SHIM,
    cgroups: await detectCgroups(),
    cgroupParent: CGROUP_PARENT,
  };
  // As the daemon has it: a standby monitor in a fresh cgroup for each create.
  const pool = new StandbyPool(options);
  const runtime = new ContainerRuntime({ ...options, pool });
  const bundles = join(fx.dir, 'runtime-bundles');
  const phases: Samples = new Map(['create', 'start', 'wait', 'delete'].map((p) => [p, []]));

  /** One abode instance: a fresh bundle directory (the runtime keeps exit.json there), then the lifecycle. */
  const abode = async (): Promise<number> => {
    const id = shortId() + shortId();
    const dir = join(bundles, id);
    await mkdir(dir, { recursive: true });
    const spec = await fx.busyboxTrueSpec(id);
    spec.linux.cgroupsPath = `${CGROUP_PARENT}/${id}`;
    await writeFile(join(dir, 'config.json'), JSON.stringify(spec));
    const bundle: Bundle = {
      dir,
      spec,
      // A bind mount of the plain directory over the root, as runc gets it.
      rootfs: [{ type: 'bind', source: fx.rootfs, options: ['rbind'] }],
      logPath: join(dir, 'container.log'),
    };
    const t0 = now();
    await runtime.create(id, bundle);
    const t1 = now();
    await runtime.start(id);
    const t2 = now();
    const exit = await runtime.wait(id);
    const t3 = now();
    await runtime.delete(id);
    const t4 = now();
    if (exit.exitCode !== 0)
      throw new Error(`abode runtime: true exited ${exit.exitCode} ${exit.error ?? ''}`);
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3].forEach((v, i) =>
      phases.get(['create', 'start', 'wait', 'delete'][i])!.push(v),
    );
    await rm(dir, { recursive: true, force: true });
    return t4 - t0;
  };
  const runc = (): number =>
    timeCommand('runc', ['--root', fx.runcRoot, 'run', '-b', fx.runcBundle, `bench-${shortId()}`]);

  const samples = await interleave([
    { name: 'abode ContainerRuntime', run: abode },
    { name: 'runc run', run: runc },
  ]);
  await pool.close();
  await rm(bundles, { recursive: true, force: true });
  const a = median(samples.get('abode ContainerRuntime')!);
  const r = median(samples.get('runc run')!);
  // Warm-up runs are in `phases` too: keep the last n, as timed.
  const n = samples.get('runc run')!.length;
  for (const [k, v] of phases) phases.set(k, v.slice(-n));
  return {
    line: `container runtime: abode ${ms(a)}, runc ${ms(r)} → abode/runc ${verdict(a / r, TARGET)}`,
    table: table('runtime start→exit', samples),
    phases: table('abode runtime phase', phases),
  };
}
