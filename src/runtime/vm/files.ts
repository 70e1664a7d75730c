/** The VM runtime's per-instance record and exit-record helpers (shared by its lifecycle and exec). */
import { readFile } from 'node:fs/promises';
import type { ExitStatus } from '../../core/runtime.js';
import type { ShimExit } from '../../platform/native-protocol.js';

/** What the runtime remembers of one VM, beside its bundle, so a restarted daemon finds it. */
export interface VmFiles {
  bundleDir: string;
  runDir: string;
  /** QEMU's host pid. */
  pid: number;
  shimPid: number;
  cgroupPath: string;
  socketPath: string;
  exitPath: string;
  consolePath: string;
  qmpSocket: string;
  /** Time from QEMU's start to the agent's READY frame. */
  bootMs?: number;
  /** The disk overlay (in the bundle directory: it survives restarts, goes with the instance). */
  diskPath: string;
}

export async function readExit(path: string): Promise<ExitStatus | undefined> {
  try {
    return toExit(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

export function toExit(json: string): ExitStatus {
  return fromShimExit(JSON.parse(json) as ShimExit);
}

export function fromShimExit(record: ShimExit): ExitStatus {
  return {
    exitCode: record.exitCode,
    signal: record.signal,
    oomKilled: false,
    finishedAt: record.finishedAt,
    ...(record.error ? { error: record.error } : {}),
  };
}

/** The last lines of the VM's serial console, for boot failures. */
export async function consoleTail(path: string, lines = 15): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** A start reply "error <step> <errno> <message>" from the agent, as a monitor failure. */
export function parseStartError(reply: string): { step: string; errno: number; message: string } {
  const m = /^error (\S+) (\d+) (.*)$/.exec(reply.trim());
  if (!m) return { step: 'start', errno: 0, message: reply.replace(/^error /, '').trim() };
  return { step: m[1]!, errno: Number(m[2]), message: m[3]! };
}
