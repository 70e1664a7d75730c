import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type {
  Bundle,
  ExecHandle,
  ExitStatus,
  ResourceStats,
  Runtime,
  RuntimeState,
} from '../../core/runtime.js';
import type { OciProcess, OciSeccomp, OciSpec } from '../../core/oci.js';
import { ConflictError, InternalError, NotFoundError } from '../../core/errors.js';
import type { ShimExit, ShimSpec } from '../../platform/native-protocol.js';
import { shimAttach, shimRequest, shimWait, startShim } from '../../platform/shim.js';
import type { CgroupDriver } from '../../platform/cgroups/index.js';
import { compileSeccomp } from '../../platform/seccomp/compile.js';
import { constants } from 'node:os';
import { capabilityMask } from '../../core/security/capabilities.js';
import { parseMountOptions } from '../../platform/mount-options.js';
import { readUserDb, resolveUser } from '../../platform/user.js';
import { execFailure, processFailure } from '../errors.js';

const CLONE = {
  NEWNS: 0x00020000,
  NEWCGROUP: 0x02000000,
  NEWUTS: 0x04000000,
  NEWIPC: 0x08000000,
  NEWUSER: 0x10000000,
  NEWPID: 0x20000000,
  NEWNET: 0x40000000,
} as const;

const namespaceFlags: Record<string, number> = {
  mount: CLONE.NEWNS,
  cgroup: CLONE.NEWCGROUP,
  uts: CLONE.NEWUTS,
  ipc: CLONE.NEWIPC,
  user: CLONE.NEWUSER,
  pid: CLONE.NEWPID,
  network: CLONE.NEWNET,
};

const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0,
  RLIMIT_FSIZE: 1,
  RLIMIT_DATA: 2,
  RLIMIT_STACK: 3,
  RLIMIT_CORE: 4,
  RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8,
  RLIMIT_AS: 9,
  RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11,
  RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13,
  RLIMIT_RTPRIO: 14,
  RLIMIT_RTTIME: 15,
};

/** The device nodes every container gets (the OCI spec's defaults). */
const DEFAULT_DEVICES: ShimSpec['devices'] = [
  ['/dev/null', 1, 3],
  ['/dev/zero', 1, 5],
  ['/dev/full', 1, 7],
  ['/dev/random', 1, 8],
  ['/dev/urandom', 1, 9],
  ['/dev/tty', 5, 0],
].map(([path, major, minor]) => ({
  path: path as string,
  type: 'c' as const,
  major: major as number,
  minor: minor as number,
  mode: 0o666,
  uid: 0,
  gid: 0,
}));

const DEFAULT_SYMLINKS: [string, string][] = [
  ['/proc/self/fd', '/dev/fd'],
  ['/proc/self/fd/0', '/dev/stdin'],
  ['/proc/self/fd/1', '/dev/stdout'],
  ['/proc/self/fd/2', '/dev/stderr'],
  ['pts/ptmx', '/dev/ptmx'],
  ['/proc/kcore', '/dev/core'],
];

/** The capabilities this process may pass on. */
const HOST_BOUNDING = (() => {
  try {
    const line = readFileSync('/proc/self/status', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('CapBnd:'));
    return line ? BigInt(`0x${line.split(/\s+/)[1]}`) : ~0n;
  } catch {
    return ~0n;
  }
})();

/** What the runtime remembers of one instance, beside its bundle, so a restarted daemon finds it. */
interface InstanceFiles {
  bundleDir: string;
  runDir: string;
  pid: number;
  shimPid: number;
  cgroupPath: string;
  socketPath: string;
  exitPath: string;
}

export interface ContainerRuntimeOptions {
  /** Runtime files (sockets, specs) per instance: tmpfs in production. */
  runRoot: string;
  shimPath: string;
  cgroups: CgroupDriver;
  /** Parent of every instance's cgroup, e.g. "abode". */
  cgroupParent: string;
}

/** Containers: namespaces and cgroups around an overlay root, prepared and watched by abode-shim. */
export class ContainerRuntime implements Runtime {
  readonly name = 'container';
  readonly capabilities = { exec: true, pty: true, stats: true, top: true };

  constructor(private readonly options: ContainerRuntimeOptions) {}

  private runDir(id: string): string {
    // Socket paths have a 108-byte limit, so the run directory uses a short prefix of the id.
    return join(this.options.runRoot, 'c', id.slice(0, 16));
  }

  private async files(id: string): Promise<InstanceFiles> {
    try {
      return JSON.parse(await readFile(join(this.runDir(id), 'state.json'), 'utf8')) as InstanceFiles;
    } catch {
      throw new NotFoundError(`instance ${id} has no runtime state`);
    }
  }

