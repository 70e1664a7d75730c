/**
 * abode-shim against the real kernel (as root): a busybox root file system, docker-like mounts,
 * and the shim's lifecycle, log, attach, exec and error reporting.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ShimFrameDecoder, type ShimExit, type ShimSpec } from '../../src/platform/native-protocol.js';
import { shimWait, ShimStartError, shimAttach, shimRequest, startShim } from '../../src/platform/shim.js';
import { nativeBuild } from '../../src/platform/native-build.js';

const CLONE_NEWNS = 0x20000;
const CLONE_NEWCGROUP = 0x2000000;
const CLONE_NEWUTS = 0x4000000;
const CLONE_NEWIPC = 0x8000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;
const MS_RDONLY = 1;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const MS_STRICTATIME = 1 << 24;
const RLIMIT_NOFILE = 7;

const shimPath = nativeBuild('abode-shim');
const skip =
  process.getuid?.() !== 0
    ? 'needs root'
    : existsSync(shimPath)
      ? false
      : `${shimPath} is not built (make -C native)`;

/** A busybox root file system from Debian's busybox-static package (cached between runs). */
function prepareBusybox(dir: string): string {
  const cache = join(tmpdir(), 'abode-test-busybox');
  if (!existsSync(join(cache, 'bin', 'busybox'))) {
    const dl = mkdtempSync(join(tmpdir(), 'abode-bb-dl-'));
    const download = (): void => {
      execFileSync('apt-get', ['download', 'busybox-static'], { cwd: dl, stdio: 'pipe' });
    };
    try {
      download();
    } catch {
      execFileSync('apt-get', ['update'], { stdio: 'pipe' });
      download();
    }
    const deb = readdirSync(dl).find((f) => f.endsWith('.deb'))!;
    const unpack = mkdtempSync(join(tmpdir(), 'abode-bb-x-'));
    execFileSync('dpkg-deb', ['-x', join(dl, deb), unpack]);
    rmSync(dl, { recursive: true, force: true });
    rmSync(cache, { recursive: true, force: true });
    execFileSync('mv', [unpack, cache]);
  }
  const rootfs = join(dir, 'rootfs');
  execFileSync('cp', ['-a', cache, rootfs]);
  const bin = join(rootfs, 'bin');
  const applets = execFileSync(join(bin, 'busybox'), ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
  for (const a of applets) if (!existsSync(join(bin, a))) symlinkSync('busybox', join(bin, a));
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc', 'root'])
    mkdirSync(join(rootfs, d), { recursive: true });
  return rootfs;
}

let work = '';
let rootfs = '';
let seq = 0;

const DOCKER_CAPS = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31].reduce(
  (m, c) => m | (1n << BigInt(c)),
  0n,
);

