/**
 * MicroVM benchmarks (issue 4), runnable alone: `node dist/bench/vm.js` (ABODE_BENCH_N runs, default 30),
 * or from bench/main.ts with ABODE_BENCH_ONLY=vm.
 * - end to end: `abode run --rm --isolation vm busybox true`, against the floor: a hand-tuned QEMU line
 *   booting the same kernel with a busybox initramfs whose /init powers off at once;
 * - boot to the agent's READY frame (the shim's bootMs: QEMU spawn to the agent's first act), against the floor;
 * - host memory of an idle VM (256 MiB guest, busybox sleeping): QEMU's RSS with free page reporting.
 * - the floor again with abode's kernel command line (what the kernel's own tuning wins);
 * - where an idle VM's memory is: guest RAM, TCG's code cache, QEMU's heap, QEMU's binary.
 * Runs are interleaved; medians and ratios are printed.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CPIO_DIR, CPIO_FILE, writeCpio } from '../src/platform/qemu/cpio.js';
import { hostTscKhz, kernelCmdline } from '../src/platform/qemu/args.js';
import { interleave, median, mib, ms, table, timeCommand, verdict } from './stats.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(REPO, 'dist/src/cli/main.js');
const TARGET_RATIO = 1.15;
const TARGET_RSS = 100 * 2 ** 20;

function say(message: string): void {
  process.stderr.write(`bench vm: ${message}\n`);
}

class VmFixture {
  readonly root = mkdtempSync(join(tmpdir(), 'abode-bench-vm-'));
  get env(): NodeJS.ProcessEnv {
    return { ...process.env, ABODE_ROOT: this.root };
  }
  abode(args: string[]): string {
    const r = spawnSync(process.execPath, [CLI, ...args], {
      env: this.env,
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (r.status !== 0) throw new Error(`abode ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    return r.stdout;
  }
  /** The runtime's record of a running VM (QEMU's pid, bootMs). */
  vmState(id: string): { pid: number; bootMs?: number } {
    return JSON.parse(readFileSync(join(this.root, 'run', 'v', id.slice(0, 16), 'state.json'), 'utf8')) as {
      pid: number;
      bootMs?: number;
    };
  }
  cleanup(): void {
    const ids = spawnSync(process.execPath, [CLI, 'ps', '-aq'], { env: this.env, encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean);
    if (ids.length) spawnSync(process.execPath, [CLI, 'rm', '-f', ...ids], { env: this.env });
    try {
      process.kill(Number(readFileSync(join(this.root, 'run', 'abode.pid'), 'utf8')), 'SIGTERM');
    } catch {
      // no daemon
    }
    spawnSync('sleep', ['0.5']);
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** The floor's kernel command line, as issue 4 gives it (abode's own adds to it: args.ts kernelCmdline). */
function floorCmdline(tscKhz: number | undefined): string {
  const hz = 250;
  const tsc = tscKhz
    ? [`lpj=${Math.round((tscKhz * 1000) / hz)}`, `tsc_early_khz=${Math.round(tscKhz)}`]
    : [];
  return [
    'console=ttyS0 quiet panic=-1 8250.nr_uarts=1 tsc=reliable no_timer_check i8042.noaux i8042.nomux',
    'i8042.nopnp i8042.dumbkbd reboot=t cryptomgr.notests mitigations=off audit=0',
    ...tsc,
  ].join(' ');
}

/** The floor's initramfs: static busybox with an /init that powers off at once (or, idle, sleeps). */
function floorInitramfs(busybox: string, path: string, idle = false): void {
  const init = idle
    ? '#!/bin/busybox sh\n/bin/busybox sleep 1000\n'
    : '#!/bin/busybox sh\n/bin/busybox poweroff -f\n';
  writeFileSync(
    path,
    writeCpio([
      { path: 'bin', mode: CPIO_DIR | 0o755 },
      { path: 'bin/busybox', mode: CPIO_FILE | 0o755, data: readFileSync(busybox) },
      { path: 'dev', mode: CPIO_DIR | 0o755 },
      { path: 'init', mode: CPIO_FILE | 0o755, data: Buffer.from(init) },
    ]),
  );
}

interface QemuMemory {
  rss: number;
  /** Guest RAM the host holds (the memfd: what the guest touched and has not given back). */
  guest: number;
  /** TCG's translated code (the anonymous rwx mappings; none under KVM). */
  tcg: number;
  /** QEMU's heap, stacks and data. */
  other: number;
  /** File pages: QEMU's binary and libraries, shared with every other QEMU. */
  file: number;
}

/** QEMU's resident memory, and where it is. */
function rssOf(pid: number): QemuMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  let tcg = 0;
  let executable = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ (\d+)/.exec(line);
    if (mapping) executable = mapping[1] === 'rwxp' && mapping[2] === '0';
    else if (executable && line.startsWith('Rss:')) tcg += Number(/(\d+)/.exec(line)![1]) * 1024;
  }
  const anon = kb('RssAnon');
  return { rss: kb('VmRSS'), guest: kb('RssShmem'), tcg, other: anon - tcg, file: kb('RssFile') };
}

/** A process's proportional share of memory (PSS: each shared page divided among the processes mapping it). */
function pssOf(pid: number): number {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
}

const sleep = (msecs: number) => new Promise((r) => setTimeout(r, msecs));

