/**
 * The protocol between the TypeScript side and the native monitor `abode-shim` (native/protocol.h).
 * Everything that can be decided in TypeScript is decided here and sent as a ShimSpec; the shim
 * only performs it. The encoding is versioned TLV (see native/protocol.h).
 */

import { InvalidArgumentError } from '../core/errors.js';

export const SHIM_PROTOCOL_VERSION = 2;

export interface ShimMount {
  /** Source path (host path, or a pseudo source such as "proc", "tmpfs"). */
  source: string;
  /** Target inside the container, absolute; the shim resolves it under the rootfs without leaving it. */
  target: string;
  /** File system type ("bind" for a bind mount, "proc", "tmpfs", "devpts", "mqueue", "sysfs", "cgroup", ...). */
  fstype: string;
  /** MS_* flags (MS_BIND, MS_REC, MS_RDONLY, MS_NOSUID, ...). A bind with MS_RDONLY is remounted read-only. */
  flags: number;
  /** Propagation flags applied after the mount (MS_PRIVATE, MS_SLAVE, MS_SHARED, with MS_REC), 0 for none. */
  propagation: number;
  /** File system data string ("mode=755,size=65536k"). */
  data: string;
}

export interface ShimDevice {
  /** Absolute path inside the container, e.g. /dev/null. */
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  /** Permission bits, e.g. 0o666. */
  mode: number;
  uid: number;
  gid: number;
}

export interface ShimRlimit {
  /** RLIMIT_* number. */
  resource: number;
  soft: bigint;
  hard: bigint;
}

export interface ShimCapabilities {
  bounding: bigint;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
}

export interface ShimSpec {
  /** run: new namespaces around a new root file system; exec: join a running instance's namespaces. */
  mode: 'run' | 'exec';
  /** Instance id (for messages). */
  id: string;

  // --- the process ---
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  /** Allocate a pty for the process (docker -t). */
  terminal: boolean;
  /** Keep the process's stdin open for attach clients (docker -i); otherwise stdin is /dev/null. */
  openStdin: boolean;
  noNewPrivileges: boolean;
  capabilities: ShimCapabilities;
  /** A compiled seccomp program: struct sock_filter[] (8 bytes each, host byte order); absent = unconfined. */
  seccomp?: Buffer;
  rlimits: ShimRlimit[];
  /** oom_score_adj for the process, if set. */
  oomScoreAdj?: number;
  /** A reaping PID 1 (docker --init): the shim's own code stays PID 1, forwards signals, reaps. */
  init: boolean;

  // --- run mode: the environment ---
  /** CLONE_NEW* flags for the namespaces to create. */
  namespaces: number;
  /** Namespaces to join instead of creating: CLONE_NEW* type and a path (/proc/PID/ns/net, a bind-mounted netns). */
  joinNamespaces: { type: number; path: string }[];
  /**
   * Absolute host path of the prepared root file system (e.g. a mounted overlay). Empty: the process runs
   * in the host's file system under the monitor (QEMU for a VM, an external OCI runtime), with no mounts.
   */
  rootfs: string;
  readonlyRootfs: boolean;
  /** Mounts performed in order inside the new mount namespace, before pivot_root. */
  mounts: ShimMount[];
  devices: ShimDevice[];
  /** Symlinks created after mounts: [target, linkPath] (e.g. ["/proc/self/fd", "/dev/fd"]). */
  symlinks: [string, string][];
  /** Paths hidden from the process (docker's masked paths): /dev/null bound over files, empty ro tmpfs over dirs. */
  maskedPaths: string[];
  /** Paths remounted read-only (docker's read-only paths). */
  readonlyPaths: string[];
  hostname: string;
  /** cgroup.procs files (one per hierarchy) the process joins before its namespaces are set up. */
  cgroupProcs: string[];

  // --- exec mode ---
  /** Host pid of the instance's PID 1 whose namespaces (mnt, uts, ipc, net, pid, cgroup) an exec joins. */
  targetPid?: number;

  // --- the monitor ---
  /** CRI log file the shim appends stdout/stderr to ("<RFC3339Nano> stdout|stderr F|P <text>\n"). */
  logPath: string;
  /** Where the shim writes the exit record (JSON) when the process ends. */
  exitPath: string;
  /** The unix socket the shim listens on for attach and control. */
  socketPath: string;
  /** Hold the prepared process before execve until a client sends "start" (OCI create/start). */
  holdUntilStart: boolean;

