/**
 * Host directories shared into a VM over virtio-fs: one virtiofsd per share, serving a vhost-user
 * socket QEMU connects to. Each starts in the instance's cgroup (so it counts against the instance
 * and goes with it) and ends by itself when QEMU, its only client, disconnects. A read-only share
 * is served from a read-only bind mount in virtiofsd's own mount namespace, so the host refuses
 * writes whatever the guest does.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { InternalError, UnavailableError } from '../../core/errors.js';

/** Where Debian's QEMU (qemu-system-common) installs virtiofsd. */
export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

export interface Share {
  /** The virtio-fs tag the guest mounts by. */
  tag: string;
  /** The host directory. */
  source: string;
  readOnly: boolean;
  /** The vhost-user socket virtiofsd listens on. */
  socket: string;
  /** virtiofsd's stderr. */
  logPath: string;
}

// Joins the cgroup first (so every process virtiofsd forks is in it), then serves the share.
const LAUNCH = `for f in $ABODE_PROCS; do echo $$ > "$f" || exit 1; done
if [ "$ABODE_RO" = 1 ]; then
  exec unshare --mount --propagation private -- /bin/sh -c 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"' "$ABODE_SOURCE" "$@"
fi
exec "$@"`;

/** Starts virtiofsd for one share and waits for its socket; returns its pid. */
export async function startVirtiofsd(
  share: Share,
  procsFiles: string[],
  binary = VIRTIOFSD,
  timeoutMs = 5000,
): Promise<number> {
  if (!existsSync(binary))
    throw new UnavailableError(
      `virtiofsd (${binary}) is missing, and -v in a VM needs it: install it with apt-get install qemu-system-common`,
    );
  const log = openSync(share.logPath, 'a');
  const child = spawn(
    '/bin/sh',
    [
      '-c',
      LAUNCH,
      'virtiofsd',
      binary,
      `--socket-path=${share.socket}`,
      '-o',
      `source=${share.source}`,
      '-o',
      'cache=auto',
      '-o',
      'log_level=warn',
    ],
    {
      detached: true,
      stdio: ['ignore', 'ignore', log],
      env: {
        PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
        ABODE_PROCS: procsFiles.join(' '),
        ABODE_RO: share.readOnly ? '1' : '0',
        ABODE_SOURCE: share.source,
      },
    },
  );
  closeSync(log);
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  child.on('error', () => (exited = -1));
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(share.socket)) {
    if (exited !== undefined || Date.now() > deadline) {
      if (exited === undefined) child.kill('SIGKILL');
      const text = (await readFile(share.logPath, 'utf8').catch(() => '')).trim();
      throw new InternalError(
        `cannot share ${share.source} with the VM: virtiofsd ${exited === undefined ? 'did not start in time' : 'failed'}` +
          (text ? `: ${text.split('\n').slice(-3).join('; ')}` : ''),
      );
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return child.pid!;
}
