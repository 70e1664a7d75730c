/** `--isolation vm`: the same image in a microVM with its own kernel, driven through the CLI (TCG here and in CI). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { availableParallelism, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Abode, alive, hostSnapshot, processesOf } from './harness.js';
import { qmpRun } from '../../src/platform/qemu/qmp.js';
import { readTemplateRecords } from '../../src/runtime/vm/templates.js';

const abode = new Abode('abode-e2e-vm-');
const ok = (args: string[], input?: string) => abode.ok(args, input);
const vm = (...args: string[]) => vmWith([], ...args);
/** `run --rm --isolation vm FLAGS… busybox ARGS…` */
const vmWith = (flags: string[], ...args: string[]) => [
  'run',
  '--rm',
  '--isolation',
  'vm',
  ...flags,
  'busybox',
  ...args,
];

/** An abode with extra daemon environment (e.g. a QEMU or kernel that is not there). */
class AbodeWithEnv extends Abode {
  constructor(private readonly extra: NodeJS.ProcessEnv) {
    super('abode-e2e-vmenv-');
  }
  override get env(): NodeJS.ProcessEnv {
    return { ...super.env, ...this.extra };
  }
}

before(() => {
  // The first run fetches the kernel, builds the initramfs and the image's disk, and starts the daemon.
  ok(vm('true'));
});
after(() => abode.cleanup());

describe('isolation inside a VM', () => {
  test("uname -r prints the guest kernel's release, not the host's", () => {
    const guest = ok(vm('uname', '-r')).trim();
    assert.match(guest, /cloud-amd64$/);
    assert.notEqual(guest, release());
  });

  test('/proc shows only the guest: the agent is PID 1, no host process is visible', () => {
    const out = ok(vm('sh', '-c', 'cat /proc/1/cmdline; echo; ps -o comm'));
    const [init, ...comms] = out.trim().split('\n');
    assert.equal(init.replace(/\0/g, ''), '/init');
    for (const host of ['node', 'abode-shim', 'qemu-system-x86']) assert.ok(!comms.includes(host), host);
  });

  test("the host's files are invisible", () => {
    const marker = join(tmpdir(), `abode-vm-secret-${process.pid}`);
    writeFileSync(marker, 'secret');
    try {
      const result = abode.run(vm('cat', marker));
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /No such file or directory/);
      assert.doesNotMatch(result.stdout, /secret/);
    } finally {
      rmSync(marker, { force: true });
    }
  });

  test('--memory is the guest RAM (its /proc/meminfo)', () => {
    const out = ok([
      'run',
      '--rm',
      '--isolation',
      'vm',
      '--memory',
      '256m',
      'busybox',
      'grep',
      'MemTotal',
      '/proc/meminfo',
    ]);
    const kb = Number(/MemTotal:\s+(\d+)/.exec(out)?.[1]);
    assert.ok(kb > 180_000 && kb <= 262_144, `MemTotal ${kb} kB`);
  });

  test('--cpus is the number of vCPUs; two by default (fewer only on a smaller host)', () => {
    const vcpus = (flags: string[]) => Number(ok(vmWith(flags, 'nproc')).trim());
    assert.equal(vcpus(['--cpus', '1']), 1);
    assert.equal(vcpus([]), Math.min(2, availableParallelism()));
  });

  test('/etc/hostname and /etc/hosts name the instance, also with --read-only', () => {
    const out = ok(
      vmWith(
        ['--hostname', 'house1', '--read-only'],
        'sh',
        '-c',
        'hostname; cat /etc/hostname; grep -c "127.0.0.1.*localhost house1" /etc/hosts; touch /x 2>&1 || true',
      ),
    );
    const [name, file, hosts, readOnly] = out.trim().split('\n');
    assert.equal(name, 'house1');
    assert.equal(file, 'house1');
    assert.equal(hosts, '1');
    assert.match(readOnly ?? '', /Read-only file system/);
  });
});

