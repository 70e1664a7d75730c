import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Abode, hostSnapshot } from './harness.js';

const abode = new Abode();
const ok = (args: string[], input?: string) => abode.ok(args, input);

before(() => {
  // The first run builds the busybox image and starts the daemon.
  ok(['run', '--rm', 'busybox', 'true']);
});
after(() => abode.cleanup());

describe('isolation inside a container', () => {
  test('the process is PID 1 and sees only its own processes', () => {
    const out = ok(['run', '--rm', 'busybox', 'sh', '-c', 'echo $$; ls /proc | grep -c "^[0-9]"']);
    const [pid, count] = out.trim().split('\n');
    assert.equal(pid, '1');
    assert.ok(Number(count) <= 3, `saw ${count} processes`);
  });

  test('its hostname is its own (the id prefix, or --hostname)', () => {
    assert.equal(ok(['run', '--rm', '--hostname', 'flat7', 'busybox', 'hostname']).trim(), 'flat7');
    const id = ok(['run', '-d', 'busybox', 'sleep', '30']).trim();
    assert.equal(ok(['exec', id, 'hostname']).trim(), id.slice(0, 12));
    ok(['rm', '-f', id]);
  });

  test("the host's mounts and files are invisible", () => {
    const marker = join(tmpdir(), `abode-host-secret-${process.pid}`);
    writeFileSync(marker, 'secret');
    try {
      const result = abode.run(['run', '--rm', 'busybox', 'sh', '-c', `cat /proc/mounts; ls ${marker}`]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /No such file or directory/);
      const inside = new Set(result.stdout.split('\n').map((line) => line.split(' ')[1]));
      const shared = ['/', '/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys'];
      const hostOnly = readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .map((line) => line.split(' ')[1])
        .filter(
          (point) =>
            point && !shared.includes(point) && !point.startsWith('/proc/') && !point.startsWith('/sys/'),
        );
      assert.ok(hostOnly.length > 0);
      for (const point of hostOnly)
        assert.ok(!inside.has(point), `the host's mount ${point} is visible inside`);
    } finally {
      rmSync(marker, { force: true });
    }
  });

  test("only the loopback interface exists; --network host shares the host's", () => {
    assert.equal(ok(['run', '--rm', 'busybox', 'ls', '/sys/class/net']).trim(), 'lo');
    const host = readdirSync('/sys/class/net').sort();
    assert.deepEqual(
      ok(['run', '--rm', '--network', 'host', 'busybox', 'ls', '/sys/class/net']).trim().split(/\s+/).sort(),
      host,
    );
    const bad = abode.run(['run', '--rm', '--network', 'bridge', 'busybox', 'true']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /--network "bridge"/);
  });

  test('a memory hog is killed at the limit: exit 137 and OOMKilled in inspect', () => {
    const result = abode.run([
      'run',
      '--name',
      'hog',
      '--memory',
      '16m',
      'busybox',
      'sh',
      '-c',
      'dd if=/dev/zero of=/dev/null bs=64M count=1',
    ]);
    assert.equal(result.code, 137, result.stderr);
    assert.equal(
      ok(['inspect', '--format', '{{.State.OOMKilled}} {{.State.ExitCode}}', 'hog']).trim(),
      'true 137',
    );
    ok(['rm', 'hog']);
  });

  test('a fork bomb stops at the pids limit', () => {
    const result = abode.run([
      'run',
      '--rm',
      '--pids-limit',
      '8',
      'busybox',
      'sh',
      '-c',
      'n=0; for i in $(seq 1 30); do sleep 3 & n=$((n+1)); done 2>/dev/null; echo started; ls /proc | grep -c "^[0-9]"',
    ]);
    const count = Number(result.stdout.trim().split('\n').pop());
    assert.ok(count <= 8, `saw ${count} processes with --pids-limit 8`);
  });

  test('a syscall outside the seccomp profile fails with EPERM (allowed when unconfined)', () => {
    const denied = abode.run(['run', '--rm', 'busybox', 'unshare', '-U', 'true']);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Operation not permitted/);
    assert.equal(
      abode.run(['run', '--rm', '--security-opt', 'seccomp=unconfined', 'busybox', 'unshare', '-U', 'true'])
        .code,
      0,
    );
  });

  test('mount, settimeofday and module loading are refused without --privileged', () => {
    const mount = abode.run(['run', '--rm', 'busybox', 'sh', '-c', 'mkdir -p /m && mount -t tmpfs none /m']);
    assert.notEqual(mount.code, 0);
    assert.match(mount.stderr, /permission denied|Operation not permitted/i);
    // busybox's date reports the refusal but exits 0: the message is what the user sees.
    const date = abode.run(['run', '--rm', 'busybox', 'date', '-s', '2001-01-01']);
    assert.match(date.stderr, /can't set date: Operation not permitted/);
    const insmod = abode.run(['run', '--rm', 'busybox', 'sh', '-c', 'echo x > /tmp/m.ko; insmod /tmp/m.ko']);
    assert.notEqual(insmod.code, 0);
    assert.match(insmod.stderr, /Operation not permitted/);
    assert.equal(
      ok([
        'run',
        '--rm',
        '--privileged',
        'busybox',
        'sh',
        '-c',
        'mkdir -p /m && mount -t tmpfs none /m && echo mounted',
      ]).trim(),
      'mounted',
    );
  });

  test('--read-only refuses writes; --tmpfs and volumes stay writable', () => {
    const result = abode.run(['run', '--rm', '--read-only', 'busybox', 'touch', '/x']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /Read-only file system/);
    assert.equal(
      ok([
        'run',
        '--rm',
        '--read-only',
        '--tmpfs',
        '/scratch',
        'busybox',
        'sh',
        '-c',
        'touch /scratch/x && echo ok',
      ]).trim(),
      'ok',
    );
  });

  test('--user runs as that user; docker default capabilities only', () => {
    assert.equal(ok(['run', '--rm', '--user', '65534:65534', 'busybox', 'id', '-u']).trim(), '65534');
    assert.equal(ok(['run', '--rm', '--user', 'nobody', 'busybox', 'id', '-un']).trim(), 'nobody');
    const caps = ok(['run', '--rm', 'busybox', 'grep', 'CapBnd', '/proc/self/status']).trim();
    assert.equal(caps, 'CapBnd:\t00000000a80425fb');
    const nnp = ok(['run', '--rm', 'busybox', 'grep', 'NoNewPrivs', '/proc/self/status']).trim();
    assert.equal(nnp, 'NoNewPrivs:\t1');
  });
});

