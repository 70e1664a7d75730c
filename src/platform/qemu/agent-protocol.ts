/** The TypeScript side of the guest agent's channel (native/agent-protocol.h): the START payload. */
import { InvalidArgumentError } from '../../core/errors.js';
import { PROCESS_TABLE_TITLES, type ProcessTable } from '../../core/runtime.js';

export interface AgentProcess {
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  terminal: boolean;
  openStdin: boolean;
  /** Set for the main process (session 0) only. */
  hostname?: string;
  rows?: number;
  cols?: number;
  /** Main process only: mount the root disk read-only (--read-only). */
  readOnly?: boolean;
  /** Main process only: virtio-fs shares to mount before the process starts. */
  mounts?: AgentMount[];
  /** Main process only: tmpfs mounts (--tmpfs), after the shares. */
  tmpfs?: AgentTmpfs[];
  /** Main process only: the root disk is thrown away after the exit (--rm), so power-off skips the sync and the shim kills QEMU at the EXIT. */
  discardRoot?: boolean;
  /** Instead of running args, the agent prints the guest's processes (guestProcessTable reads them). */
  listProcesses?: boolean;
}

/** A host directory shared over virtio-fs under `tag`, mounted at `destination` in the guest. */
export interface AgentMount {
  tag: string;
  destination: string;
  readOnly: boolean;
}

/** A tmpfs at `destination` in the guest: mount(2) flags and the file system's options (size=, mode=). */
export interface AgentTmpfs {
  destination: string;
  flags: number;
  data: string;
}

/** `args` as root in /, with no environment, no terminal and no stdin (the agent's own errands, tests). */
export function rootProcess(args: string[]): AgentProcess {
  return { args, env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false, openStdin: false };
}

/** Encodes a process as NUL-terminated "k=v" entries; throws on values the encoding cannot carry. */
export function encodeAgentStart(p: AgentProcess): Buffer {
  const entries: string[] = [
    ...p.args.map((a) => `a=${a}`),
    ...p.env.map((e) => `e=${e}`),
    `c=${p.cwd}`,
    `u=${p.uid}`,
    `g=${p.gid}`,
    ...p.additionalGids.map((g) => `G=${g}`),
    `t=${p.terminal ? 1 : 0}`,
    `i=${p.openStdin ? 1 : 0}`,
    ...(p.hostname ? [`h=${p.hostname}`] : []),
    ...(p.rows ? [`r=${p.rows}`] : []),
    ...(p.cols ? [`w=${p.cols}`] : []),
    ...(p.readOnly ? ['R=1'] : []),
    ...(p.discardRoot ? ['D=1'] : []),
    ...(p.listProcesses ? ['P=1'] : []),
    ...(p.mounts ?? []).map((m) => `m=${m.tag} ${m.readOnly ? 'ro' : 'rw'} ${m.destination}`),
    // "-": no options (the data field is never empty, so that the path may hold spaces).
    ...(p.tmpfs ?? []).map((t) => `T=${t.flags} ${t.data.replace(/ /g, '') || '-'} ${t.destination}`),
  ];
  const bad = entries.filter((e) => e.includes('\0'));
  if (bad.length > 0) throw new InvalidArgumentError(`process values contain NUL bytes: ${bad.join(', ')}`);
  if (p.args.length === 0) throw new InvalidArgumentError('process has no command');
  return Buffer.from(entries.map((e) => `${e}\0`).join(''), 'utf8');
}

const PTS_MAJOR = 136;

/**
 * `top`'s table from the agent's process list (P=1): a line per process of tab-separated uid, pid, ppid,
 * start (epoch seconds), tty device number, CPU seconds and command; in `ps -ef`'s columns.
 */
export function guestProcessTable(text: string, now = new Date()): ProcessTable {
  const two = (n: number) => String(n).padStart(2, '0');
  const rows = text
    .split('\n')
    .map((line) => line.split('\t'))
    .filter((f) => f.length >= 7 && /^\d+$/.test(f[1]!))
    .map(([uid, pid, ppid, start, tty, cpu, ...cmd]) => {
      const started = new Date(Number(start) * 1000);
      const today = started.toDateString() === now.toDateString();
      const stime = today
        ? `${two(started.getHours())}:${two(started.getMinutes())}`
        : started.toLocaleString('en-US', { month: 'short', day: '2-digit' }).replace(' ', '');
      const device = Number(tty);
      const major = (device >> 8) & 0xfff;
      const minor = (device & 0xff) | ((device >> 12) & 0xfff00);
      const seconds = Number(cpu);
      const time = `${two(Math.floor(seconds / 3600))}:${two(Math.floor(seconds / 60) % 60)}:${two(seconds % 60)}`;
      return [
        uid === '0' ? 'root' : uid!,
        pid!,
        ppid!,
        '0',
        stime,
        device === 0 ? '?' : major === PTS_MAJOR ? `pts/${minor}` : `${major}:${minor}`,
        time,
        cmd.join('\t'),
      ];
    })
    .sort((a, b) => Number(a[1]) - Number(b[1]));
  return { Titles: PROCESS_TABLE_TITLES, Processes: rows };
}
