/**
 * What every runtime built on abode-shim shares about one instance: its record in the run directory
 * (`RUN/<kind>/ID16/state.json`, so a restarted daemon finds it), the monitor's control requests,
 * exit records, state and wait with their fallbacks when the monitor has gone, and exec handles.
 * A runtime that reads more into an exit record (oomKilled, the OCI runtime's error) passes its own
 * `ExitOf`.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { OciSpec } from '../core/oci.js';
import type { ExecHandle, ExitStatus, RuntimeState } from '../core/runtime.js';
import { ConflictError, InternalError, NotFoundError } from '../core/errors.js';
import type { ShimExit, ShimSpec } from '../platform/native-protocol.js';
import { shimAttach, shimRequest, shimWait, startShim, type ShimStarted } from '../platform/shim.js';

/** What a runtime remembers of every instance, beside its bundle; runtimes add their own fields. */
export interface ShimInstanceFiles {
  bundleDir: string;
  runDir: string;
  /** The monitor's child: the instance's process (container), `<binary> run` (oci), QEMU (vm). */
  pid: number;
  shimPid: number;
  socketPath: string;
  exitPath: string;
}

/** Turns the monitor's exit record into the runtime's exit status. */
export type ExitOf = (record: ShimExit) => ExitStatus | Promise<ExitStatus>;

/**
 * The part of a Runtime that every runtime on abode-shim does alike: the instance's record, state,
 * wait, attach and resize. A runtime names its run directory (`runRoot/kind/ID16`) and may read more
 * into exit records (exitOf) or report another pid for a running instance (runningPid).
 */
export abstract class ShimRuntime<F extends ShimInstanceFiles> {
  constructor(
    private readonly runRoot: string,
    /** One letter per runtime: `c` container, `o` oci, `v` vm. */
    private readonly kind: string,
  ) {}

  protected runDir(id: string): string {
    // Socket paths have a 108-byte limit, so the run directory uses a short prefix of the id.
    return join(this.runRoot, this.kind, id.slice(0, 16));
  }

  /** The instance's record; NotFoundError when the runtime has none. */
  protected async files(id: string): Promise<F> {
    try {
      return JSON.parse(await readFile(join(this.runDir(id), 'state.json'), 'utf8')) as F;
    } catch {
      throw new NotFoundError(`instance ${id} has no runtime state`);
    }
  }

  protected async saveFiles(files: F): Promise<void> {
    await writeFile(join(files.runDir, 'state.json'), JSON.stringify(files));
  }

  /** The instance's OCI spec, as the engine wrote it (the bundle's config.json). */
  protected async bundleSpec(files: F): Promise<OciSpec> {
    return JSON.parse(await readFile(join(files.bundleDir, 'config.json'), 'utf8')) as OciSpec;
  }

  /** How an exit record of this instance becomes its exit status. */
  protected exitOf(_files: F): ExitOf {
    return fromShimExit;
  }

  /** The pid state() reports for a running instance; the monitor's child unless the runtime knows better. */
  protected runningPid(_id: string, childPid: number): Promise<number> | number {
    return childPid;
  }

  async state(id: string): Promise<RuntimeState> {
    const files = await this.files(id);
    return monitorState(files, this.exitOf(files), async (pid) => this.runningPid(id, pid));
  }

  async wait(id: string): Promise<ExitStatus> {
    const files = await this.files(id);
    try {
      return await this.exitOf(files)(await shimWait(files.socketPath, files.exitPath));
    } catch {
      // the monitor is gone without a record
    }
    const state = await this.state(id);
    if (state.status === 'stopped') return state.exit;
    throw new InternalError(`lost contact with the monitor of ${id}`);
  }

  async attach(id: string, opts: { stdin: boolean }): Promise<Duplex> {
    return shimAttach((await this.files(id)).socketPath, opts);
  }

  async resize(id: string, rows: number, cols: number): Promise<void> {
    await resizeMonitor((await this.files(id)).socketPath, rows, cols);
  }
}

