import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Abode } from './harness.js';

const abode = new Abode();
const ok = (args: string[], input?: string) => abode.ok(args, input);

before(() => {
  ok(['run', '--rm', 'busybox', 'true']);
});
after(() => abode.cleanup());

describe('looking at instances', () => {
  test('logs --tail, --timestamps and -f', async () => {
    ok([
      'run',
      '-d',
      '--name',
      'counter',
      'busybox',
      'sh',
      '-c',
      'for i in 1 2 3 4 5; do echo line$i; done; sleep 2; echo late',
    ]);
    let logs = '';
    for (let i = 0; i < 50 && !logs.includes('line5'); i++) logs = ok(['logs', 'counter']);
    assert.equal(ok(['logs', '--tail', '2', 'counter']), 'line4\nline5\n');
    assert.match(
      ok(['logs', '-t', '--tail', '1', 'counter']),
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line5\n$/,
    );
    // -f ends when the instance does, with the late line included.
    const followed = await abode.runAsync(['logs', '-f', 'counter']);
    assert.equal(followed.code, 0);
    assert.match(followed.stdout, /line5\nlate\n$/);
    ok(['rm', 'counter']);
  });

  test('stats --no-stream and top show the running instance', () => {
    ok(['run', '-d', '--name', 'busy', '--memory', '64m', 'busybox', 'sleep', '30']);
    const stats = ok(['stats', '--no-stream', 'busy']);
    assert.match(stats, /^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+PIDS$/m);
    assert.match(stats, /busy\s+\d+\.\d\d%\s+[\d.]+[KM]iB \/ 64MiB/);
    const top = ok(['top', 'busy']);
    assert.match(top, /^UID\s+PID\s+PPID/m);
    assert.match(top, /sleep 30/);
    assert.equal(ok(['stats', '--no-stream', '--format', '{{.Name}}', 'busy']).trim(), 'busy');
    ok(['rm', '-f', 'busy']);
  });

  test('ps and inspect take docker templates', () => {
    ok(['create', '--name', 'tmpl', '-e', 'K=V', 'busybox', 'echo', 'x']);
    assert.equal(ok(['ps', '-a', '--format', '{{.Names}}\t{{.State}}']).trim(), 'tmpl\tcreated');
    assert.equal(ok(['inspect', '--format', '{{json .Config.Cmd}}', 'tmpl']).trim(), '["echo","x"]');
    assert.equal(ok(['inspect', '--format', '{{index .Config.Env 0}}', 'tmpl']).trim(), 'K=V');
    const table = ok(['ps', '-a', '--format', 'table {{.Names}}\t{{.Isolation}}']);
    assert.match(table, /^NAMES\s+ISOLATION\ntmpl\s+container\n$/);
    const parsed = JSON.parse(ok(['inspect', 'tmpl']));
    assert.equal(parsed[0].Name, '/tmpl');
    assert.equal(parsed[0].State.Status, 'created');
    const bad = abode.run(['ps', '--format', '{{.Names']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /template/);
    ok(['rm', 'tmpl']);
  });

  test('info names the kernel, cgroup mode, storage and accelerator; version answers', () => {
    const info = ok(['info']);
    assert.match(
      info,
      new RegExp(`Kernel Version: ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}`),
    );
    assert.match(info, /Cgroup Version: (v1|v2|hybrid)/);
    assert.match(info, /Storage Driver: overlay/);
    assert.match(info, /VM Accelerator: (kvm|tcg) \(/);
    assert.match(ok(['version']), /Server:\n Version:\s+\d/);
  });

  test('every command has --help with an example', () => {
    const commands = [
      'run',
      'create',
      'start',
      'stop',
      'kill',
      'restart',
      'rm',
      'ps',
      'logs',
      'exec',
      'inspect',
      'wait',
      'stats',
      'top',
      'rename',
      'cp',
      'images',
      'pull',
      'push',
      'login',
      'logout',
      'tag',
      'rmi',
      'history',
      'save',
      'load',
      'import',
      'build',
      'info',
      'version',
      'daemon',
      'volume create',
      'volume ls',
      'volume rm',
      'volume inspect',
      'volume prune',
      'container prune',
      'container ls',
      'image prune',
      'image inspect',
      'system df',
    ];
    for (const command of commands) {
      const help = ok([...command.split(' '), '--help']);
      assert.match(help, /Usage: abode /, command);
      assert.match(help, /Example/, command);
    }
  });

  test('exec takes -e, -u and -w', () => {
    ok(['run', '-d', '--name', 'ex', 'busybox', 'sleep', '30']);
    assert.equal(
      ok([
        'exec',
        '-e',
        'A=7',
        '-u',
        'nobody',
        '-w',
        '/tmp',
        'ex',
        'sh',
        '-c',
        'echo $A $(id -un) $(pwd)',
      ]).trim(),
      '7 nobody /tmp',
    );
    assert.equal(ok(['exec', '-i', 'ex', 'cat'], 'piped\n'), 'piped\n');
    assert.equal(abode.run(['exec', 'ex', 'nope']).code, 127);
    ok(['rm', '-f', 'ex']);
    const stopped = abode.run(['exec', 'ex', 'true']);
    assert.equal(stopped.code, 1);
  });
});

describe('images', () => {
  test('import turns a root file system tar into an image that runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'abode-import-'));
    try {
      const rootfs = join(dir, 'rootfs');
      mkdirSync(join(rootfs, 'bin'), { recursive: true });
      // Borrow busybox from the built-in image's layer: a real static binary.
      const layer = ok(['run', '--rm', 'busybox', 'true']) === '' ? join(abode.root, 'layers') : '';
      const busybox = execFileSync('sh', ['-c', `ls -d ${layer}/*/fs/bin/busybox | head -1`], {
        encoding: 'utf8',
      }).trim();
      copyFileSync(busybox, join(rootfs, 'bin/busybox'));
      execFileSync('chmod', ['755', join(rootfs, 'bin/busybox')]);
      symlinkSync('busybox', join(rootfs, 'bin/sh'));
      symlinkSync('busybox', join(rootfs, 'bin/echo'));
      writeFileSync(join(rootfs, 'greeting'), 'imported\n');
      execFileSync('tar', ['-C', rootfs, '-cf', join(dir, 'rootfs.tar'), '.']);
      const id = ok([
        'import',
        join(dir, 'rootfs.tar'),
        'mine:1',
        '--change',
        'CMD ["/bin/sh", "-c", "echo $(cat /greeting)"]',
      ]).trim();
      assert.match(id, /^sha256:[0-9a-f]{64}$/);
      assert.match(ok(['images', '--format', '{{.Repository}}:{{.Tag}}']), /^mine:1$/m);
      assert.equal(ok(['run', '--rm', 'mine:1']), 'imported\n');
      const notTar = join(dir, 'not.tar');
      writeFileSync(notTar, 'this is not a tar file at all, not even close'.repeat(20));
      const bad = abode.run(['import', notTar, 'broken']);
      assert.notEqual(bad.code, 0);
      assert.doesNotMatch(ok(['images', '--format', '{{.Repository}}']), /broken/);
      ok(['rmi', 'mine:1']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