describe('security options', () => {
  test('--cap-drop and --cap-add change what the process may do', () => {
    const dropped = abode.run(['run', '--rm', '--cap-drop', 'CHOWN', 'busybox', 'chown', 'nobody', '/tmp']);
    assert.notEqual(dropped.code, 0);
    assert.match(dropped.stderr, /Operation not permitted/);
    assert.equal(ok(['run', '--rm', 'busybox', 'chown', 'nobody', '/tmp']), '');
    const added = ok([
      'run',
      '--rm',
      '--cap-add',
      'SYS_ADMIN',
      'busybox',
      'sh',
      '-c',
      'mkdir -p /m && mount -t tmpfs none /m && echo mounted',
    ]);
    assert.equal(added.trim(), 'mounted');
    const unknown = abode.run(['run', '--rm', '--cap-add', 'NOT_A_CAP', 'busybox', 'true']);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /NOT_A_CAP/);
  });

  test('--security-opt seccomp=PROFILE.json applies a docker-format profile', () => {
    const dir = mkdtempSync(join(tmpdir(), 'abode-seccomp-'));
    const profile = join(dir, 'deny-mkdir.json');
    writeFileSync(
      profile,
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }],
      }),
    );
    try {
      const denied = abode.run([
        'run',
        '--rm',
        '--security-opt',
        `seccomp=${profile}`,
        'busybox',
        'mkdir',
        '/tmp/x',
      ]);
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /Permission denied/);
      const missing = abode.run([
        'run',
        '--rm',
        '--security-opt',
        'seccomp=/no/such.json',
        'busybox',
        'true',
      ]);
      assert.equal(missing.code, 125);
      assert.match(missing.stderr, /no\/such\.json/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('exit codes and signals', () => {
  test("the process's exit code is abode's", () => {
    assert.equal(abode.run(['run', '--rm', 'busybox', 'sh', '-c', 'exit 3']).code, 3);
  });

  test('a command that does not exist exits 127; one that cannot be executed 126; engine errors 125', () => {
    const before = hostSnapshot(abode.root);
    const missing = abode.run(['run', '--rm', 'busybox', 'no-such-command']);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /no-such-command.*executable file not found/);
    assert.equal(missing.stderr.trim().split('\n').length, 1);
    const notExec = abode.run(['run', 'busybox', '/etc/passwd']);
    assert.equal(notExec.code, 126);
    const badFlag = abode.run(['run', '--memory', '12q', 'busybox', 'true']);
    assert.equal(badFlag.code, 125);
    assert.match(badFlag.stderr, /12q/);
    const noImage = abode.run(['run', 'no-such-image', 'true']);
    assert.equal(noImage.code, 125);
    assert.deepEqual(hostSnapshot(abode.root), before, 'a failed run left mounts, cgroups or processes');
    assert.equal(ok(['ps', '-aq']).trim(), '', 'a failed run left an instance');
  });

  test('kill -s TERM gives 143 (through --init), SIGKILL 137; stop kills a process ignoring TERM after -t', () => {
    // PID 1 ignores signals it has no handler for, as in docker, so TERM goes through --init here.
    const id = ok(['run', '-d', '--init', 'busybox', 'sleep', '60']).trim();
    ok(['kill', '-s', 'TERM', id]);
    assert.equal(ok(['wait', id]).trim(), '143');
    const killed = ok(['run', '-d', 'busybox', 'sleep', '60']).trim();
    ok(['kill', killed]);
    assert.equal(ok(['wait', killed]).trim(), '137');
    ok(['rm', killed]);
    const stubborn = ok([
      'run',
      '-d',
      'busybox',
      'sh',
      '-c',
      'trap "" TERM; while true; do sleep 1; done',
    ]).trim();
    ok(['stop', '-t', '1', stubborn]);
    assert.equal(ok(['inspect', '--format', '{{.State.ExitCode}}', stubborn]).trim(), '137');
    ok(['rm', id, stubborn]);
  });

  test('signals sent to an attached run reach the process (docker --sig-proxy)', async () => {
    const running = abode.runAsync(['run', '--rm', '--init', 'busybox', 'sh', '-c', 'echo ready; sleep 30']);
    let id = '';
    for (let i = 0; i < 100 && !id; i++) {
      await new Promise((r) => setTimeout(r, 100));
      id = abode.run(['ps', '-q']).stdout.trim();
    }
    assert.ok(id, 'the instance did not start');
    const cli = readFileSync('/proc/self/status', 'utf8') ? findCli(id) : 0;
    assert.ok(cli > 0, 'no attached CLI process found');
    process.kill(cli, 'SIGTERM');
    const result = await running;
    assert.equal(result.code, 143);
  });

  test('--init reaps and forwards signals', () => {
    const id = ok(['run', '-d', '--init', 'busybox', 'sleep', '60']).trim();
    assert.equal(ok(['exec', id, 'cat', '/proc/1/comm']).trim() !== 'sleep', true);
    ok(['stop', '-t', '5', id]);
    assert.equal(ok(['inspect', '--format', '{{.State.ExitCode}}', id]).trim(), '143');
    ok(['rm', id]);
  });
});

