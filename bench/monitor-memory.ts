/**
 * Benchmark 3: resident memory of the monitor per running instance. Starts 10 `sleep` instances with
 * `abode run -d`, reads VmRSS and Pss of each abode-shim; podman's monitor (conmon) is measured the same way.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PODMAN_GLOBAL, PODMAN_RUN, run, type Fixture } from './fixture.js';
import { mean, mib } from './stats.js';

const INSTANCES = 10;
const TARGET_MIB = 1;
/** docker's containerd-shim-runc-v2 on this kind of host, for the printed comparison. */
const CONTAINERD_SHIM_MIB = 12.8;

export interface MemoryResult {
  line: string;
  detail: string;
}

interface ProcMemory {
  pid: number;
  rss: number;
  pss: number;
}

function cmdline(pid: string): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** Pids whose command line matches. */
function findProcesses(match: (argv: string[]) => boolean): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => match(cmdline(pid)))
    .map(Number);
}

/** VmRSS from status and Pss from smaps_rollup, in bytes. */
function memoryOf(pid: number): ProcMemory {
  const field = (text: string, name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m) throw new Error(`/proc/${pid}: no ${name}`);
    return Number(m[1]) * 1024;
  };
  return {
    pid,
    rss: field(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS'),
    pss: field(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss'),
  };
}

function summary(name: string, procs: ProcMemory[]): { rss: number; pss: number; text: string } {
  const rss = mean(procs.map((p) => p.rss));
  const pss = mean(procs.map((p) => p.pss));
  return {
    rss,
    pss,
    text: `${name}: ${procs.length} processes, mean VmRSS ${mib(rss)}, mean Pss ${mib(pss)}`,
  };
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
}

export async function monitorMemory(fx: Fixture): Promise<MemoryResult> {
  const runRoot = join(fx.abodeRoot, 'run');
  const ids: string[] = [];
  let abode;
  try {
    for (let i = 0; i < INSTANCES; i++) ids.push(fx.cli(['run', '-d', 'busybox', 'sleep', '600']).trim());
    await settle();
    // Each instance's monitor is its process's parent (a standby monitor's command line names no root).
    const shims = ids.map((id) => {
      const pid = fx.cli(['inspect', '--format', '{{.State.Pid}}', id]).trim();
      return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
    });
    void runRoot;
    if (shims.length !== INSTANCES)
      throw new Error(`found ${shims.length} abode-shim processes, want ${INSTANCES}`);
    abode = summary('abode-shim', shims.map(memoryOf));
  } finally {
    if (ids.length > 0) fx.cli(['rm', '-f', ...ids]);
  }

  // podman's per-container monitor, conmon, for comparison.
  const podmanIds: string[] = [];
  let conmon;
  try {
    for (let i = 0; i < INSTANCES; i++) {
      const out = run('podman', [
        ...PODMAN_GLOBAL,
        'run',
        '-d',
        ...PODMAN_RUN,
        fx.podmanImage,
        'sleep',
        '600',
      ]);
      podmanIds.push(out.trim());
    }
    await settle();
    const monitors = findProcesses(
      (argv) => argv[0]?.endsWith('conmon') === true && podmanIds.some((id) => argv.includes(id)),
    );
    conmon = summary('conmon (podman)', monitors.map(memoryOf));
  } finally {
    if (podmanIds.length > 0) run('podman', [...PODMAN_GLOBAL, 'rm', '-f', '-t', '0', ...podmanIds]);
  }

  const rssMib = abode.rss / 1048576;
  const ok = rssMib < TARGET_MIB;
  return {
    line:
      `monitor memory: abode-shim ${mib(abode.rss)} RSS (${mib(abode.pss)} Pss) per instance, ` +
      `conmon ${mib(conmon.rss)} RSS, containerd-shim ${CONTAINERD_SHIM_MIB} MiB (docker, reference) ` +
      `→ target < ${TARGET_MIB} MiB ${ok ? '✓' : '✗'}`,
    detail: [abode.text, conmon.text].join('\n'),
  };
}
