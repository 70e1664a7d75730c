import { invalidAll } from '../errors.js';

/** Every Linux capability by name, with its bit number (linux/capability.h, up to CAP_LAST_CAP = 40). */
export const CAPABILITIES: Readonly<Record<string, number>> = {
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_DAC_READ_SEARCH: 2,
  CAP_FOWNER: 3,
  CAP_FSETID: 4,
  CAP_KILL: 5,
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_SETPCAP: 8,
  CAP_LINUX_IMMUTABLE: 9,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_BROADCAST: 11,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14,
  CAP_IPC_OWNER: 15,
  CAP_SYS_MODULE: 16,
  CAP_SYS_RAWIO: 17,
  CAP_SYS_CHROOT: 18,
  CAP_SYS_PTRACE: 19,
  CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_BOOT: 22,
  CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24,
  CAP_SYS_TIME: 25,
  CAP_SYS_TTY_CONFIG: 26,
  CAP_MKNOD: 27,
  CAP_LEASE: 28,
  CAP_AUDIT_WRITE: 29,
  CAP_AUDIT_CONTROL: 30,
  CAP_SETFCAP: 31,
  CAP_MAC_OVERRIDE: 32,
  CAP_MAC_ADMIN: 33,
  CAP_SYSLOG: 34,
  CAP_WAKE_ALARM: 35,
  CAP_BLOCK_SUSPEND: 36,
  CAP_AUDIT_READ: 37,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
  CAP_CHECKPOINT_RESTORE: 40,
};

/** All capability names in bit order. */
export const ALL_CAPABILITIES: readonly string[] = Object.keys(CAPABILITIES).sort(
  (a, b) => CAPABILITIES[a] - CAPABILITIES[b],
);

/** docker's default capability set for unprivileged containers, in docker's order. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Upper-cases a capability name and adds the CAP_ prefix if missing ("sys_admin" → "CAP_SYS_ADMIN"); "ALL" stays "ALL". */
export function normalizeCapabilityName(name: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === 'ALL' || upper.startsWith('CAP_')) return upper;
  return `CAP_${upper}`;
}

/** Returns true if the (normalized) name is a known capability. */
export function isCapability(name: string): boolean {
  return Object.hasOwn(CAPABILITIES, name);
}

/** Normalizes names, adding a problem for each unknown one; "ALL" is allowed if allowAll. */
function normalizeAll(names: readonly string[], allowAll: boolean, problems: string[]): string[] {
  const out: string[] = [];
  for (const raw of names) {
    const name = normalizeCapabilityName(raw);
    if ((allowAll && name === 'ALL') || isCapability(name)) out.push(name);
    else problems.push(`unknown capability ${JSON.stringify(name)}`);
  }
  return out;
}

export interface CapabilityOptions {
  privileged?: boolean;
  capAdd?: readonly string[];
  capDrop?: readonly string[];
}

/** Resolves capabilities with docker's rules: privileged → all, capAdd ALL, capDrop ALL, else defaults − drop + add. */
export function resolveCapabilities(options: CapabilityOptions = {}): string[] {
  if (options.privileged) return [...ALL_CAPABILITIES];
  const problems: string[] = [];
  const add = normalizeAll(options.capAdd ?? [], true, problems);
  const drop = normalizeAll(options.capDrop ?? [], true, problems);
  if (problems.length > 0) throw invalidAll(problems);
  let caps: string[];
  if (add.includes('ALL')) {
    caps = ALL_CAPABILITIES.filter((c) => !drop.includes(c));
  } else if (drop.includes('ALL')) {
    caps = add;
  } else {
    caps = [...DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c)), ...add];
  }
  return [...new Set(caps)];
}

/** Returns the bit mask of the named capabilities (names normalized; unknown names throw InvalidArgumentError). */
export function capabilityMask(names: readonly string[]): bigint {
  const problems: string[] = [];
  const known = normalizeAll(names, false, problems);
  if (problems.length > 0) throw invalidAll(problems);
  let mask = 0n;
  for (const name of known) mask |= 1n << BigInt(CAPABILITIES[name]);
  return mask;
}