describe('lifecycle', () => {
  test('-d then logs, exec, stop, rm', () => {
    const id = ok([
      'run',
      '-d',
      '--name',
      'web',
      'busybox',
      'sh',
      '-c',
      'echo out; echo err >&2; while true; do sleep 1; done',
    ]).trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    let logs = abode.run(['logs', 'web']);
    for (let i = 0; i < 20 && !logs.stdout.includes('out'); i++) logs = abode.run(['logs', 'web']);
    assert.equal(logs.stdout, 'out\n');
    assert.equal(logs.stderr, 'err\n');
    assert.equal(ok(['exec', 'web', 'sh', '-c', 'echo $$ > /dev/null; echo inside']).trim(), 'inside');
    assert.equal(abode.run(['exec', 'web', 'sh', '-c', 'exit 5']).code, 5);
    assert.match(ok(['ps', '--format', '{{.Names}} {{.Status}}']), /^web Up /m);
    const rm = abode.run(['rm', 'web']);
    assert.equal(rm.code, 1);
    assert.match(rm.stderr, /cannot remove a running container/);
    ok(['stop', '-t', '1', 'web']);
    assert.match(ok(['ps', '-a', '--format', '{{.Names}} {{.Status}}']), /^web Exited \((137|143)\)/m);
    ok(['rm', 'web']);
    assert.equal(abode.run(['inspect', 'web']).code, 1);
  });

  test('a name already taken is refused with docker exit code 125', () => {
    ok(['create', '--name', 'taken', 'busybox', 'true']);
    const again = abode.run(['run', '--name', 'taken', 'busybox', 'true']);
    assert.equal(again.code, 125);
    assert.match(again.stderr, /already in use/);
    ok(['rm', 'taken']);
  });

  test('create, start -a, restart, rename, wait, container prune', () => {
    ok(['create', '--name', 'job', 'busybox', 'sh', '-c', 'echo ran; exit 4']);
    const started = abode.run(['start', '-a', 'job']);
    assert.equal(started.stdout, 'ran\n');
    assert.equal(started.code, 4);
    ok(['rename', 'job', 'job2']);
    ok(['restart', 'job2']);
    assert.equal(ok(['inspect', '--format', '{{.RestartCount}}', 'job2']).trim(), '1');
    assert.match(ok(['logs', 'job2']), /^ran\nran\n$/);
    assert.equal(ok(['wait', 'job2']).trim(), '4');
    ok(['container', 'prune', '-f']);
    assert.equal(ok(['ps', '-aq']).trim(), '');
  });

  test('environment, workdir, entrypoint and volumes as docker combines them', () => {
    const out = ok([
      'run',
      '--rm',
      '-e',
      'A=1',
      '-w',
      '/tmp',
      'busybox',
      'sh',
      '-c',
      'echo $A $(pwd) $HOSTNAME',
    ]);
    assert.match(out, /^1 \/tmp [0-9a-f]{12}\n$/);
    assert.equal(ok(['run', '--rm', '--entrypoint', 'echo', 'busybox', 'hi']).trim(), 'hi');
    const dir = mkdtempSync(join(tmpdir(), 'abode-vol-'));
    writeFileSync(join(dir, 'in'), 'from host');
    ok(['run', '--rm', '-v', `${dir}:/data`, 'busybox', 'sh', '-c', 'cat /data/in > /data/out']);
    assert.equal(readFileSync(join(dir, 'out'), 'utf8'), 'from host');
    const ro = abode.run(['run', '--rm', '-v', `${dir}:/data:ro`, 'busybox', 'touch', '/data/x']);
    assert.notEqual(ro.code, 0);
    rmSync(dir, { recursive: true });
    ok(['volume', 'create', 'keep']);
    ok(['run', '--rm', '-v', 'keep:/k', 'busybox', 'sh', '-c', 'echo saved > /k/f']);
    assert.equal(ok(['run', '--rm', '-v', 'keep:/k', 'busybox', 'cat', '/k/f']).trim(), 'saved');
    assert.match(ok(['volume', 'ls', '--format', '{{.Name}}']), /^keep$/m);
    ok(['volume', 'rm', 'keep']);
  });

  test('stdin with -i reaches the process', () => {
    assert.equal(ok(['run', '--rm', '-i', 'busybox', 'tr', 'a-z', 'A-Z'], 'hello\n'), 'HELLO\n');
  });
});

