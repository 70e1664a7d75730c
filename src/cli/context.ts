import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, DaemonUnreachableError } from '../client/client.js';
import { resolvePaths, type AbodePaths } from '../core/paths.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export interface CliContext {
  paths: AbodePaths;
  client: Client;
}

let globalRoot: string | undefined;

/** --root from the command line (before the command). */
export function setGlobalRoot(root: string | undefined): void {
  globalRoot = root;
}

export function daemonEntry(): string {
  return join(repoRoot, 'dist/src/daemon/main.js');
}

/** A client of the daemon; the daemon is started (detached, logging to the state root) when none answers. */
export async function connectDaemon(): Promise<CliContext> {
  const paths = resolvePaths(globalRoot ? { root: globalRoot } : {});
  let started: Promise<void> | undefined;
  const start = () => (started ??= startDaemon(paths));
  // No socket at all: start the daemon now rather than after a failed request.
  if (!existsSync(paths.socket)) await start();
  return { paths, client: new Client(paths.socket, start) };
}

async function startDaemon(paths: AbodePaths): Promise<void> {
  const probe = new Client(paths.socket);
  mkdirSync(paths.root, { recursive: true });
  const logFd = openSync(join(paths.root, 'daemon.log'), 'a');
  const child = spawn(process.execPath, [daemonEntry(), ...(globalRoot ? ['--root', globalRoot] : [])], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
  });
  child.unref();
  const deadline = Date.now() + 15000;
  let delay = 10;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
    try {
      await probe.call('GET', '/_ping');
      return;
    } catch (error) {
      if (!(error instanceof DaemonUnreachableError)) throw error;
      if (child.exitCode !== null) break;
    }
  }
  throw new DaemonUnreachableError(
    `the abode daemon did not start; see ${join(paths.root, 'daemon.log')} (or run "abode daemon" in a terminal)`,
  );
}