describe('processes in a VM', () => {
  test('stdout and stderr stay apart; stdin reaches the process', () => {
    const result = abode.run(vm('sh', '-c', 'echo out; echo err >&2'));
    assert.equal(result.stdout, 'out\n');
    assert.equal(result.stderr, 'err\n');
    assert.equal(
      abode.run(['run', '--rm', '-i', '--isolation', 'vm', 'busybox', 'cat'], { input: 'piped\n' }).stdout,
      'piped\n',
    );
  });

  test("exit codes are the process's; a missing command is 127", () => {
    assert.equal(abode.run(vm('sh', '-c', 'exit 3')).code, 3);
    const missing = abode.run(vm('no-such-command'));
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /no-such-command/);
  });

  test('stop sends SIGTERM to the guest process; kill ends QEMU (137)', () => {
    ok([
      'run',
      '-d',
      '--name',
      'trap',
      '--isolation',
      'vm',
      'busybox',
      'sh',
      '-c',
      'trap "echo got TERM; exit 7" TERM; echo up; while true; do sleep 0.1; done',
    ]);
    let logs = '';
    for (let i = 0; i < 100 && !logs.includes('up'); i++) logs = ok(['logs', 'trap']);
    ok(['stop', 'trap']);
    assert.equal(ok(['wait', 'trap']).trim(), '7');
    assert.match(ok(['logs', 'trap']), /got TERM/);
    ok(['rm', 'trap']);

    ok(['run', '-d', '--name', 'killed', '--isolation', 'vm', 'busybox', 'sleep', '1000']);
    ok(['kill', 'killed']);
    assert.equal(ok(['wait', 'killed']).trim(), '137');
    ok(['rm', 'killed']);
  });

  test('QEMU ended from outside (SIGTERM) before the guest reported an exit: 255 and why, never 0', () => {
    const id = ok(['run', '-d', '--isolation', 'vm', 'busybox', 'sleep', '1000']).trim();
    const qemu = Number(ok(['inspect', '-f', '{{.State.Pid}}', id]).trim());
    assert.ok(processesOf('qemu-system', abode.root).includes(String(qemu)), `pid ${qemu} is QEMU`);
    process.kill(qemu, 'SIGTERM');
    assert.equal(ok(['wait', id]).trim(), '255');
    assert.match(ok(['inspect', '-f', '{{.State.Error}}', id]), /the VM stopped before its process exited/);
    ok(['rm', id]);
  });

  test('stop of a process that ignores SIGTERM: after the timeout the agent kills it, syncs and powers off', () => {
    ok([
      'run',
      '-d',
      '--name',
      'deaf',
      '--isolation',
      'vm',
      'busybox',
      'sh',
      '-c',
      'trap "" TERM; [ -f /kept ] || echo written > /kept; echo up; while true; do sleep 0.2; done',
    ]);
    let logs = '';
    for (let i = 0; i < 100 && !logs.includes('up'); i++) logs = ok(['logs', 'deaf']);
    const started = Date.now();
    ok(['stop', '-t', '1', 'deaf']);
    const took = Date.now() - started;
    assert.equal(ok(['wait', 'deaf']).trim(), '137');
    // the agent's power-off, not QEMU's SIGKILL 1.5 s later, ended it
    assert.ok(took < 2400, `stop took ${took} ms`);
    // what the guest wrote without a sync reached the disk (a killed QEMU would have lost it)
    ok(['start', 'deaf']);
    assert.equal(ok(['exec', 'deaf', 'cat', '/kept']), 'written\n');
    ok(['rm', '-f', 'deaf']);
  });

  test("QMP's system_powerdown (the guest's power button) asks the main process to stop", async () => {
    const id = ok([
      'run',
      '-d',
      '--name',
      'button',
      '--isolation',
      'vm',
      'busybox',
      'sh',
      '-c',
      'trap "echo asked to stop; exit 3" TERM; echo ready; while true; do sleep 1; done',
    ]).trim();
    try {
      for (let i = 0; i < 100 && !ok(['logs', 'button']).includes('ready'); i++) spawnSync('sleep', ['0.05']);
      const socket = join(abode.root, 'run', 'v', id.slice(0, 16), 'qmp.sock');
      await qmpRun(socket, [{ execute: 'system_powerdown' }]);
      assert.equal(ok(['wait', 'button']).trim(), '3');
      assert.equal(ok(['logs', 'button']), 'ready\nasked to stop\n');
    } finally {
      ok(['rm', '-f', 'button']);
    }
  });

  test("stats: QEMU's memory on the host against the guest's RAM", () => {
    ok([
      'run',
      '-d',
      '--name',
      'counted',
      '--isolation',
      'vm',
      '--memory',
      '192m',
      'busybox',
      'sleep',
      '1000',
    ]);
    const line = ok(['stats', '--no-stream', 'counted']).split('\n')[1] ?? '';
    assert.match(line, /\/ 192MiB/);
    ok(['rm', '-f', 'counted']);
  });

  test('-d, logs, exec, ps, inspect, stop, rm', () => {
    const id = ok([
      'run',
      '-d',
      '--name',
      'house',
      '--isolation',
      'vm',
      'busybox',
      'sh',
      '-c',
      'echo hello; while true; do sleep 1; done',
    ]).trim();
    let logs = '';
    for (let i = 0; i < 100 && !logs.includes('hello'); i++) logs = ok(['logs', 'house']);
    assert.equal(logs, 'hello\n');
    assert.match(ok(['ps']), /house/);
    assert.match(
      ok(['ps'])
        .split('\n')
        .find((l) => l.includes('house')) ?? '',
      /\bvm\b/,
    );
    // top shows the guest's processes (the agent is PID 1), not QEMU on the host
    const top = ok(['top', 'house']).split('\n');
    assert.match(top[0] ?? '', /^UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD/);
    assert.ok(
      top.some((line) => /^root\s+1\s+0\s.*\/init$/.test(line)),
      top.join('\n'),
    );
    assert.ok(
      top.some((line) => /sh -c echo hello; while true/.test(line)),
      top.join('\n'),
    );
    assert.ok(!top.some((line) => /qemu-system/.test(line)), top.join('\n'));
    assert.equal(ok(['exec', 'house', 'uname', '-r']).trim(), ok(vm('uname', '-r')).trim());
    assert.equal(abode.run(['exec', 'house', 'sh', '-c', 'exit 5']).code, 5);
    assert.equal(ok(['exec', 'house', 'hostname']).trim(), id.slice(0, 12));
    const inspect = JSON.parse(ok(['inspect', 'house']));
    assert.equal(inspect[0].State.Status, 'running');
    ok(['stop', '-t', '2', 'house']);
    assert.equal(JSON.parse(ok(['inspect', 'house']))[0].State.Status, 'exited');
    ok(['rm', 'house']);
    assert.equal(abode.run(['inspect', 'house']).code, 1);
  });

  test('restart runs the process again on the same disk, and the log goes on', () => {
    ok([
      'run',
      '-d',
      '--name',
      'again',
      '--isolation',
      'vm',
      'busybox',
      'sh',
      '-c',
      'echo started; sleep 1000',
    ]);
    try {
      ok(['exec', 'again', 'sh', '-c', 'echo kept > /kept']);
      ok(['restart', '-t', '1', 'again']);
      assert.equal(ok(['exec', 'again', 'cat', '/kept']), 'kept\n');
      let logs = '';
      for (let i = 0; i < 100 && logs !== 'started\nstarted\n'; i++) logs = ok(['logs', 'again']);
      assert.equal(logs, 'started\nstarted\n');
    } finally {
      ok(['rm', '-f', 'again']);
    }
  });

  test('a VM outlives a killed daemon', () => {
    ok(['run', '-d', '--name', 'survivor', '--isolation', 'vm', 'busybox', 'sleep', '1000']);
    abode.killDaemon();
    assert.match(ok(['ps']), /survivor/);
    assert.match(ok(['exec', 'survivor', 'uname', '-r']), /cloud-amd64/);
    ok(['rm', '-f', 'survivor']);
  });

  test('--rm leaves no QEMU process, disk, socket or cgroup', () => {
    ok(vm('true'));
    const snapshot = hostSnapshot(abode.root);
    assert.deepEqual(snapshot.shims, []);
    assert.deepEqual(snapshot.cgroups, []);
    assert.deepEqual(processesOf('qemu-system', abode.root), []);
    const instances = join(abode.root, 'instances');
    assert.deepEqual(existsSync(instances) ? readdirSync(instances) : [], []);
    const runDirs = join(abode.root, 'run', 'v');
    assert.deepEqual(existsSync(runDirs) ? readdirSync(runDirs) : [], []);
  });
});