  async create(id: string, bundle: Bundle): Promise<{ pid: number }> {
    const runDir = this.runDir(id);
    await rm(runDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    const rootfs = join(bundle.dir, 'rootfs');
    await mkdir(rootfs, { recursive: true });
    const cgroupPath = `${this.options.cgroupParent}/${id}`;
    const cgroup = await this.options.cgroups.create(cgroupPath, bundle.spec.linux.resources);
    try {
      const spec = await this.shimSpec(id, bundle, rootfs, runDir, cgroup.procsFiles());
      const ready = await startShim({
        shimPath: this.options.shimPath,
        spec,
        specPath: join(runDir, 'spec.bin'),
        stderrPath: join(runDir, 'shim.stderr'),
      });
      const files: InstanceFiles = {
        bundleDir: bundle.dir,
        runDir,
        pid: ready.pid,
        shimPid: ready.shimPid,
        cgroupPath,
        socketPath: spec.socketPath,
        exitPath: spec.exitPath,
      };
      await writeFile(join(runDir, 'state.json'), JSON.stringify(files));
      return { pid: ready.pid };
    } catch (error) {
      await cgroup.destroy().catch(() => undefined);
      await rm(runDir, { recursive: true, force: true });
      throw processFailure(error, bundle.spec.process.args[0]);
    }
  }

  private async shimSpec(
    id: string,
    bundle: Bundle,
    rootfs: string,
    runDir: string,
    cgroupProcs: string[],
  ): Promise<ShimSpec> {
    const spec = bundle.spec;
    const lowerDirs = bundle.rootfs.flatMap((m) =>
      m.options.filter((o) => o.startsWith('lowerdir=')).flatMap((o) => o.slice(9).split(':')),
    );
    const upperDirs = bundle.rootfs.flatMap((m) =>
      m.options.filter((o) => o.startsWith('upperdir=')).map((o) => o.slice(9)),
    );
    const rootMounts: ShimSpec['mounts'] = bundle.rootfs.map((m) => {
      const parsed = parseMountOptions(m.options);
      return { source: m.source, target: '/', fstype: m.type, ...parsed };
    });
    const userDb = await readUserDb([...upperDirs, ...lowerDirs]);
    const user = resolveUser(spec.process.user.username ?? '', userDb);
    return {
      mode: 'run',
      id,
      ...processFields(spec.process, user, spec.annotations, spec.linux.seccomp),
      namespaces: spec.linux.namespaces
        .filter((ns) => !ns.path)
        .reduce((flags, ns) => flags | (namespaceFlags[ns.type] ?? 0), 0),
      joinNamespaces: spec.linux.namespaces
        .filter((ns) => ns.path)
        .map((ns) => ({ type: namespaceFlags[ns.type], path: ns.path as string })),
      rootfs,
      readonlyRootfs: spec.root.readonly ?? false,
      mounts: [
        ...rootMounts,
        ...spec.mounts.map((m) => {
          const parsed = parseMountOptions(m.options);
          const isBind = m.type === 'bind' || (parsed.flags & 0x1000) !== 0;
          return {
            source: m.source ?? m.type ?? 'none',
            target: m.destination,
            fstype: isBind ? 'bind' : (m.type ?? 'none'),
            ...parsed,
          };
        }),
      ],
      devices: DEFAULT_DEVICES,
      symlinks: DEFAULT_SYMLINKS,
      maskedPaths: spec.linux.maskedPaths ?? [],
      readonlyPaths: spec.linux.readonlyPaths ?? [],
      hostname: spec.hostname ?? '',
      cgroupProcs,
      logPath: bundle.logPath,
      exitPath: join(bundle.dir, 'exit.json'),
      socketPath: join(runDir, 'shim.sock'),
      holdUntilStart: true,
    };
  }

  async start(id: string): Promise<void> {
    const files = await this.files(id);
    const reply = await shimRequest(files.socketPath, 'start');
    if (!reply.startsWith('ok')) throw new ConflictError(`cannot start ${id}: ${reply.trim()}`);
  }

  async kill(id: string, signal: number): Promise<void> {
    const files = await this.files(id);
    try {
      await shimRequest(files.socketPath, `signal ${signal}`);
    } catch {
      // The monitor is gone: signal what may remain of the instance directly.
      const cgroup = await this.options.cgroups.open(files.cgroupPath);
      await cgroup.killAll(signalName(signal)).catch(() => undefined);
    }
  }

  async state(id: string): Promise<RuntimeState> {
    const files = await this.files(id);
    const exit = await readExit(files.exitPath);
    if (exit) return { status: 'stopped', exit: await this.withOom(files, exit) };
    try {
      const reply = (await shimRequest(files.socketPath, 'state')).trim();
      const [status, rest] = [reply.split(' ')[0], reply.slice(reply.indexOf(' ') + 1)];
      if (status === 'running' || status === 'created') return { status, pid: Number(rest) };
      if (status === 'exited') return { status: 'stopped', exit: await this.withOom(files, toExit(rest)) };
    } catch {
      // fall through: the monitor is gone and left no exit record
    }
    const late = await readExit(files.exitPath);
    if (late) return { status: 'stopped', exit: await this.withOom(files, late) };
    return {
      status: 'stopped',
      exit: {
        exitCode: 255,
        signal: 0,
        oomKilled: false,
        finishedAt: new Date().toISOString(),
        error: 'the instance monitor (abode-shim) died without recording an exit status',
      },
    };
  }

  private async withOom(files: InstanceFiles, exit: ExitStatus): Promise<ExitStatus> {
    if (exit.signal !== 9) return exit;
    try {
      const cgroup = await this.options.cgroups.open(files.cgroupPath);
      return { ...exit, oomKilled: await cgroup.oomKilled() };
    } catch {
      return exit;
    }
  }

  async wait(id: string): Promise<ExitStatus> {
    const files = await this.files(id);
    try {
      return await this.withOom(files, fromShimExit(await shimWait(files.socketPath, files.exitPath)));
    } catch {
      // the monitor is gone without a record
    }
    const state = await this.state(id);
    if (state.status === 'stopped') return state.exit;
    throw new InternalError(`lost contact with the monitor of ${id}`);
  }

  async attach(id: string, opts: { stdin: boolean }): Promise<Duplex> {
    const files = await this.files(id);
    return shimAttach(files.socketPath, opts);
  }

  async resize(id: string, rows: number, cols: number): Promise<void> {
    const files = await this.files(id);
    await shimRequest(files.socketPath, `resize ${rows} ${cols}`);
  }

  async exec(
    id: string,
    execId: string,
    process: OciProcess,
    options: { openStdin?: boolean } = {},
  ): Promise<ExecHandle> {
    const files = await this.files(id);
    const bundleSpec = JSON.parse(await readFile(join(files.bundleDir, 'config.json'), 'utf8')) as OciSpec;
    const rootfs = `/proc/${files.pid}/root`;
    const userDb = await readUserDb([rootfs]);
    const user = resolveUser(process.user.username ?? '', userDb);
    const cgroup = await this.options.cgroups.open(files.cgroupPath);
    const dir = join(files.runDir, `exec-${execId.slice(0, 12)}`);
    await mkdir(dir, { recursive: true });
    const spec: ShimSpec = {
      mode: 'exec',
      id: execId,
      ...processFields(process, user, bundleSpec.annotations, bundleSpec.linux.seccomp),
      openStdin: options.openStdin ?? false,
      init: false,
      namespaces: 0,
      joinNamespaces: [],
      rootfs: '',
      readonlyRootfs: false,
      mounts: [],
      devices: [],
      symlinks: [],
      maskedPaths: [],
      readonlyPaths: [],
      hostname: '',
      cgroupProcs: cgroup.procsFiles(),
      targetPid: files.pid,
      logPath: join(dir, 'exec.log'),
      exitPath: join(dir, 'exit.json'),
      socketPath: join(dir, 'exec.sock'),
      holdUntilStart: true,
    };
    try {
      await startShim({
        shimPath: this.options.shimPath,
        spec,
        specPath: join(dir, 'spec.bin'),
        stderrPath: join(dir, 'shim.stderr'),
      });
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw execFailure(error, process.args[0]);
    }
    const socket = spec.socketPath;
    return {
      id: execId,
      attach: (opts) => shimAttach(socket, opts),
      start: async () => {
        const reply = await shimRequest(socket, 'start');
        if (!reply.startsWith('ok')) throw new ConflictError(`cannot start exec ${execId}: ${reply.trim()}`);
      },
      wait: async () => {
        try {
          return fromShimExit(await shimWait(socket, spec.exitPath));
        } catch {
          // monitor gone; fall back to its record
        }
        const exit = await readExit(spec.exitPath);
        if (exit) return exit;
        throw new InternalError(`lost contact with exec ${execId}`);
      },
      resize: async (rows, cols) => {
        await shimRequest(socket, `resize ${rows} ${cols}`);
      },
      kill: async (signal) => {
        await shimRequest(socket, `signal ${signal}`);
      },
    };
  }

  async stats(id: string): Promise<ResourceStats> {
    const files = await this.files(id);
    const cgroup = await this.options.cgroups.open(files.cgroupPath);
    const stats = await cgroup.stats();
    return {
      memory: { usage: stats.memory.usage, limit: stats.memory.limit },
      cpu: { usageNs: stats.cpu.usageNs },
      pids: { current: stats.pids.current, limit: stats.pids.limit ?? null },
    };
  }

  async pids(id: string): Promise<number[]> {
    const files = await this.files(id);
    const cgroup = await this.options.cgroups.open(files.cgroupPath);
    return cgroup.pids();
  }

  async delete(id: string): Promise<void> {
    let files: InstanceFiles;
    try {
      files = await this.files(id);
    } catch {
      await this.options.cgroups
        .open(`${this.options.cgroupParent}/${id}`)
        .then((cgroup) => cgroup.destroy())
        .catch(() => undefined);
      return;
    }
    try {
      await shimRequest(files.socketPath, 'signal 9');
    } catch {
      // already gone
    }
    const cgroup = await this.options.cgroups.open(files.cgroupPath).catch(() => undefined);
    await Promise.all([cgroup?.destroy(), rm(files.runDir, { recursive: true, force: true })]);
  }
}

function processFields(
  process: OciProcess,
  user: { uid: number; gid: number; additionalGids: number[] },
  annotations: Record<string, string> | undefined,
  seccomp: OciSeccomp | undefined,
): Pick<
  ShimSpec,
  | 'args'
  | 'env'
  | 'cwd'
  | 'uid'
  | 'gid'
  | 'additionalGids'
  | 'terminal'
  | 'openStdin'
  | 'noNewPrivileges'
  | 'capabilities'
  | 'rlimits'
  | 'init'
  | 'seccomp'
  | 'oomScoreAdj'
> {
  const caps = process.capabilities ?? {};
  return {
    args: process.args,
    env: process.env,
    cwd: process.cwd,
    ...user,
    terminal: process.terminal ?? false,
    openStdin: annotations?.['org.abode.open-stdin'] === 'true',
    noNewPrivileges: process.noNewPrivileges ?? false,
    // No process can hold a capability its parent's bounding set lacks (e.g. CAP_SYS_RESOURCE on some hosts).
    capabilities: {
      bounding: capabilityMask(caps.bounding ?? []) & HOST_BOUNDING,
      effective: capabilityMask(caps.effective ?? []) & HOST_BOUNDING,
      permitted: capabilityMask(caps.permitted ?? []) & HOST_BOUNDING,
      inheritable: capabilityMask(caps.inheritable ?? []) & HOST_BOUNDING,
      ambient: capabilityMask(caps.ambient ?? []) & HOST_BOUNDING,
    },
    rlimits: (process.rlimits ?? []).map((r) => ({
      resource: RLIMITS[r.type],
      soft: BigInt(r.soft),
      hard: BigInt(r.hard),
    })),
    init: annotations?.['org.abode.init'] === 'true',
    ...(seccomp ? { seccomp: compiledSeccomp(seccomp) } : {}),
    ...(process.oomScoreAdj !== undefined ? { oomScoreAdj: process.oomScoreAdj } : {}),
  };
}

async function readExit(path: string): Promise<ExitStatus | undefined> {
  try {
    return toExit(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

function toExit(json: string): ExitStatus {
  return fromShimExit(JSON.parse(json) as ShimExit);
}

function fromShimExit(record: ShimExit): ExitStatus {
  return {
    exitCode: record.exitCode,
    signal: record.signal,
    oomKilled: false,
    finishedAt: record.finishedAt,
    ...(record.error ? { error: record.error } : {}),
  };
}

function signalName(signal: number): NodeJS.Signals {
  const found = Object.entries(constants.signals).find(([, n]) => n === signal);
  return (found?.[0] ?? 'SIGKILL') as NodeJS.Signals;
}

const seccompCache = new Map<string, Buffer>();

/** Compiles a profile once: most instances share docker's default profile. */
function compiledSeccomp(profile: OciSeccomp): Buffer {
  const key = JSON.stringify(profile);
  let program = seccompCache.get(key);
  if (!program) {
    program = compileSeccomp(profile);
    if (seccompCache.size >= 32) seccompCache.delete(seccompCache.keys().next().value as string);
    seccompCache.set(key, program);
  }
  return program;
}
