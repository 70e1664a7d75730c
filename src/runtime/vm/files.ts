/** The VM runtime's per-instance record, and what it reads of the console and the agent's start errors. */
import { readFile } from 'node:fs/promises';
import type { CgroupInstanceFiles } from '../instance-cgroup.js';

/** What the runtime remembers of one VM, beside its bundle, so a restarted daemon finds it (`pid` is QEMU's). */
export interface VmFiles extends CgroupInstanceFiles {
  consolePath: string;
  qmpSocket: string;
  /** Time from QEMU's start to the agent's READY frame. */
  bootMs?: number;
  /** Restored from a template rather than booted. */
  restored?: boolean;
  /** The disk overlay (in the bundle directory: it survives restarts, goes with the instance). */
  diskPath: string;
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
