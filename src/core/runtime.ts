import type { Duplex } from 'node:stream';
import type { OciProcess, OciSpec } from './oci.js';
import type { Mount } from './image.js';

/** What a runtime can do beyond the lifecycle every runtime has; the engine asks this, never the runtime's name. */
/** `top`'s answer, as docker's API gives it: column titles, and a row of strings per process. */
export interface ProcessTable {
  Titles: string[];
  Processes: string[][];
}

/** `top`'s columns, as `ps -ef` has them (docker's default). */
export const PROCESS_TABLE_TITLES = ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD'];

export interface RuntimeCapabilities {
  exec: boolean;
  pty: boolean;
  stats: boolean;
  top: boolean;
}

/** How a process ended, docker's way. */
export interface ExitStatus {
  /** The process's exit code, or 128+signal. */
  exitCode: number;
  signal: number;
  oomKilled: boolean;
  finishedAt: string;
  /** Set when the process could not be started (exec failed after start). */
  error?: string;
}

export type RuntimeState =
  | { status: 'created'; pid: number }
  | { status: 'running'; pid: number }
  | { status: 'stopped'; exit: ExitStatus };

/** One instance's files: the OCI bundle directory and where the monitor keeps its log and exit record. */
export interface Bundle {
  /** Directory with config.json; the runtime may keep its own files here. */
  dir: string;
  spec: OciSpec;
  /** How to mount the root file system (the snapshotter's answer). */
  rootfs: Mount[];
  /** CRI-format log of stdout/stderr. */
  logPath: string;
}

export interface ResourceStats {
  memory: { usage: number; limit: number | null };
  cpu: { usageNs: number };
  pids: { current: number; limit: number | null };
}

/** An exec'd process inside a running instance, prepared and held until started. */
export interface ExecHandle {
  id: string;
  attach(opts: { stdin: boolean }): Promise<Duplex>;
  start(): Promise<void>;
  wait(): Promise<ExitStatus>;
  resize(rows: number, cols: number): Promise<void>;
  kill(signal: number): Promise<void>;
}

/**
 * Runs OCI bundles. Lifecycle: create prepares the process and holds it before exec; start releases it;
 * the process runs until it exits or is killed; delete removes every trace (cgroups, mounts, files).
 * Instances outlive the daemon: state() works for an instance created by an earlier daemon.
 */
export interface Runtime {
  readonly name: string;
  readonly capabilities: RuntimeCapabilities;
  /** Prepares the instance's process (held before exec); on failure leaves nothing behind. */
  create(id: string, bundle: Bundle): Promise<{ pid: number }>;
  /** Releases a created process. */
  start(id: string): Promise<void>;
  /** Sends a signal to the instance's main process. */
  kill(id: string, signal: number): Promise<void>;
  /** The instance's state as its monitor reports it (or its exit record when the monitor has gone). */
  state(id: string): Promise<RuntimeState>;
  /** Resolves when the main process has exited. */
  wait(id: string): Promise<ExitStatus>;
  /** A stream of docker stdcopy frames (stream 1/2; 3 carries the exit record) and, with stdin, input. */
  attach(id: string, opts: { stdin: boolean }): Promise<Duplex>;
  resize(id: string, rows: number, cols: number): Promise<void>;
  /** Prepares a process inside the running instance (held until its handle's start). */
  exec(
    id: string,
    execId: string,
    process: OciProcess,
    options?: { openStdin?: boolean },
  ): Promise<ExecHandle>;
  stats(id: string): Promise<ResourceStats>;
  /** Host pids of the instance's processes. */
  pids(id: string): Promise<number[]>;
  /**
   * The instance's processes as its own kernel sees them, for `top` (a VM's guest processes); a runtime
   * without it is shown through pids() and the host's process table.
   */
  top?(id: string): Promise<ProcessTable>;
  /** Removes everything the instance left (kills what still runs). Idempotent. */
  delete(id: string): Promise<void>;
}