/** Where an exec's monitor keeps its files: `exec-ID12` in the instance's run directory (made here). */
export async function makeExecDir(files: ShimInstanceFiles, execId: string): Promise<string> {
  const dir = join(files.runDir, `exec-${execId.slice(0, 12)}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** An exec monitor's log, exit record and socket in its directory. */
export function execMonitorPaths(dir: string): Pick<ShimSpec, 'logPath' | 'exitPath' | 'socketPath'> {
  return {
    logPath: join(dir, 'exec.log'),
    exitPath: join(dir, 'exit.json'),
    socketPath: join(dir, 'exec.sock'),
  };
}

/** Starts a monitor whose spec and diagnostics go in `dir` (spec.bin, shim.stderr). */
export function startMonitorIn(
  shimPath: string,
  dir: string,
  spec: ShimSpec,
  standby?: ChildProcess,
): Promise<ShimStarted> {
  return startShim({
    shimPath,
    spec,
    specPath: join(dir, 'spec.bin'),
    stderrPath: join(dir, 'shim.stderr'),
    ...(standby ? { standby } : {}),
  });
}

/**
 * Starts an exec's monitor (after `prepare`, when given) and returns its handle; on failure removes
 * the exec's directory and throws `failure(error)`.
 */
export async function startExec(
  shimPath: string,
  execId: string,
  dir: string,
  spec: ShimSpec,
  opts: ExecHandleOptions & {
    /** The error to throw when the monitor could not prepare the process. */
    failure: (error: unknown) => Error;
    /** What to do in the exec's directory before its monitor starts. */
    prepare?: () => Promise<void>;
  },
): Promise<ExecHandle> {
  try {
    await opts.prepare?.();
    await startMonitorIn(shimPath, dir, spec);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw opts.failure(error);
  }
  return monitorExecHandle(execId, spec.socketPath, spec.exitPath, opts);
}

/** The exit status of the monitor's record, as docker reports it (oomKilled is for the runtime to add). */
export function fromShimExit(record: ShimExit): ExitStatus {
  return {
    exitCode: record.exitCode,
    signal: record.signal,
    oomKilled: false,
    finishedAt: record.finishedAt,
    ...(record.error ? { error: record.error } : {}),
  };
}

/** The exit record at `path`, or undefined when there is none (yet). */
async function readExit(path: string, exitOf: ExitOf = fromShimExit): Promise<ExitStatus | undefined> {
  try {
    return await exitOf(JSON.parse(await readFile(path, 'utf8')) as ShimExit);
  } catch {
    return undefined;
  }
}

/** What is left to say of an instance whose monitor died without recording an exit status. */
function monitorLostExit(): ExitStatus {
  return {
    exitCode: 255,
    signal: 0,
    oomKilled: false,
    finishedAt: new Date().toISOString(),
    error: 'the instance monitor (abode-shim) died without recording an exit status',
  };
}

/** Releases a held process; `failure` says why the monitor refused. */
export async function startMonitor(
  socketPath: string,
  failure: (reply: string) => Error | Promise<Error>,
): Promise<void> {
  const reply = await shimRequest(socketPath, 'start');
  if (!reply.startsWith('ok')) throw await failure(reply);
}

/** The failure of a start the monitor refused (it was started already, or has ended). */
export function startConflict(what: string): (reply: string) => Error {
  return (reply) => new ConflictError(`cannot start ${what}: ${reply.trim()}`);
}

export async function signalMonitor(socketPath: string, signal: number): Promise<void> {
  await shimRequest(socketPath, `signal ${signal}`);
}

export async function resizeMonitor(socketPath: string, rows: number, cols: number): Promise<void> {
  await shimRequest(socketPath, `resize ${rows} ${cols}`);
}

/**
 * An instance's state: its exit record, else what the monitor says (`runningPid` may name another
 * process than the monitor's child), else the record it left meanwhile, else a lost monitor.
 */
async function monitorState(
  files: ShimInstanceFiles,
  exitOf: ExitOf = fromShimExit,
  runningPid?: (childPid: number) => Promise<number>,
): Promise<RuntimeState> {
  const exit = await readExit(files.exitPath, exitOf);
  if (exit) return { status: 'stopped', exit };
  try {
    const reply = (await shimRequest(files.socketPath, 'state')).trim();
    const [status, rest] = [reply.split(' ')[0], reply.slice(reply.indexOf(' ') + 1)];
    if (status === 'created') return { status, pid: Number(rest) };
    if (status === 'running')
      return { status, pid: runningPid ? await runningPid(Number(rest)) : Number(rest) };
    if (status === 'exited') return { status: 'stopped', exit: await exitOf(JSON.parse(rest) as ShimExit) };
  } catch {
    // fall through: the monitor is gone and left no exit record
  }
  const late = await readExit(files.exitPath, exitOf);
  if (late) return { status: 'stopped', exit: late };
  return { status: 'stopped', exit: monitorLostExit() };
}

export interface ExecHandleOptions {
  exitOf?: ExitOf;
  /** Why start failed; default a ConflictError. */
  startFailure?: (reply: string) => Error | Promise<Error>;
  /** How to signal the process; default through the monitor. */
  kill?: (signal: number) => Promise<void>;
}

/** The handle of an exec'd process held by its own monitor (socket `socketPath`, record `exitPath`). */
function monitorExecHandle(
  execId: string,
  socketPath: string,
  exitPath: string,
  opts: ExecHandleOptions,
): ExecHandle {
  const exitOf = opts.exitOf ?? fromShimExit;
  return {
    id: execId,
    attach: (attachOpts) => shimAttach(socketPath, attachOpts),
    start: () => startMonitor(socketPath, opts.startFailure ?? startConflict(`exec ${execId}`)),
    wait: async () => {
      try {
        return await exitOf(await shimWait(socketPath, exitPath));
      } catch {
        // monitor gone; fall back to its record
      }
      const exit = await readExit(exitPath, exitOf);
      if (exit) return exit;
      throw new InternalError(`lost contact with exec ${execId}`);
    },
    resize: (rows, cols) => resizeMonitor(socketPath, rows, cols),
    kill: opts.kill ?? ((signal) => signalMonitor(socketPath, signal)),
  };
}
