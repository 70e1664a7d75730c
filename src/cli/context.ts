import { spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
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

/** A client of the daemon; starts the daemon (detached, logging to the state root) when none answers. */
export async function connectDaemon(): Promise<CliContext> {
  const paths = resolvePaths(globalRoot ? { root: globalRoot } : {});
  const client = new Client(paths.socket);
  try {
    await client.call('GET', '/_ping');
    return { paths, client };
  } catch (error) {
    if (!(error instanceof DaemonUnreachableError)) throw error;
  }
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
      await client.call('GET', '/_ping');
      return { paths, client };
    } catch (error) {
      if (!(error instanceof DaemonUnreachableError)) throw error;
      if (child.exitCode !== null) break;
    }
  }
  throw new DaemonUnreachableError(
    `the abode daemon did not start; see ${join(paths.root, 'daemon.log')} (or run "abode daemon" in a terminal)`,
  );
}
