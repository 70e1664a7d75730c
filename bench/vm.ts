/**
 * MicroVM benchmarks (issue 4), runnable alone: `node dist/bench/vm.js` (ABODE_BENCH_N runs, default 30),
 * or from bench/main.ts with ABODE_BENCH_ONLY=vm. Two daemons: one restores VMs from a template (the
 * default), one boots every VM (ABODE_VM_TEMPLATES=0).
 * - end to end: `abode run --rm --isolation vm busybox true`, restored and booted, against the floor: a
 *   hand-tuned QEMU line booting the same kernel with a busybox initramfs whose /init powers off at once;
 * - QEMU's start to the agent's READY frame (the shim's bootMs), restored and booted, against the floor;
 * - the floor again with abode's kernel command line (what the kernel's own tuning wins);
 * - host memory of an idle VM (256 MiB guest, busybox sleeping), restored and booted, and the floor's:
 *   QEMU's RSS and where it is (guest RAM, TCG's code cache, QEMU's heap, QEMU's binary); and per VM
 *   with three restored ones running (PSS, the template's memory shared among them).
 * Runs are interleaved; medians and ratios are printed.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CPIO_DIR, CPIO_FILE, writeCpio } from '../src/platform/qemu/cpio.js';
import { hostTscKhz, kernelCmdline } from '../src/platform/qemu/args.js';
import { readTemplateRecords } from '../src/runtime/vm/templates.js';
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
  constructor(private readonly extraEnv: NodeJS.ProcessEnv = {}) {}
  get env(): NodeJS.ProcessEnv {
    return { ...process.env, ...this.extraEnv, ABODE_ROOT: this.root };
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
  /** Guest RAM the host holds for this VM: its RAM mapping's resident pages (a memfd of its own, or a template's pages and its private copies of them). */
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
  let guest = 0;
  let kind: 'tcg' | 'guest' | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (mapping)
      kind =
        mapping[1] === 'rwxp' && mapping[2] === '0'
          ? 'tcg'
          : /memfd:(memory-backend-memfd|abode-template)/.test(mapping[3] ?? '')
            ? 'guest'
            : undefined;
    else if (kind && line.startsWith('Rss:')) {
      const bytes = Number(/(\d+)/.exec(line)![1]) * 1024;
      if (kind === 'tcg') tcg += bytes;
      else guest += bytes;
    }
  }
  const rss = kb('VmRSS');
  const file = kb('RssFile');
  return { rss, guest, tcg, other: rss - guest - tcg - file, file };
}

/** A process's proportional share of memory (PSS: each shared page divided among the processes mapping it). */
function pssOf(pid: number): number {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
}

const sleep = (msecs: number) => new Promise((r) => setTimeout(r, msecs));

/** Waits until the fixture's daemon holds a ready template of a 256 MiB machine; its holder's memfd. */
async function awaitTemplate(fx: VmFixture): Promise<string> {
  for (let i = 0; i < 600; i++) {
    const ready = readTemplateRecords(join(fx.root, 'run')).find(
      (t) => t.memoryMiB === 256 && existsSync(t.memory),
    );
    if (ready) return ready.memory;
    await sleep(100);
  }
  throw new Error('no VM template after 60 s');
}