describe('the daemon', () => {
  test('instances survive a daemon killed with SIGKILL: instances, logs and exit codes are all there', () => {
    const runner = ok([
      'run',
      '-d',
      '--name',
      'runner',
      'busybox',
      'sh',
      '-c',
      'while true; do echo tick; sleep 1; done',
    ]).trim();
    ok(['run', '-d', '--name', 'quitter', 'busybox', 'sh', '-c', 'sleep 2; echo bye; exit 7']);
    abode.killDaemon();
    // The quitter ends while no daemon runs.
    const deadline = Date.now() + 6000;
    while (Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    assert.equal(
      ok(['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'quitter']).trim(),
      'exited 7',
    );
    assert.equal(ok(['logs', 'quitter']), 'bye\n');
    assert.equal(ok(['inspect', '--format', '{{.State.Status}}', 'runner']).trim(), 'running');
    assert.match(ok(['logs', 'runner']), /tick\n/);
    ok(['stop', '-t', '1', runner]);
    assert.equal(ok(['inspect', '--format', '{{.State.Status}}', 'runner']).trim(), 'exited');
    ok(['rm', 'runner', 'quitter']);
  });
});

/** The pid of the attached `abode run` CLI process of this test's root. */
function findCli(_id: string): number {
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      if (
        cmdline.some((a) => a.endsWith('cli/main.js')) &&
        cmdline.includes('run') &&
        environ.includes(abode.root)
      ) {
        return Number(pid);
      }
    } catch {
      // gone
    }
  }
  return 0;
}
