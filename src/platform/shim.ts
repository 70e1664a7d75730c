/**
 * Spawning and talking to abode-shim, the per-instance monitor (native/). startShim writes the spec,
 * starts the shim detached (it outlives the daemon) and returns its ready line; shimRequest and
 * shimAttach speak the control socket (native/protocol.h).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';

import { AbodeError, type ErrorCode } from '../core/errors.js';
import { encodeShimSpec, type ShimExit, type ShimReady, type ShimSpec } from './native-protocol.js';

export type ShimStarted = Extract<ShimReady, { ok: true }>;

const ENOENT = 2;

/** The shim could not prepare the process: which step failed, with errno and path. */
export class ShimStartError extends AbodeError {
  readonly step: string;
  readonly errno: number;
  readonly path: string;
  constructor(failure: { step: string; errno: number; path: string; message: string }) {
    super(codeOf(failure.step, failure.errno), failure.message, {
      step: failure.step,
      errno: failure.errno,
      path: failure.path,
    });
    this.name = 'ShimStartError';
    this.step = failure.step;
    this.errno = failure.errno;
    this.path = failure.path;
  }
}

function codeOf(step: string, errno: number): ErrorCode {
  if (step === 'exec' && errno === ENOENT) return 'command_not_found';
  if (step === 'exec') return 'cannot_execute';
  if (step === 'chdir' || step === 'spec') return 'invalid_argument';
  return 'internal';
}

export interface StartShimOptions {
  shimPath: string;
  spec: ShimSpec;
  /** Where the encoded spec is written (the shim reads it at start). */
  specPath: string;
  /** The shim's own stderr (diagnostics), appended to. */
  stderrPath: string;
  /** A shim started with spawnStandbyShim, already in the instance's cgroups, to run the spec. */
  standby?: ChildProcess;
}

/**
 * Starts a shim that joins the cgroups whose cgroup.procs files are given (a v1 migration waits out an
 * RCU grace period, so this happens ahead of need) and then waits for startShim({ standby }).
 */
export function spawnStandbyShim(shimPath: string, procsFiles: string[], stderrPath: string): ChildProcess {
  const errFd = openSync(stderrPath, 'a', 0o640);
  try {
    const child = spawn(shimPath, ['--standby', ...procsFiles], {
      detached: true,
      stdio: ['pipe', 'pipe', errFd],
    });
    unrefProcess(child);
    return child;
  } finally {
    closeSync(errFd);
  }
}

/** Lets this process exit while `child` and its stdio pipes live on (a standby shim, a memory holder). */
export function unrefProcess(child: ChildProcess): void {
  child.unref();
  (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
}

/** Starts a shim and resolves once the process is prepared (or running); rejects with ShimStartError. */
export async function startShim(opts: StartShimOptions): Promise<ShimStarted> {
  writeFileSync(opts.specPath, encodeShimSpec(opts.spec), { mode: 0o600 });
  let child: ChildProcess;
  if (opts.standby) {
    child = opts.standby;
    // Waiting for its ready line must keep this process alive (the standby was unreferenced).
    child.ref();
    (child.stdout as unknown as { ref?: () => void }).ref?.();
    // A standby that has died fails on this write: its exit (no ready line) is what gets reported.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(`${opts.specPath}\n`);
  } else {
    const errFd = openSync(opts.stderrPath, 'a', 0o640);
    try {
      child = spawn(opts.shimPath, [opts.specPath], { detached: true, stdio: ['ignore', 'pipe', errFd] });
    } finally {
      closeSync(errFd);
    }
  }
  const stdout = child.stdout!;
  const line = await new Promise<string>((resolve, reject) => {
    let text = '';
    const done = (fn: () => void): void => {
      stdout.removeAllListeners('data');
      child.removeAllListeners('error');
      child.removeAllListeners('close');
      fn();
    };
    stdout.setEncoding('utf8');
    stdout.on('data', (chunk: string) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl >= 0) done(() => resolve(text.slice(0, nl)));
    });
    child.once('error', (e) => done(() => reject(e)));
    child.once('close', (code, signal) =>
      done(() => {
        if (text.includes('\n')) return resolve(text.slice(0, text.indexOf('\n')));
        let tail = '';
        try {
          tail = readFileSync(opts.stderrPath, 'utf8').trim().split('\n').slice(-3).join('; ');
        } catch {
          // no diagnostics
        }
        reject(
          new ShimStartError({
            step: 'shim',
            errno: 0,
            path: opts.shimPath,
            message: `abode-shim exited (${signal ?? code}) without a ready line${tail ? `: ${tail}` : ''}`,
          }),
        );
      }),
    );
  });
  stdout.destroy();
  let ready: ShimReady;
  try {
    ready = JSON.parse(line) as ShimReady;
  } catch {
    throw new ShimStartError({
      step: 'shim',
      errno: 0,
      path: opts.shimPath,
      message: `bad ready line: ${line}`,
    });
  }
  if (!ready.ok) {
    // The shim has cleaned up before printing a failure; let it finish exiting before reporting.
    if (child.exitCode === null && child.signalCode === null)
      await new Promise<void>((resolve) => child.once('exit', () => resolve()));
    throw new ShimStartError(ready);
  }
  child.unref();
  return ready;
}

/**
 * Sends one control line (start, signal N, resize R C, wait, state) and resolves with the reply line
 * (without its newline). `wait` resolves only when the process has exited.
 */
export function shimRequest(socketPath: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let text = '';
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(`${line}\n`));
    sock.on('data', (chunk: string) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        sock.destroy();
        resolve(text.slice(0, nl));
      }
    });
    sock.once('error', reject);
    sock.once('close', () =>
      reject(new Error(`abode-shim at ${socketPath} closed without a reply to ${line}`)),
    );
  });
}

/** Parses the reply of `wait` ("exit <json>"). */
export function parseWaitReply(reply: string): ShimExit {
  if (!reply.startsWith('exit ')) throw new Error(`unexpected wait reply: ${reply}`);
  return JSON.parse(reply.slice(5)) as ShimExit;
}

/**
 * Waits for the process's exit record: asks the shim, or reads exitPath when the shim has already
 * finished (it writes the record before it removes its socket).
 */
export async function shimWait(socketPath: string, exitPath: string): Promise<ShimExit> {
  try {
    return parseWaitReply(await shimRequest(socketPath, 'wait'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ECONNREFUSED' && code !== 'ECONNRESET') throw e;
    return JSON.parse(readFileSync(exitPath, 'utf8')) as ShimExit;
  }
}

/** Opens an attach connection; read frames with ShimFrameDecoder, write stdin to the socket. */
export function shimAttach(socketPath: string, opts: { stdin: boolean }): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.removeListener('error', reject);
      sock.write(`attach ${opts.stdin ? 1 : 0}\n`);
      resolve(sock);
    });
  });
}