export async function vmBenchmarks(): Promise<{ lines: string[]; tables: string[] }> {
  if (process.getuid?.() !== 0) throw new Error('the VM benchmarks run VMs: run them as root');
  // Two daemons: VMs restored from a template (the default) and VMs that boot (ABODE_VM_TEMPLATES=0).
  const fx = new VmFixture();
  const booting = new VmFixture({ ABODE_VM_TEMPLATES: '0' });
  const lines: string[] = [];
  const tables: string[] = [];
  try {
    say('warming up (kernel fetch, initramfs, root disk, the template)');
    fx.abode(['run', '--rm', '--isolation', 'vm', 'busybox', 'true']);
    booting.abode(['run', '--rm', '--isolation', 'vm', 'busybox', 'true']);
    const templateMemory = await awaitTemplate(fx);
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
    const e2e = (f: VmFixture) => () =>
      timeCommand(process.execPath, [CLI, 'run', '--rm', '--isolation', 'vm', 'busybox', 'true'], {
        env: f.env,
      });
    const boot = (f: VmFixture) => (): number => {
      const id = f.abode(['run', '-d', '--isolation', 'vm', 'busybox', 'sleep', '1000']).trim();
      const bootMs = f.vmState(id).bootMs ?? NaN;
      f.abode(['rm', '-f', id]);
      return bootMs;
    };
    const names = {
      floor: 'floor: QEMU + busybox poweroff',
      tuned: "floor with abode's kernel cmdline",
      e2e: 'abode run --rm --isolation vm true',
      e2eBooted: 'abode run --rm --isolation vm true (booted)',
      ready: 'abode QEMU start to agent READY',
      readyBooted: 'abode QEMU start to agent READY (booted)',
    };
    say('timing (interleaved)');
    const samples = await interleave([
      { name: names.floor, run: floor },
      { name: names.tuned, run: floorTuned },
      { name: names.e2e, run: e2e(fx) },
      { name: names.e2eBooted, run: e2e(booting) },
      { name: names.ready, run: boot(fx) },
      { name: names.readyBooted, run: boot(booting) },
    ]);
    const m = (name: string) => median(samples.get(name)!);
    const floorMedian = m(names.floor);

    say('idle memory');
    const idleVm = (f: VmFixture) =>
      f.abode(['run', '-d', '--isolation', 'vm', '--memory', '256m', 'busybox', 'sleep', '1000']).trim();
    const idleRss = async (f: VmFixture): Promise<QemuMemory> => {
      const id = idleVm(f);
      await sleep(4000);
      const rss = rssOf(f.vmState(id).pid);
      f.abode(['rm', '-f', id]);
      return rss;
    };
    const rss = await idleRss(fx);
    const bootedRss = await idleRss(booting);
    // Host memory per VM when several run: QEMU's and the shim's PSS, so the pages the QEMUs share (their
    // binary, the template's memory) count once among them rather than once each; the template's pages
    // that no copy maps are counted too, shared among the three.
    const several = [idleVm(fx), idleVm(fx), idleVm(fx)];
    await sleep(4000);
    const templateBytes = statSync(templateMemory).blocks * 512;
    const mapped = several.reduce((sum, vm) => sum + templateRss(fx.vmState(vm).pid), 0);
    const perVm =
      (several.reduce((sum, vm) => {
        const pid = fx.vmState(vm).pid;
        const shim = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        return sum + pssOf(pid) + pssOf(shim);
      }, 0) +
        Math.max(0, templateBytes - mapped / several.length)) /
      several.length;
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

    const breakdown = (r: QemuMemory) =>
      `guest RAM ${mib(r.guest)}, TCG's code cache ${mib(r.tcg)}, QEMU's heap and data ${mib(r.other)},` +
      ` QEMU's binary and libraries ${mib(r.file)}`;
    tables.push(table('vm', samples));
    lines.push(
      `vm e2e (restored from a template): ${ms(m(names.e2e))} vs floor ${ms(floorMedian)}: ratio ${verdict(m(names.e2e) / floorMedian, TARGET_RATIO)}`,
      `vm e2e (booted, ABODE_VM_TEMPLATES=0): ${ms(m(names.e2eBooted))} vs floor ${ms(floorMedian)}: ratio ${verdict(m(names.e2eBooted) / floorMedian, TARGET_RATIO)}`,
      `vm QEMU start to READY (restored): ${ms(m(names.ready))} vs floor ${ms(floorMedian)}: ratio ${verdict(m(names.ready) / floorMedian, TARGET_RATIO)}`,
      `vm QEMU start to READY (booted): ${ms(m(names.readyBooted))} vs floor ${ms(floorMedian)}: ratio ${verdict(m(names.readyBooted) / floorMedian, TARGET_RATIO)}`,
      `vm floor with abode's kernel command line: ${ms(m(names.tuned))} (${((m(names.tuned) / floorMedian - 1) * 100).toFixed(0)}% against the issue's line)`,
      `vm idle QEMU RSS (256 MiB guest, restored): ${mib(rss.rss)}: ${verdict(rss.rss / TARGET_RSS, 1)} of 100 MiB (${breakdown(rss)})`,
      `vm idle QEMU RSS (256 MiB guest, booted): ${mib(bootedRss.rss)}: ${verdict(bootedRss.rss / TARGET_RSS, 1)} of 100 MiB (${breakdown(bootedRss)})`,
      `vm idle QEMU RSS of the floor's line: ${mib(floorRss.rss)}`,
      `vm host memory per idle VM with three restored (PSS of QEMU and shim, plus a third of the template's unmapped pages): ${mib(perVm)}; the template holds ${mib(templateBytes)} once`,
    );
    return { lines, tables };
  } finally {
    fx.cleanup();
    booting.cleanup();
  }
}

/** The template's pages a QEMU has mapped (its RAM mapping's Rss; the copy's own pages are anonymous). */
function templateRss(pid: number): number {
  let inRam = false;
  let bytes = 0;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inRam = line.includes('abode-template');
    else if (inRam && line.startsWith('Rss:')) bytes += Number(/(\d+)/.exec(line)![1]) * 1024;
  }
  return bytes;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  vmBenchmarks()
    .then(({ lines, tables }) => console.log(`\n${tables.join('\n\n')}\n\n${lines.join('\n')}`))
    .catch((error: unknown) => {
      console.error(`bench vm: ${(error as Error)?.stack ?? String(error)}`);
      process.exit(1);
    });
}