  // --- agent mode (native/agent-protocol.h) ---
  /**
   * vm: the child is QEMU whose stdio is the guest agent's channel; session: the child is
   * `abode-shim --relay SOCKET`, a new session on a vm shim's channel (exec). Output, exit, stdin,
   * signals and resize then travel as agent frames; "start" sends agentStart.
   */
  agent?: 'vm' | 'session';
  /** The START payload for the guest process (agent mode). */
  agentStart?: Buffer;
  /** How long to wait for the agent's READY before killing the child (agent mode). */
  bootTimeoutMs?: number;
  /**
   * Files whose pages the child maps are paged out of it once the agent is READY (vm mode): QEMU keeps
   * the kernel image and initramfs mapped for a reset that -no-reboot never makes; it reads them again
   * if it ever needs them.
   */
  reclaimFiles?: string[];
  /** The child restores a VM template (vm mode): RESUME goes to the agent first, and READY follows it. */
  agentResume?: boolean;
}

/** The exit record the shim writes to exitPath. */
export interface ShimExit {
  /** docker's convention: the process's code, or 128+signal when a signal ended it. */
  exitCode: number;
  /** The signal that ended it, or 0. */
  signal: number;
  /** RFC 3339 time of the exit. */
  finishedAt: string;
  /** Set when the process could not be started after "start" (e.g. execve failed). */
  error?: string;
}

/** The one line the shim prints on its stdout once the process is prepared (or preparation failed). */
export type ShimReady =
  | { ok: true; pid: number; shimPid: number; bootMs?: number }
  | { ok: false; step: string; errno: number; path: string; message: string };

// --- encoding (native/protocol.h) ---

const MAGIC = 'ABSH';

/** Record tags; must match enum shim_tag in native/protocol.h. */
export const ShimTag = {
  mode: 1,
  id: 2,
  arg: 3,
  env: 4,
  cwd: 5,
  uid: 6,
  gid: 7,
  additionalGid: 8,
  terminal: 9,
  openStdin: 10,
  noNewPrivileges: 11,
  capabilities: 12,
  seccomp: 13,
  rlimit: 14,
  oomScoreAdj: 15,
  init: 16,
  namespaces: 17,
  joinNamespace: 18,
  rootfs: 19,
  readonlyRootfs: 20,
  mount: 21,
  device: 22,
  symlink: 23,
  maskedPath: 24,
  readonlyPath: 25,
  hostname: 26,
  cgroupProcs: 27,
  targetPid: 28,
  logPath: 29,
  exitPath: 30,
  socketPath: 31,
  holdUntilStart: 32,
  agent: 33,
  agentStart: 34,
  bootTimeout: 35,
  reclaimFile: 36,
  agentResume: 37,
} as const;

const U64_MAX = (1n << 64n) - 1n;

class SpecWriter {
  private readonly parts: Buffer[] = [];
  private readonly problems: string[];
  constructor(problems: string[]) {
    this.problems = problems;
  }
  record(tag: number, value: Buffer): void {
    const head = Buffer.alloc(6);
    head.writeUInt16LE(tag, 0);
    head.writeUInt32LE(value.length, 2);
    this.parts.push(head, value);
  }
  str(tag: number, value: string, field: string): void {
    this.record(tag, this.text(value, field));
  }
  text(value: string, field: string): Buffer {
    if (value.includes('\0')) this.problems.push(`${field}: contains a NUL byte`);
    return Buffer.from(value, 'utf8');
  }
  u32(tag: number, value: number, field: string): void {
    this.record(tag, this.u32buf(value, field));
  }
  u32buf(value: number, field: string): Buffer {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
      this.problems.push(`${field}: ${value} is not a u32`);
    const b = Buffer.alloc(4);
    b.writeUInt32LE(Number.isInteger(value) && value >= 0 && value <= 0xffffffff ? value : 0);
    return b;
  }
  bool(tag: number, value: boolean): void {
    this.record(tag, Buffer.from([value ? 1 : 0]));
  }
  u64(value: bigint, field: string): Buffer {
    const b = Buffer.alloc(8);
    if (value < 0n || value > U64_MAX) this.problems.push(`${field}: ${value} is not a u64`);
    else b.writeBigUInt64LE(value);
    return b;
  }
  finish(): Buffer {
    const head = Buffer.alloc(8);
    head.write(MAGIC, 0, 'latin1');
    head.writeUInt32LE(SHIM_PROTOCOL_VERSION, 4);
    return Buffer.concat([head, ...this.parts]);
  }
}

