import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Abode, repoRoot } from './harness.js';

const abode = new Abode();
const session = `abode-tty-${process.pid}`;
const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-p', '-t', session);

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}; screen:\n${screen()}`);
}

before(() => {
  assert.equal(abode.run(['run', '--rm', 'busybox', 'true']).code, 0);
});
after(() => {
  spawnSync('tmux', ['kill-session', '-t', session]);
  abode.cleanup();
});

for (const isolation of ['container', 'vm']) {
  test(`-it gives the process a real terminal that follows resizes, and the exit code comes back (${isolation})`, async () => {
    // the first VM of this root fetches the kernel and builds its disk: before the screen is watched
    if (isolation === 'vm')
      assert.equal(abode.run(['run', '--rm', '--isolation', 'vm', 'busybox', 'true']).code, 0);
    const cli = `env -u NODE_EXTRA_CA_CERTS ABODE_ROOT=${abode.root} ${process.execPath} ${join(repoRoot, 'dist/src/cli/main.js')}`;
    tmux(
      'new-session',
      '-d',
      '-s',
      session,
      '-x',
      '100',
      '-y',
      '30',
      `${cli} run -it --rm --isolation ${isolation} busybox sh; echo "exit=$?"; sleep 30`,
    );
    try {
      await until(() => /#\s*$/m.test(screen()), 'the shell prompt');
      tmux('send-keys', '-t', session, 'tty; stty size', 'Enter');
      await until(() => /^30 100\s*$/m.test(screen()), 'stty size 30 100');
      assert.match(screen(), /\/dev\/pts\/0/);
      tmux('resize-window', '-t', session, '-x', '120', '-y', '40');
      // The resize travels CLI → daemon → monitor while the shell waits: ask until the new size shows.
      let asked = 0;
      await until(() => {
        if (/^40 120\s*$/m.test(screen())) return true;
        if (asked++ % 5 === 0) tmux('send-keys', '-t', session, 'stty size', 'Enter');
        return false;
      }, 'stty size 40 120 after the resize');
      tmux('send-keys', '-t', session, 'exit 6', 'Enter');
      await until(() => /exit=6/.test(screen()), 'the exit code');
    } finally {
      spawnSync('tmux', ['kill-session', '-t', session]);
    }
  });
}
