import { join } from 'node:path';

export interface AbodePaths {
  /** Durable state: images, instances, volumes, the database. */
  root: string;
  /** Runtime files: the API socket, the pid file, monitors' sockets. */
  runRoot: string;
  socket: string;
  pidFile: string;
}

/** The state root from --root / ABODE_ROOT (default /var/lib/abode); runtime files beside it unless set. */
export function resolvePaths(overrides: { root?: string; runRoot?: string } = {}): AbodePaths {
  const env = process.env;
  const root = overrides.root ?? env.ABODE_ROOT ?? '/var/lib/abode';
  const customRoot = overrides.root !== undefined || env.ABODE_ROOT !== undefined;
  const runRoot = overrides.runRoot ?? env.ABODE_RUN ?? (customRoot ? join(root, 'run') : '/run/abode');
  return { root, runRoot, socket: join(runRoot, 'abode.sock'), pidFile: join(runRoot, 'abode.pid') };
}