/** Encodes a ShimSpec for abode-shim; throws (listing every problem) on values the encoding cannot carry. */
export function encodeShimSpec(spec: ShimSpec): Buffer {
  const problems: string[] = [];
  const w = new SpecWriter(problems);
  w.record(ShimTag.mode, Buffer.from([spec.mode === 'exec' ? 1 : 0]));
  w.str(ShimTag.id, spec.id, 'id');
  spec.args.forEach((a, i) => w.str(ShimTag.arg, a, `args[${i}]`));
  if (spec.args.length === 0) problems.push('args: empty');
  spec.env.forEach((e, i) => w.str(ShimTag.env, e, `env[${i}]`));
  w.str(ShimTag.cwd, spec.cwd, 'cwd');
  w.u32(ShimTag.uid, spec.uid, 'uid');
  w.u32(ShimTag.gid, spec.gid, 'gid');
  spec.additionalGids.forEach((g, i) => w.u32(ShimTag.additionalGid, g, `additionalGids[${i}]`));
  w.bool(ShimTag.terminal, spec.terminal);
  w.bool(ShimTag.openStdin, spec.openStdin);
  w.bool(ShimTag.noNewPrivileges, spec.noNewPrivileges);
  const c = spec.capabilities;
  w.record(
    ShimTag.capabilities,
    Buffer.concat([
      w.u64(c.bounding, 'capabilities.bounding'),
      w.u64(c.effective, 'capabilities.effective'),
      w.u64(c.permitted, 'capabilities.permitted'),
      w.u64(c.inheritable, 'capabilities.inheritable'),
      w.u64(c.ambient, 'capabilities.ambient'),
    ]),
  );
  if (spec.seccomp !== undefined) {
    if (spec.seccomp.length === 0 || spec.seccomp.length % 8 !== 0 || spec.seccomp.length / 8 > 0xffff)
      problems.push(`seccomp: ${spec.seccomp.length} bytes is not a sock_filter program`);
    w.record(ShimTag.seccomp, spec.seccomp);
  }
  spec.rlimits.forEach((r, i) =>
    w.record(
      ShimTag.rlimit,
      Buffer.concat([
        w.u32buf(r.resource, `rlimits[${i}].resource`),
        w.u64(r.soft, `rlimits[${i}].soft`),
        w.u64(r.hard, `rlimits[${i}].hard`),
      ]),
    ),
  );
  if (spec.oomScoreAdj !== undefined) {
    const b = Buffer.alloc(4);
    if (!Number.isInteger(spec.oomScoreAdj) || spec.oomScoreAdj < -1000 || spec.oomScoreAdj > 1000)
      problems.push(`oomScoreAdj: ${spec.oomScoreAdj} is not in -1000..1000`);
    else b.writeInt32LE(spec.oomScoreAdj);
    w.record(ShimTag.oomScoreAdj, b);
  }
  w.bool(ShimTag.init, spec.init);
  w.u32(ShimTag.namespaces, spec.namespaces, 'namespaces');
  spec.joinNamespaces.forEach((j, i) =>
    w.record(
      ShimTag.joinNamespace,
      Buffer.concat([
        w.u32buf(j.type, `joinNamespaces[${i}].type`),
        w.text(j.path, `joinNamespaces[${i}].path`),
      ]),
    ),
  );
  w.str(ShimTag.rootfs, spec.rootfs, 'rootfs');
  w.bool(ShimTag.readonlyRootfs, spec.readonlyRootfs);
  const nul = Buffer.from([0]);
  spec.mounts.forEach((m, i) =>
    w.record(
      ShimTag.mount,
      Buffer.concat([
        w.u32buf(m.flags, `mounts[${i}].flags`),
        w.u32buf(m.propagation, `mounts[${i}].propagation`),
        w.text(m.source, `mounts[${i}].source`),
        nul,
        w.text(m.target, `mounts[${i}].target`),
        nul,
        w.text(m.fstype, `mounts[${i}].fstype`),
        nul,
        w.text(m.data, `mounts[${i}].data`),
      ]),
    ),
  );
  spec.devices.forEach((d, i) => {
    if (d.type !== 'c' && d.type !== 'b') problems.push(`devices[${i}].type: ${String(d.type)}`);
    w.record(
      ShimTag.device,
      Buffer.concat([
        Buffer.from([d.type.charCodeAt(0), 0, 0, 0]),
        w.u32buf(d.major, `devices[${i}].major`),
        w.u32buf(d.minor, `devices[${i}].minor`),
        w.u32buf(d.mode, `devices[${i}].mode`),
        w.u32buf(d.uid, `devices[${i}].uid`),
        w.u32buf(d.gid, `devices[${i}].gid`),
        w.text(d.path, `devices[${i}].path`),
      ]),
    );
  });
  spec.symlinks.forEach(([target, link], i) =>
    w.record(
      ShimTag.symlink,
      Buffer.concat([w.text(target, `symlinks[${i}][0]`), nul, w.text(link, `symlinks[${i}][1]`)]),
    ),
  );
  spec.maskedPaths.forEach((p, i) => w.str(ShimTag.maskedPath, p, `maskedPaths[${i}]`));
  spec.readonlyPaths.forEach((p, i) => w.str(ShimTag.readonlyPath, p, `readonlyPaths[${i}]`));
  w.str(ShimTag.hostname, spec.hostname, 'hostname');
  spec.cgroupProcs.forEach((p, i) => w.str(ShimTag.cgroupProcs, p, `cgroupProcs[${i}]`));
  if (spec.targetPid !== undefined) w.u32(ShimTag.targetPid, spec.targetPid, 'targetPid');
  w.str(ShimTag.logPath, spec.logPath, 'logPath');
  w.str(ShimTag.exitPath, spec.exitPath, 'exitPath');
  w.str(ShimTag.socketPath, spec.socketPath, 'socketPath');
  w.bool(ShimTag.holdUntilStart, spec.holdUntilStart);
  if (spec.agent !== undefined) {
    w.record(ShimTag.agent, Buffer.from([spec.agent === 'vm' ? 1 : 2]));
    const start = spec.agentStart ?? Buffer.alloc(0);
    // The shim adds the host's clock (C=…, under 64 bytes) to the frame, which must stay within 1 MiB.
    if (start.length > (1 << 20) - 64)
      problems.push(`agentStart: ${start.length} bytes is more than 1 MiB less 64 bytes`);
    w.record(ShimTag.agentStart, start);
    w.u32(ShimTag.bootTimeout, spec.bootTimeoutMs ?? 30000, 'bootTimeoutMs');
    (spec.reclaimFiles ?? []).forEach((p, i) => w.str(ShimTag.reclaimFile, p, `reclaimFiles[${i}]`));
    if (spec.agentResume) w.bool(ShimTag.agentResume, true);
  }
  if (problems.length > 0)
    throw new InvalidArgumentError(`invalid shim spec: ${problems.join('; ')}`, { problems });
  return w.finish();
}

// --- the control socket (native/protocol.h) ---

/** Stream ids of attach frames (docker's stdcopy, plus 3 for the exit record). */
export const ShimStream = { stdout: 1, stderr: 2, exit: 3 } as const;

export interface ShimFrame {
  stream: number;
  payload: Buffer;
}

/** Splits an attach connection's bytes into frames; feed it chunks in order. */
export class ShimFrameDecoder {
  private pending: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): ShimFrame[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const frames: ShimFrame[] = [];
    while (this.pending.length >= 8) {
      const len = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + len) break;
      frames.push({ stream: this.pending[0]!, payload: Buffer.from(this.pending.subarray(8, 8 + len)) });
      this.pending = this.pending.subarray(8 + len);
    }
    return frames;
  }
}

/** Encodes one frame (the shim's side; for tests and fakes). */
export function encodeShimFrame(stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(payload.length, 4);
  return Buffer.concat([head, payload]);
}
