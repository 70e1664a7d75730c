/**
 * Benchmark 1: end to end, CLI to exit code: `abode run --rm busybox true` against podman and runc on the
 * same rootfs. Beside it, where abode's time goes: node's own start, the CLI's start (`--version`), one
 * daemon round trip (`ps -q`), and the daemon's share of a run driven through the API in-process.
 */
import { join } from 'node:path';
import { Client } from '../src/client/client.js';
import { createOptions } from '../src/core/instance.js';
import { CLI, LAUNCHER, PODMAN_GLOBAL, PODMAN_RUN, shortId, type Fixture } from './fixture.js';
import { interleave, median, ms, now, table, timeCommand, verdict, type Samples } from './stats.js';

const TARGET = 0.5;

export interface E2eResult {
  line: string;
  table: string;
  /** The daemon's share per API call of the in-process run. */
  phases: string;
}

const API_PHASES = ['POST /instances', 'POST start', 'POST wait', 'DELETE ?force'];

export async function containerE2e(fx: Fixture): Promise<E2eResult> {
  const env = fx.cliEnv;
  const node = process.execPath;
  const client = new Client(join(fx.abodeRoot, 'run', 'abode.sock'));
  const phases: Samples = new Map(API_PHASES.map((p) => [p, []]));
  const viaApi = async (): Promise<number> => {
    const t = [now()];
    const { Id } = await client.call<{ Id: string }>('POST', '/instances', {
      body: createOptions({ image: 'busybox', cmd: ['true'] }),
    });
    t.push(now());
    await client.call('POST', `/instances/${Id}/start`);
    t.push(now());
    const { StatusCode } = await client.call<{ StatusCode: number }>('POST', `/instances/${Id}/wait`);
    t.push(now());
    await client.call('DELETE', `/instances/${Id}`, { query: { force: true } });
    t.push(now());
    if (StatusCode !== 0) throw new Error(`API run of true exited ${StatusCode}`);
    API_PHASES.forEach((p, i) => phases.get(p)!.push(t[i + 1] - t[i]));
    return t[4] - t[0];
  };
  const samples = await interleave([
    {
      name: 'abode run --rm (node cli)',
      run: () => timeCommand(node, [CLI, 'run', '--rm', 'busybox', 'true'], { env }),
    },
    {
      name: 'abode run --rm (./abode)',
      run: () => timeCommand(LAUNCHER, ['run', '--rm', 'busybox', 'true'], { env }),
    },
    {
      name: 'podman run --rm',
      run: () =>
        timeCommand('podman', [...PODMAN_GLOBAL, 'run', '--rm', ...PODMAN_RUN, fx.podmanImage, 'true']),
    },
    {
      name: 'runc run',
      run: () => timeCommand('runc', ['--root', fx.runcRoot, 'run', '-b', fx.runcBundle, `e2e-${shortId()}`]),
    },
    { name: '  node -e 0', run: () => timeCommand(node, ['-e', '0'], { env }) },
    { name: '  abode --version (cli start)', run: () => timeCommand(node, [CLI, '--version'], { env }) },
    { name: '  abode ps -q (1 round trip)', run: () => timeCommand(node, [CLI, 'ps', '-q'], { env }) },
    { name: '  API create+start+wait+rm', run: viaApi },
  ]);
  const n = samples.get('runc run')!.length;
  for (const [k, v] of phases) phases.set(k, v.slice(-n)); // drop the warm-up rounds
  const abode = median(samples.get('abode run --rm (node cli)')!);
  const launcher = median(samples.get('abode run --rm (./abode)')!);
  const podman = median(samples.get('podman run --rm')!);
  const runc = median(samples.get('runc run')!);
  return {
    line:
      `container e2e: abode ${ms(abode)} (./abode ${ms(launcher)}), podman ${ms(podman)}, runc ${ms(runc)}` +
      ` → abode/podman ${verdict(abode / podman, TARGET)}`,
    table: table('end to end', samples),
    phases: table('daemon API call', phases),
  };
}