export async function vmBenchmarks(): Promise<{ lines: string[]; tables: string[] }> {
  if (process.getuid?.() !== 0) throw new Error('the VM benchmarks run VMs: run them as root');
  const fx = new VmFixture();
  const lines: string[] = [];
  const tables: string[] = [];
  try {
    say('warming up (kernel fetch, initramfs, root disk)');
    fx.abode(['run', '--rm', '--isolation', 'vm', 'busybox', 'true']);
    const kernel = JSON.parse(readFileSync(join(fx.root, 'vm', 'kernel', 'current.json'), 'utf8')) as {
      image: string;
      bzImage: string;
    };
    const busybox = execFileSync('sh', ['-c', `ls ${join(fx.root, 'layers')}/*/fs/bin/busybox | head -1`], {
      encoding: 'utf8',
    }).trim();
    const initrd = join(fx.root, 'floor.cpio');
    floorInitramfs(busybox, initrd);
    const tsc = await hostTscKhz();
    const floorArgs = (cmdline: string) => [
      '-M',
      'microvm,x-option-roms=off,isa-serial=on,rtc=on',
      '-accel',
      'tcg',
      '-m',
      '256',
      '-smp',
      '2',
      '-nodefaults',
      '-no-user-config',
      '-nographic',
      '-serial',
      'stdio',
      '-no-reboot',
      '-kernel',
      kernel.image,
      '-initrd',
      initrd,
      '-append',
      cmdline,
    ];
    const qemu = 'qemu-system-x86_64';
    const floor = () => timeCommand(qemu, floorArgs(floorCmdline(tsc)));
    // The same line with abode's kernel command line: how much of abode's time the kernel's own tuning wins.
    const floorTuned = () => timeCommand(qemu, floorArgs(kernelCmdline({ tscKhz: tsc })));
    const e2e = () =>
      timeCommand(process.execPath, [CLI, 'run', '--rm', '--isolation', 'vm', 'busybox', 'true'], {
        env: fx.env,
      });
    const bootTimes: number[] = [];
    const boot = (): number => {
      const id = fx.abode(['run', '-d', '--isolation', 'vm', 'busybox', 'sleep', '1000']).trim();
      const bootMs = fx.vmState(id).bootMs ?? NaN;
      fx.abode(['rm', '-f', id]);
      bootTimes.push(bootMs);
      return bootMs;
    };
    say('timing (interleaved)');
    const samples = await interleave([
      { name: 'floor: QEMU + busybox poweroff', run: floor },
      { name: "floor with abode's kernel cmdline", run: floorTuned },
      { name: 'abode run --rm --isolation vm true', run: e2e },
      { name: 'abode boot to agent READY', run: boot },
    ]);
    const floorMedian = median(samples.get('floor: QEMU + busybox poweroff')!);
    const e2eMedian = median(samples.get('abode run --rm --isolation vm true')!);
    const bootMedian = median(samples.get('abode boot to agent READY')!);
    const tunedMedian = median(samples.get("floor with abode's kernel cmdline")!);

    say('idle memory');
    const idleVm = () =>
      fx.abode(['run', '-d', '--isolation', 'vm', '--memory', '256m', 'busybox', 'sleep', '1000']).trim();
    const id = idleVm();
    await sleep(4000);
    const rss = rssOf(fx.vmState(id).pid);
    fx.abode(['rm', '-f', id]);
    // Host memory per VM when several run: QEMU's and the shim's PSS, so the pages every QEMU shares
    // (its binary, the kernel file) count once among them rather than once each.
    const several = [idleVm(), idleVm(), idleVm()];
    await sleep(4000);
    const perVm =
      several
        .map((vm) => fx.vmState(vm).pid)
        .reduce((sum, pid) => {
          const shim = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
          return sum + pssOf(pid) + pssOf(shim);
        }, 0) / several.length;
    fx.abode(['rm', '-f', ...several]);
    // The floor's line idle (its /init sleeps), for the issue's ~204 MiB in this run.
    const idleInitrd = join(fx.root, 'floor-idle.cpio');
    floorInitramfs(busybox, idleInitrd, true);
    const floorIdle = spawn(
      qemu,
      floorArgs(floorCmdline(tsc)).map((a) => (a === initrd ? idleInitrd : a)),
      {
        stdio: 'ignore',
      },
    );
    await sleep(4000 + floorMedian);
    const floorRss = rssOf(floorIdle.pid!);
    floorIdle.kill('SIGKILL');

    tables.push(table('vm', samples));
    lines.push(
      `vm e2e: ${ms(e2eMedian)} vs floor ${ms(floorMedian)}: ratio ${verdict(e2eMedian / floorMedian, TARGET_RATIO)}`,
      `vm boot to READY: ${ms(bootMedian)} vs floor ${ms(floorMedian)}: ratio ${verdict(bootMedian / floorMedian, TARGET_RATIO)}`,
      `vm floor with abode's kernel command line: ${ms(tunedMedian)} (${((tunedMedian / floorMedian - 1) * 100).toFixed(0)}% against the issue's line)`,
      `vm idle QEMU RSS (256 MiB guest): ${mib(rss.rss)}: ${verdict(rss.rss / TARGET_RSS, 1)} of 100 MiB` +
        ` (guest RAM ${mib(rss.guest)}, TCG's code cache ${mib(rss.tcg)}, QEMU's heap and data ${mib(rss.other)},` +
        ` QEMU's binary and libraries ${mib(rss.file)}, shared by every QEMU); the floor's line idle: ${mib(floorRss.rss)}`,
      `vm host memory per idle VM with three running (QEMU's and the shim's PSS): ${mib(perVm)}`,
    );
    return { lines, tables };
  } finally {
    fx.cleanup();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  vmBenchmarks()
    .then(({ lines, tables }) => console.log(`\n${tables.join('\n\n')}\n\n${lines.join('\n')}`))
    .catch((error: unknown) => {
      console.error(`bench vm: ${(error as Error)?.stack ?? String(error)}`);
      process.exit(1);
    });
}