function runSpec(args: string[], over: Partial<ShimSpec> = {}): ShimSpec {
  const n = ++seq;
  return {
    mode: 'run',
    id: `t${n}`,
    args,
    env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root'],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    terminal: false,
    openStdin: false,
    noNewPrivileges: true,
    capabilities: {
      bounding: DOCKER_CAPS,
      effective: DOCKER_CAPS,
      permitted: DOCKER_CAPS,
      inheritable: 0n,
      ambient: 0n,
    },
    rlimits: [],
    init: false,
    namespaces: CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP,
    joinNamespaces: [],
    rootfs,
    readonlyRootfs: false,
    mounts: [
      {
        source: 'proc',
        target: '/proc',
        fstype: 'proc',
        flags: MS_NOSUID | MS_NOEXEC | MS_NODEV,
        propagation: 0,
        data: '',
      },
      {
        source: 'tmpfs',
        target: '/dev',
        fstype: 'tmpfs',
        flags: MS_NOSUID | MS_STRICTATIME,
        propagation: 0,
        data: 'mode=755,size=65536k',
      },
      {
        source: 'devpts',
        target: '/dev/pts',
        fstype: 'devpts',
        flags: MS_NOSUID | MS_NOEXEC,
        propagation: 0,
        data: 'newinstance,ptmxmode=0666,mode=0620,gid=5',
      },
      {
        source: 'shm',
        target: '/dev/shm',
        fstype: 'tmpfs',
        flags: MS_NOSUID | MS_NOEXEC | MS_NODEV,
        propagation: 0,
        data: 'mode=1777,size=65536k',
      },
      {
        source: 'mqueue',
        target: '/dev/mqueue',
        fstype: 'mqueue',
        flags: MS_NOSUID | MS_NOEXEC | MS_NODEV,
        propagation: 0,
        data: '',
      },
      {
        source: 'sysfs',
        target: '/sys',
        fstype: 'sysfs',
        flags: MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY,
        propagation: 0,
        data: '',
      },
    ],
    devices: [
      ['/dev/null', 1, 3],
      ['/dev/zero', 1, 5],
      ['/dev/full', 1, 7],
      ['/dev/random', 1, 8],
      ['/dev/urandom', 1, 9],
      ['/dev/tty', 5, 0],
    ].map(([path, major, minor]) => ({
      path: path as string,
      type: 'c' as const,
      major: major as number,
      minor: minor as number,
      mode: 0o666,
      uid: 0,
      gid: 0,
    })),
    symlinks: [
      ['/proc/self/fd', '/dev/fd'],
      ['/proc/self/fd/0', '/dev/stdin'],
      ['/proc/self/fd/1', '/dev/stdout'],
      ['/proc/self/fd/2', '/dev/stderr'],
      ['pts/ptmx', '/dev/ptmx'],
    ],
    maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware', '/proc/nonexistent'],
    readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger', '/proc/bus'],
    hostname: `host-${n}`,
    cgroupProcs: [],
    logPath: join(work, `${n}.log`),
    exitPath: join(work, `${n}.exit`),
    socketPath: join(work, `${n}.sock`),
    holdUntilStart: false,
    ...over,
  };
}

const started: ShimSpec[] = [];

async function start(spec: ShimSpec): Promise<number> {
  started.push(spec);
  const ready = await startShim({
    shimPath,
    spec,
    specPath: `${spec.socketPath}.spec`,
    stderrPath: `${spec.socketPath}.stderr`,
  });
  return ready.pid;
}

async function waitExit(spec: ShimSpec): Promise<ShimExit> {
  return shimWait(spec.socketPath, spec.exitPath);
}

/** [stream, text] of each CRI log line. */
function logLines(spec: ShimSpec): [string, string, string][] {
  return readFileSync(spec.logPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$/s.exec(l);
      assert.ok(m, `bad log line ${JSON.stringify(l)}`);
      return [m[2]!, m[3]!, m[4]!];
    });
}

function stdoutText(spec: ShimSpec): string {
  return logLines(spec)
    .filter(([s]) => s === 'stdout')
    .map(([, tag, t]) => (tag === 'F' ? `${t}\n` : t))
    .join('');
}

function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(text)) pids.push(Number(p));
    } catch {
      // gone
    }
  }
  return pids;
}