/** Waits (a boot and a snapshot: seconds) for the daemon's template of the default machine; its holder's pid. */
function awaitTemplate(): number {
  return awaitTemplateDir().holderPid;
}

/** As awaitTemplate, with the template's directory (its state file). */
function awaitTemplateDir(): { holderPid: number; dir: string } {
  for (let i = 0; i < 300; i++) {
    const ready = readTemplateRecords(join(abode.root, 'run')).find(
      (t) => t.memoryMiB === 256 && alive(t.holderPid),
    );
    if (ready) return ready;
    spawnSync('sleep', ['0.1']);
  }
  assert.fail('no VM template was built within 30 s of a boot');
}

/** The runtime's record of a VM: was it restored from a template, and its QEMU. */
function vmRecord(id: string): { pid: number; restored?: boolean } {
  return JSON.parse(readFileSync(join(abode.root, 'run', 'v', id.slice(0, 16), 'state.json'), 'utf8')) as {
    pid: number;
    restored?: boolean;
  };
}

const rssKiB = (pid: number) =>
  Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('VMs restored from a template', () => {
  test("after a boot, VMs of that machine are restored: each with the host's clock and random numbers of its own", () => {
    ok(vm('true'));
    awaitTemplate();
    assert.match(ok(['info']), /VM Templates: on \(\d+ ready: .*256 MiB × 2 vCPUs, holding/);
    const ids = ['copy1', 'copy2'].map((name) =>
      ok(['run', '-d', '--name', name, '--isolation', 'vm', 'busybox', 'sleep', '1000']).trim(),
    );
    try {
      for (const id of ids) assert.equal(vmRecord(id).restored, true, `${id} was booted, not restored`);
      const guestClock = Number(ok(['exec', 'copy1', 'date', '+%s']).trim());
      assert.ok(Math.abs(guestClock - Date.now() / 1000) < 3, `the guest's clock says ${guestClock}`);
      const random = ['copy1', 'copy2'].map((name) =>
        ok(['exec', name, 'sh', '-c', 'head -c 16 /dev/urandom | od -An -tx1']),
      );
      assert.notEqual(random[0], random[1]);
      assert.match(ok(['exec', 'copy2', 'uname', '-r']), /cloud-amd64/);
      assert.equal(abode.run(['exec', 'copy2', 'sh', '-c', 'exit 7']).code, 7);
    } finally {
      ok(['rm', '-f', 'copy1', 'copy2']);
    }
  });

  test('a copy gives the memory its guest frees back to the host, and its template stays as it was', () => {
    const holder = awaitTemplate();
    const memory = readdirSync(`/proc/${holder}/fd`)
      .map((fd) => `/proc/${holder}/fd/${fd}`)
      .find((path) => statSync(path).size >= 128 * 2 ** 20)!;
    const before = sha256(memory);
    const id = ok(['run', '-d', '--name', 'spender', '--isolation', 'vm', 'busybox', 'sleep', '1000']).trim();
    try {
      const qemu = vmRecord(id).pid;
      ok(['exec', 'spender', 'dd', 'if=/dev/zero', 'of=/dev/shm/fill', 'bs=1M', 'count=96']);
      const full = rssKiB(qemu);
      ok(['exec', 'spender', 'rm', '/dev/shm/fill']);
      let now = full;
      for (let i = 0; i < 100 && now > full - 64 * 1024; i++) {
        spawnSync('sleep', ['0.1']);
        now = rssKiB(qemu);
      }
      assert.ok(
        now <= full - 64 * 1024,
        `QEMU kept ${now} KiB after the guest freed 96 MiB (${full} KiB full)`,
      );
      assert.equal(sha256(memory), before, "the template's memory changed");
    } finally {
      ok(['rm', '-f', 'spender']);
    }
  });

  test('a copy that cannot load its state boots instead, and the template is built again', () => {
    const { holderPid, dir } = awaitTemplateDir();
    writeFileSync(join(dir, 'state'), 'not a snapshot');
    const daemon = abode.daemonPid()!;
    const id = ok([
      'run',
      '-d',
      '--name',
      'fallback',
      '--isolation',
      'vm',
      'busybox',
      'sleep',
      '1000',
    ]).trim();
    try {
      assert.equal(vmRecord(id).restored, undefined);
      assert.match(ok(['exec', 'fallback', 'uname', '-r']), /cloud-amd64/);
      assert.equal(abode.daemonPid(), daemon);
      assert.ok(alive(daemon), 'the daemon died');
    } finally {
      ok(['rm', '-f', 'fallback']);
    }
    assert.notEqual(awaitTemplate(), holderPid);
  });

  test("without its template's holder, a VM boots (and a new template is built)", () => {
    const holder = awaitTemplate();
    process.kill(holder, 'SIGKILL');
    for (let i = 0; i < 50 && alive(holder); i++) spawnSync('sleep', ['0.02']);
    const id = ok(['run', '-d', '--name', 'booted', '--isolation', 'vm', 'busybox', 'sleep', '1000']).trim();
    try {
      assert.equal(vmRecord(id).restored, undefined);
      assert.match(ok(['exec', 'booted', 'uname', '-r']), /cloud-amd64/);
    } finally {
      ok(['rm', '-f', 'booted']);
    }
    assert.notEqual(awaitTemplate(), holder);
  });
});

describe('run options in a VM', () => {
  test('--kernel boots that kernel for this instance only', () => {
    const dir = join(abode.root, 'vm', 'kernel');
    const pkg = readdirSync(dir).find((f) => f.startsWith('linux-image-'));
    assert.ok(pkg, 'the Debian kernel is cached');
    const bzImage = join(dir, pkg, 'vmlinuz');
    const own = ok([
      'run',
      '--rm',
      '--isolation',
      'vm',
      '--kernel',
      bzImage,
      'busybox',
      'sh',
      '-c',
      'uname -r; cat /proc/cmdline',
    ]);
    assert.match(own, /cloud-amd64\n/);
    // the next VM boots the default kernel again (the PVH vmlinux, not the bzImage given above)
    const spec = abode.run(['run', '--rm', '--isolation', 'vm', 'busybox', 'true']);
    assert.equal(spec.code, 0);
  });

  test('--kernel that is not there is refused at create (125)', () => {
    const result = abode.run([
      'run',
      '--rm',
      '--isolation',
      'vm',
      '--kernel',
      '/nonexistent/bzImage',
      'busybox',
      'true',
    ]);
    assert.equal(result.code, 125);
    assert.match(result.stderr, /--kernel \/nonexistent\/bzImage: no such kernel image/);
    const container = abode.run(['run', '--rm', '--kernel', '/nonexistent/bzImage', 'busybox', 'true']);
    assert.equal(container.code, 125);
    assert.match(container.stderr, /--kernel needs --isolation vm/);
  });

  test('--read-only mounts the root disk read-only', () => {
    const result = abode.run(
      vmWith(['--read-only'], 'sh', '-c', 'touch /x || echo refused; touch /dev/shm/y && echo shm'),
    );
    assert.equal(result.code, 0);
    assert.equal(result.stdout, 'refused\nshm\n');
    assert.match(result.stderr, /Read-only file system/);
  });

  test('--tmpfs mounts a tmpfs whose size limit bites, also on a read-only root', () => {
    const result = abode.run(
      vmWith(
        ['--read-only', '--tmpfs', '/scratch:size=1m'],
        'sh',
        '-c',
        'grep " /scratch " /proc/mounts; echo small > /scratch/a && cat /scratch/a; dd if=/dev/zero of=/scratch/big bs=1k count=2048',
      ),
    );
    assert.notEqual(result.code, 0);
    assert.match(result.stdout, /^tmpfs \/scratch tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k/m);
    assert.match(result.stdout, /^small$/m);
    assert.match(result.stderr, /No space left on device/);
  });

  test('--memory below what a guest boots in is refused at create (125)', () => {
    const result = abode.run(['run', '--rm', '--isolation', 'vm', '--memory', '64m', 'busybox', 'true']);
    assert.equal(result.code, 125);
    assert.match(result.stderr, /a VM needs at least 128MiB of memory; --memory 64m is too little/);
  });

  test('-v shares a host directory both ways over virtio-fs; :ro refuses writes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'abode-vm-share-'));
    try {
      writeFileSync(join(dir, 'from-host'), 'host\n');
      const out = ok([
        'run',
        '--rm',
        '--isolation',
        'vm',
        '-v',
        `${dir}:/data`,
        'busybox',
        'sh',
        '-c',
        'cat /data/from-host; echo vm > /data/from-vm',
      ]);
      assert.equal(out, 'host\n');
      assert.equal(readFileSync(join(dir, 'from-vm'), 'utf8'), 'vm\n');

      // a running VM sees the host's new files
      ok([
        'run',
        '-d',
        '--name',
        'shared',
        '--isolation',
        'vm',
        '-v',
        `${dir}:/data`,
        'busybox',
        'sleep',
        '1000',
      ]);
      writeFileSync(join(dir, 'later'), 'later\n');
      assert.equal(ok(['exec', 'shared', 'cat', '/data/later']), 'later\n');
      ok(['rm', '-f', 'shared']);

      // :ro: the guest mounts it read-only, and the host refuses writes even after a remount
      const ro = abode.run([
        'run',
        '--rm',
        '--isolation',
        'vm',
        '-v',
        `${dir}:/data:ro`,
        'busybox',
        'sh',
        '-c',
        'cat /data/from-host; echo x > /data/a; mount -o remount,rw /data; echo x > /data/b',
      ]);
      assert.equal(ro.stdout, 'host\n');
      assert.equal((ro.stderr.match(/Read-only file system/g) ?? []).length, 2, ro.stderr);
      assert.ok(!existsSync(join(dir, 'a')) && !existsSync(join(dir, 'b')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('named volumes are shared too, and outlive the VM', () => {
    ok(['run', '--rm', '--isolation', 'vm', '-v', 'vmdata:/v', 'busybox', 'sh', '-c', 'echo kept > /v/f']);
    assert.equal(
      ok(['run', '--rm', '--isolation', 'vm', '-v', 'vmdata:/v', 'busybox', 'cat', '/v/f']),
      'kept\n',
    );
    assert.equal(ok(['run', '--rm', '-v', 'vmdata:/v', 'busybox', 'cat', '/v/f']), 'kept\n');
  });

  test('--rm with a volume leaves no virtiofsd behind', () => {
    const dir = mkdtempSync(join(tmpdir(), 'abode-vm-share-'));
    try {
      ok(['run', '--rm', '--isolation', 'vm', '-v', `${dir}:/data`, 'busybox', 'true']);
      assert.deepEqual(hostSnapshot(abode.root).cgroups, []);
      assert.deepEqual(processesOf('virtiofsd', abode.root), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('what VM isolation needs', () => {
  test('a missing QEMU says how to install it', () => {
    const other = new AbodeWithEnv({ ABODE_QEMU: '/nonexistent/qemu-system-x86_64' });
    try {
      const result = other.run(vm('true'));
      assert.equal(result.code, 125);
      assert.match(result.stderr, /apt-get install qemu-system-x86/);
    } finally {
      other.cleanup();
    }
  });

  test('a missing kernel says how to get one', () => {
    const other = new AbodeWithEnv({ ABODE_VM_KERNEL: '/nonexistent/vmlinuz' });
    try {
      const result = other.run(vm('true'));
      assert.equal(result.code, 125);
      assert.match(result.stderr, /\/nonexistent\/vmlinuz/);
      assert.match(result.stderr, /linux-image-cloud-amd64/);
      const pid = other.daemonPid();
      assert.ok(pid === undefined || alive(pid));
    } finally {
      other.cleanup();
    }
  });
});
