import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Bundle, ExecHandle, ExitStatus, Runtime } from '../../core/runtime.js';
import type { OciProcess, OciSeccomp } from '../../core/oci.js';
import type { ShimSpec } from '../../platform/native-protocol.js';
import type { CgroupDriver } from '../../platform/cgroups/index.js';
import { compileSeccomp } from '../../platform/seccomp/compile.js';
import { capabilityMask } from '../../core/security/capabilities.js';
import { parseMountOptions } from '../../platform/mount-options.js';
import { readUserDb, resolveUser } from '../../platform/user.js';
import { execFailure, processFailure } from '../errors.js';
import { HOST_BOUNDING as BOUNDING, lowerDirs, noEnvironment } from '../host-process.js';
import { CgroupShimRuntime, signalName, type CgroupInstanceFiles } from '../instance-cgroup.js';
import type { StandbyPool } from '../standby-pool.js';
import {
  execMonitorPaths,
  fromShimExit,
  makeExecDir,
  startConflict,
  startExec,
  startMonitor,
  startMonitorIn,
  type ExitOf,
} from '../shim-instance.js';

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

/** The capabilities this process may pass on (all, when /proc does not say). */
const HOST_BOUNDING = BOUNDING ?? ~0n;

export interface ContainerRuntimeOptions {
  /** Runtime files (sockets, specs) per instance: tmpfs in production. */
  runRoot: string;
  shimPath: string;
  cgroups: CgroupDriver;
  /** Parent of every instance's cgroup, e.g. "abode". */
  cgroupParent: string;
  /** Standby monitors already in a fresh cgroup (shared with the vm runtime); without it each create makes its cgroup and starts its monitor. */
  pool?: StandbyPool;
}

/** Containers: namespaces and cgroups around an overlay root, prepared and watched by abode-shim. */
export class ContainerRuntime extends CgroupShimRuntime<CgroupInstanceFiles> implements Runtime {
  readonly name = 'container';
  readonly capabilities = { exec: true, pty: true, stats: true, top: true };

  constructor(private readonly options: ContainerRuntimeOptions) {
    super(options.runRoot, 'c', options.cgroups, options.cgroupParent);
  }

  async create(id: string, bundle: Bundle): Promise<{ pid: number }> {
    const runDir = this.runDir(id);
    await rm(runDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    const rootfs = join(bundle.dir, 'rootfs');
    await mkdir(rootfs, { recursive: true });
    const resources = bundle.spec.linux.resources;
    const { cgroupPath, cgroup, standby } = await this.instanceCgroup(id, resources, this.options.pool);
    try {
      const spec = await this.shimSpec(id, bundle, rootfs, runDir, cgroup.procsFiles());
      const ready = await startMonitorIn(this.options.shimPath, runDir, spec, standby);
      const files: CgroupInstanceFiles = {
        bundleDir: bundle.dir,
        runDir,
        pid: ready.pid,
        shimPid: ready.shimPid,
        cgroupPath,
        socketPath: spec.socketPath,
        exitPath: spec.exitPath,
        ...(standby ? { monitorInCgroup: true } : {}),
      };
      await this.saveFiles(files);
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
    const upperDirs = bundle.rootfs.flatMap((m) =>
      m.options.filter((o) => o.startsWith('upperdir=')).map((o) => o.slice(9)),
    );
    const rootMounts: ShimSpec['mounts'] = bundle.rootfs.map((m) => {
      const parsed = parseMountOptions(m.options);
      return { source: m.source, target: '/', fstype: m.type, ...parsed };
    });
    const userDb = await readUserDb([...upperDirs, ...lowerDirs(bundle.rootfs)]);
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
    await startMonitor(files.socketPath, startConflict(id));
  }

  /** When the monitor is gone, the signal goes to what may remain of the instance directly. */
  protected orphanSignal(signal: number): NodeJS.Signals {
    return signalName(signal);
  }

  /** The exit record with oomKilled from the cgroup (when SIGKILL ended the process). */
  protected override exitOf(files: CgroupInstanceFiles): ExitOf {
    return (record) => this.withOom(files, fromShimExit(record));
  }

  private async withOom(files: CgroupInstanceFiles, exit: ExitStatus): Promise<ExitStatus> {
    if (exit.signal !== 9) return exit;
    try {
      const cgroup = await this.options.cgroups.open(files.cgroupPath);
      return { ...exit, oomKilled: await cgroup.oomKilled() };
    } catch {
      return exit;
    }
  }

  async exec(
    id: string,
    execId: string,
    process: OciProcess,
    options: { openStdin?: boolean } = {},
  ): Promise<ExecHandle> {
    const files = await this.files(id);
    const bundleSpec = await this.bundleSpec(files);
    const rootfs = `/proc/${files.pid}/root`;
    const userDb = await readUserDb([rootfs]);
    const user = resolveUser(process.user.username ?? '', userDb);
    const cgroup = await this.options.cgroups.open(files.cgroupPath);
    const dir = await makeExecDir(files, execId);
    const spec: ShimSpec = {
      mode: 'exec',
      id: execId,
      ...processFields(process, user, bundleSpec.annotations, bundleSpec.linux.seccomp),
      openStdin: options.openStdin ?? false,
      init: false,
      ...noEnvironment(),
      cgroupProcs: cgroup.procsFiles(),
      targetPid: files.pid,
      ...execMonitorPaths(dir),
      holdUntilStart: true,
    };
    return startExec(this.options.shimPath, execId, dir, spec, {
      failure: (error) => execFailure(error, process.args[0]),
    });
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