describe('abode-shim', { skip }, () => {
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'abode-shim-it-'));
    rootfs = prepareBusybox(work);
  });
  after(async () => {
    // Kill whatever a failed test left running, then wait for its shim to finish.
    for (const spec of started) {
      if (!existsSync(spec.socketPath)) continue;
      await shimRequest(spec.socketPath, 'signal 9').catch(() => undefined);
      await shimWait(spec.socketPath, spec.exitPath).catch(() => undefined);
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('runs a process: log keeps stdout and stderr apart, PID 1, hostname, exit code', async () => {
    const spec = runSpec([
      'sh',
      '-c',
      'echo out; echo err >&2; echo pid=$$; hostname; printf partial; exit 3',
    ]);
    await start(spec);
    const exit = await waitExit(spec);
    assert.equal(exit.exitCode, 3);
    assert.equal(exit.signal, 0);
    assert.match(exit.finishedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    assert.deepEqual(JSON.parse(readFileSync(spec.exitPath, 'utf8')), exit);
    const lines = logLines(spec);
    assert.deepEqual(
      lines.filter(([s]) => s === 'stderr'),
      [['stderr', 'F', 'err']],
    );
    assert.equal(stdoutText(spec), `out\npid=1\n${spec.hostname}\npartial`);
    assert.deepEqual(lines.filter(([s]) => s === 'stdout').at(-1), ['stdout', 'P', 'partial']);
    assert.equal(existsSync(spec.socketPath), false, 'socket removed at exit');
  });

  it('reports 137 for a process killed by SIGKILL', async () => {
    const spec = runSpec(['sleep', '100']);
    const pid = await start(spec);
    assert.equal(await shimRequest(spec.socketPath, 'state'), `running ${pid}`);
    assert.equal(await shimRequest(spec.socketPath, 'signal 9'), 'ok');
    const exit = await waitExit(spec);
    assert.equal(exit.exitCode, 137);
    assert.equal(exit.signal, 9);
  });

  it('holds the process until start, and attach receives frames and feeds stdin', async () => {
    const spec = runSpec(['sh', '-c', 'read line; echo "got $line"; echo bye >&2'], {
      holdUntilStart: true,
      openStdin: true,
    });
    const pid = await start(spec);
    assert.equal(await shimRequest(spec.socketPath, 'state'), `created ${pid}`);
    const sock = await shimAttach(spec.socketPath, { stdin: true });
    const frames: [number, string][] = [];
    const decoder = new ShimFrameDecoder();
    const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
    sock.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) frames.push([f.stream, f.payload.toString()]);
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await shimRequest(spec.socketPath, 'start'), 'ok');
    assert.match(await shimRequest(spec.socketPath, 'start'), /^error /);
    sock.end('hello\n');
    await closed;
    assert.deepEqual(frames.slice(0, -1).sort(), [
      [1, 'got hello\n'],
      [2, 'bye\n'],
    ]);
    const [stream, json] = frames.at(-1)!;
    assert.equal(stream, 3);
    assert.equal((JSON.parse(json) as ShimExit).exitCode, 0);
  });

  it('start of a held process whose binary vanished exits 127 with an error', async () => {
    const spec = runSpec(['/tmp/vanishing'], { holdUntilStart: true });
    execFileSync('cp', [join(rootfs, 'bin', 'busybox'), join(rootfs, 'tmp', 'vanishing')]);
    await start(spec);
    rmSync(join(rootfs, 'tmp', 'vanishing'));
    assert.match(await shimRequest(spec.socketPath, 'start'), /^error exec \/tmp\/vanishing: No such file/);
    const exit = await waitExit(spec);
    assert.equal(exit.exitCode, 127);
    assert.match(exit.error ?? '', /No such file/);
  });

  it('a missing binary fails at step exec with ENOENT and leaves nothing behind', async () => {
    const spec = runSpec(['no-such-binary']);
    await assert.rejects(start(spec), (e: unknown) => {
      assert.ok(e instanceof ShimStartError);
      assert.equal(e.step, 'exec');
      assert.equal(e.errno, 2);
      assert.equal(e.code, 'command_not_found');
      assert.match(e.message, /no-such-binary.*not found/);
      return true;
    });
    assert.equal(existsSync(spec.socketPath), false);
    assert.deepEqual(processesMentioning(`${spec.socketPath}.spec`), []);
  });

  it('creates a missing cwd as docker does; one that cannot exist fails at step chdir', async () => {
    const made = runSpec(['pwd'], { cwd: '/made/here' });
    await start(made);
    assert.equal((await shimWait(made.socketPath, made.exitPath)).exitCode, 0);
    const spec = runSpec(['true'], { cwd: '/bin/busybox/nope' });
    await assert.rejects(start(spec), (e: unknown) => {
      assert.ok(e instanceof ShimStartError);
      assert.equal(e.step, 'chdir');
      assert.equal(e.errno, 20);
      assert.match(e.message, /chdir to cwd \("\/bin\/busybox\/nope"\).*not a directory/);
      return true;
    });
    assert.equal(existsSync(spec.socketPath), false);
  });

  it('exec joins a running instance: same hostname and pid namespace', async () => {
    const run = runSpec(['sleep', '100']);
    const pid = await start(run);
    const exec = runSpec(['sh', '-c', 'hostname; readlink /proc/self/ns/pid; cat /proc/1/comm'], {
      mode: 'exec',
      targetPid: pid,
      mounts: [],
      devices: [],
      symlinks: [],
      maskedPaths: [],
      readonlyPaths: [],
    });
    const execPid = await start(exec);
    assert.notEqual(execPid, pid);
    const exit = await waitExit(exec);
    assert.equal(exit.exitCode, 0);
    assert.equal(stdoutText(exec), `${run.hostname}\n${readlinkSync(`/proc/${pid}/ns/pid`)}\nsleep\n`);
    await shimRequest(run.socketPath, 'signal 9');
    await waitExit(run);
  });

  it('exec with a terminal, held until start, under init', async () => {
    const run = runSpec(['sleep', '100'], { init: true });
    const pid = await start(run);
    try {
      const exec = runSpec(['sh', '-c', 'tty; echo ppid-ns=$(cat /proc/1/comm)'], {
        mode: 'exec',
        targetPid: pid,
        terminal: true,
        holdUntilStart: true,
      });
      const execPid = await start(exec);
      assert.equal(await shimRequest(exec.socketPath, 'state'), `created ${execPid}`);
      assert.equal(await shimRequest(exec.socketPath, 'start'), 'ok');
      const exit = await waitExit(exec);
      assert.equal(exit.exitCode, 0);
      assert.equal(stdoutText(exec), '/dev/pts/0\r\nppid-ns=abode-shim\r\n');
    } finally {
      await shimRequest(run.socketPath, 'signal 9');
      assert.equal((await waitExit(run)).exitCode, 137);
    }
  });

  it('gives a terminal process /dev/pts/0 and resizes it', async () => {
    const spec = runSpec(['sh', '-c', 'tty; sleep 0.3; stty size'], { terminal: true });
    await start(spec);
    assert.equal(await shimRequest(spec.socketPath, 'resize 33 120'), 'ok');
    const exit = await waitExit(spec);
    assert.equal(exit.exitCode, 0);
    assert.equal(stdoutText(spec), '/dev/pts/0\r\n33 120\r\n');
  });

  it('clamps rlimits to the current hard limit', async () => {
    const spec = runSpec(['sh', '-c', 'ulimit -Hn; ulimit -n'], {
      rlimits: [{ resource: RLIMIT_NOFILE, soft: 1n << 40n, hard: 1n << 40n }],
    });
    await start(spec);
    await waitExit(spec);
    const hard = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    assert.equal(stdoutText(spec), `${hard}\n${hard}\n`);
  });

  it('with init, PID 1 reaps, forwards signals and reports 128+signal', async () => {
    const spec = runSpec(['sh', '-c', 'echo pid=$$; exec sleep 100'], { init: true });
    await start(spec);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await shimRequest(spec.socketPath, 'signal 15'), 'ok');
    const exit = await waitExit(spec);
    assert.equal(exit.exitCode, 143);
    assert.equal(stdoutText(spec), 'pid=2\n');
  });

  it('joins the given cgroup and makes the root read-only when asked', async () => {
    const cg = `/sys/fs/cgroup/pids/abode-shim-test-${process.pid}`;
    const haveCg = existsSync('/sys/fs/cgroup/pids');
    if (haveCg) mkdirSync(cg, { recursive: true });
    try {
      const spec = runSpec(
        ['sh', '-c', 'cat /proc/self/cgroup | grep pids; touch /x 2>&1; cat /proc/kcore | wc -c'],
        {
          readonlyRootfs: true,
          cgroupProcs: haveCg ? [`${cg}/cgroup.procs`] : [],
        },
      );
      await start(spec);
      const exit = await waitExit(spec);
      assert.equal(exit.exitCode, 0);
      const out = stdoutText(spec);
      assert.match(out, /Read-only file system/);
      assert.match(out, /\n0\n$/);
      if (haveCg) assert.match(out, /pids:\/$/m, 'cgroup namespace rooted at the joined cgroup');
    } finally {
      if (haveCg) rmSync(cg, { recursive: true, force: true });
    }
  });
});
