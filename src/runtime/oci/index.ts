/**
 * `oci:<binary>`: instances run by an external OCI runtime (runc, crun) through its CLI, watched by the
 * same monitor as abode's own runtime. The instance's process is `<binary> run --bundle DIR ID` in the
 * foreground, started under abode-shim in host mode (rootfs ''): the shim holds it until start, owns
 * its stdio (so the CRI log, attach and resize work as for `container`), records its exit code (which
 * `run` exits with: the container's code, or 128+signal) and outlives the daemon.
 *
 * What differs from `container`:
 * - The root file system is mounted on the host at `bundle.dir/rootfs` (runc pivots into it), and
 *   unmounted by delete().
 * - runc gets its own copy of the bundle (RUN/o/ID16/bundle/config.json): root.path absolute, the user
 *   resolved to numbers, cgroupsPath absolute (`/abode/ID`, the hierarchy root, where `container` puts
 *   its cgroups too; a relative path would land under the daemon's own cgroup).
 * - With a terminal (-t) the shim's pty is runc's stdio and runc runs the process with
 *   `terminal: false`, copying between the pty and pipes: output and input flow, but the process sees
 *   pipes (isatty is false, resize reaches only the outer pty). A real tty needs runc's
 *   --console-socket, which is not done yet.
 * - runc resolves the command only after start; so that a missing command fails create as it does for
 *   `container` (docker's 127), create looks it up in the mounted root file system first.
 * - oomKilled is not reported (runc removes the cgroup when the container ends).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { lstat, mkdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { basename, isAbsolute, join, posix } from 'node:path';
import { promisify } from 'node:util';
import type {
  Bundle,
  ExecHandle,
  ExitStatus,
  ResourceStats,
  Runtime,
  RuntimeCapabilities,
} from '../../core/runtime.js';
import type { OciMount, OciProcess, OciSpec } from '../../core/oci.js';
import type { Mount } from '../../core/image.js';
import { ConflictError, InternalError, UnavailableError } from '../../core/errors.js';
import type { ShimExit, ShimSpec } from '../../platform/native-protocol.js';
import { shimRequest } from '../../platform/shim.js';
import { detectCgroups, type Cgroup, type CgroupDriver } from '../../platform/cgroups/index.js';
import { readUserDb, resolveUser } from '../../platform/user.js';
import { execFailure, processFailure } from '../errors.js';
import { DEFAULT_PATH, findOnPath, hostShimSpec } from '../host-process.js';
import { cgroupStats } from '../instance-cgroup.js';
import {
  execMonitorPaths,
  fromShimExit as shimExitStatus,
  makeExecDir,
  ShimRuntime,
  signalMonitor,
  startConflict,
  startExec,
  startMonitor,
  startMonitorIn,
  type ExitOf,
  type ShimInstanceFiles,
} from '../shim-instance.js';

export { findOnPath } from '../host-process.js';

const run = promisify(execFile);

const ENOENT = 2;
const EACCES = 13;

export interface OciRuntimeOptions {
  /** The OCI runtime: a name looked up on PATH (`runc`, `crun`) or an absolute path. */
  binary: string;
  /** Per-instance files (shim sockets, runc's bundle copy) and the OCI runtime's state (`RUN/<binary>`). */
  runRoot: string;
  shimPath: string;
  /** The name the engine knows it by; default `oci:<basename of binary>`. */
  name?: string;
  /** Used by delete() to remove a cgroup the OCI runtime left; detected when absent. */
  cgroups?: CgroupDriver;
}

/** What the runtime remembers of one instance, so a restarted daemon finds it (`pid` is the held `<binary> run`). */
interface InstanceFiles extends ShimInstanceFiles {
  /** The OCI runtime's copy of the bundle (its config.json). */
  ociBundle: string;
  /** Where the root file system is mounted on the host. */
  rootfs: string;
  runtimeLog: string;
  cgroupsPath: string;
}

/** The OCI runtimes (among `names`) installed on this host, e.g. ['runc']. */
export function installedOciRuntimes(names: readonly string[] = ['runc', 'crun']): string[] {
  return names.filter((name) => findOnPath(name) !== undefined);
}

/** An external OCI runtime (runc, crun) driven through its CLI, under abode-shim. */
export class OciRuntime extends ShimRuntime<InstanceFiles> implements Runtime {
  readonly name: string;
  readonly capabilities: RuntimeCapabilities = { exec: true, pty: true, stats: true, top: true };
  private readonly binaryName: string;
  private cgroups: Promise<CgroupDriver> | undefined;

  constructor(private readonly options: OciRuntimeOptions) {
    super(options.runRoot, 'o');
    this.binaryName = basename(options.binary);
    this.name = options.name ?? `oci:${this.binaryName}`;
    if (options.cgroups) this.cgroups = Promise.resolve(options.cgroups);
  }

  /** The OCI runtime's absolute path; UnavailableError when it is not installed. */
  private binary(): string {
    const found = findOnPath(this.options.binary);
    if (!found)
      throw new UnavailableError(
        `the OCI runtime "${this.options.binary}" is not installed (apt-get install ${this.binaryName})`,
      );
    return found;
  }

  /** The OCI runtime's --root (its state directory). */
  private stateRoot(): string {
    return join(this.options.runRoot, this.binaryName);
  }

  /** Runs `<binary> --root STATE ARGS` and returns its stdout. */
  private async oci(args: string[]): Promise<string> {
    const { stdout } = await run(this.binary(), ['--root', this.stateRoot(), ...args], {
      maxBuffer: 16 << 20,
      timeout: 30_000,
    });
    return stdout;
  }

  /** The OCI runtime's own record of the container (written by `run` once it has created it). */
  private async ociState(id: string): Promise<{ init_process_pid?: number } | undefined> {
    try {
      return JSON.parse(await readFile(join(this.stateRoot(), id, 'state.json'), 'utf8')) as {
        init_process_pid?: number;
      };
    } catch {
      return undefined;
    }
  }

  private async initPid(id: string): Promise<number | undefined> {
    const pid = (await this.ociState(id))?.init_process_pid;
    return pid && existsSync(`/proc/${pid}`) ? pid : undefined;
  }

  async create(id: string, bundle: Bundle): Promise<{ pid: number }> {
    const binary = this.binary();
    const runDir = this.runDir(id);
    await rm(runDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    await mkdir(this.stateRoot(), { recursive: true, mode: 0o700 });
    const rootfs = join(bundle.dir, 'rootfs');
    await mkdir(rootfs, { recursive: true });
    const ociBundle = join(runDir, 'bundle');
    await mkdir(ociBundle);
    let mounted = false;
    try {
      await mountRootfs(bundle.rootfs, rootfs);
      mounted = true;
      const spec = bundle.spec;
      await lookCommand(rootfs, spec.process, spec.mounts);
      const config = await this.ociConfig(id, spec, rootfs);
      await writeFile(join(ociBundle, 'config.json'), JSON.stringify(config, null, 2));
      const runtimeLog = join(runDir, 'runtime.log');
      const socketPath = join(runDir, 'shim.sock');
      const exitPath = join(bundle.dir, 'exit.json');
      const shimSpec = ociShimSpec({
        id,
        args: [
          binary,
          '--root',
          this.stateRoot(),
          '--log',
          runtimeLog,
          '--log-format',
          'json',
          'run',
          '--bundle',
          ociBundle,
          id,
        ],
        cwd: ociBundle,
        terminal: spec.process.terminal ?? false,
        openStdin: spec.annotations?.['org.abode.open-stdin'] === 'true',
        logPath: bundle.logPath,
        exitPath,
        socketPath,
      });
      const ready = await startMonitorIn(this.options.shimPath, runDir, shimSpec);
      const files: InstanceFiles = {
        bundleDir: bundle.dir,
        runDir,
        ociBundle,
        rootfs,
        pid: ready.pid,
        shimPid: ready.shimPid,
        socketPath,
        exitPath,
        runtimeLog,
        cgroupsPath: config.linux.cgroupsPath as string,
      };
      await this.saveFiles(files);
      return { pid: ready.pid };
    } catch (error) {
      if (mounted) await unmount(rootfs).catch(() => undefined);
      await rm(runDir, { recursive: true, force: true });
      throw processFailure(error, bundle.spec.process.args[0] ?? '');
    }
  }

  /** The config.json the OCI runtime reads: the bundle's spec with host paths and numeric ids. */
  private async ociConfig(id: string, spec: OciSpec, rootfs: string): Promise<OciSpec> {
    const config = structuredClone(spec);
    config.root = { path: rootfs, readonly: spec.root.readonly ?? false };
    config.process = await ociProcess(spec.process, [rootfs]);
    const cgroupsPath = spec.linux.cgroupsPath ?? `abode/${id}`;
    config.linux.cgroupsPath = cgroupsPath.startsWith('/') ? cgroupsPath : `/${cgroupsPath}`;
    return config;
  }

  async start(id: string): Promise<void> {
    const files = await this.files(id);
    await startMonitor(files.socketPath, startConflict(id));
    // Return once the OCI runtime has the container (so kill, exec, pids and stats reach it), or it ended.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if ((await this.ociState(id)) || existsSync(files.exitPath)) return;
      const state = await shimRequest(files.socketPath, 'state').catch(() => 'gone');
      if (!state.startsWith('running')) return;
      await sleep(10);
    }
  }

  async kill(id: string, signal: number): Promise<void> {
    const files = await this.files(id);
    if (await this.initPid(id)) {
      try {
        await this.oci(['kill', id, String(signal)]);
        return;
      } catch {
        // not (or no longer) running in the OCI runtime: signal its process instead
      }
    }
    try {
      // Held or still being created: `run` forwards signals to the container once it runs.
      await signalMonitor(files.socketPath, signal);
    } catch {
      // the monitor is gone: the instance has exited
    }
  }

  /** A running instance's pid: the container's init as the OCI runtime knows it, else `run`'s. */
  protected override async runningPid(id: string, childPid: number): Promise<number> {
    return (await this.initPid(id)) ?? childPid;
  }

  /** The monitor's record of `run`, whose exit code is the container's; the OCI runtime's own error added. */
  protected override exitOf(files: InstanceFiles): ExitOf {
    return async (record) => {
      const exit = fromShimExit(record);
      if (exit.exitCode !== 0 && !exit.error) {
        const error = await runtimeError(files.runtimeLog);
        if (error) exit.error = error;
      }
      return exit;
    };
  }

  async exec(id: string, execId: string, process: OciProcess): Promise<ExecHandle> {
    const files = await this.files(id);
    const pid = await this.initPid(id);
    if (!pid) throw new ConflictError(`container ${id} is not running`);
    const bundleSpec = await this.bundleSpec(files);
    const dir = await makeExecDir(files, execId);
    const root = `/proc/${pid}/root`;
    const pidFile = join(dir, 'pid');
    const spec = ociShimSpec({
      id: execId,
      args: [
        this.binary(),
        '--root',
        this.stateRoot(),
        '--log',
        join(dir, 'runtime.log'),
        '--log-format',
        'json',
        'exec',
        '--process',
        join(dir, 'process.json'),
        '--pid-file',
        pidFile,
        id,
      ],
      cwd: dir,
      terminal: process.terminal ?? false,
      openStdin: bundleSpec.annotations?.['org.abode.open-stdin'] === 'true',
      ...execMonitorPaths(dir),
    });
    return startExec(this.options.shimPath, execId, dir, spec, {
      prepare: async () => {
        await lookCommand(root, process, []);
        await writeFile(join(dir, 'process.json'), JSON.stringify(await ociProcess(process, [root])));
      },
      failure: (error) => execFailure(error, process.args[0] ?? ''),
      exitOf: fromShimExit,
      // `exec` forwards signals, but not SIGKILL: signal the exec'd process itself when it is known.
      kill: async (signal) => {
        const execPid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
        if (execPid > 0) {
          try {
            globalThis.process.kill(execPid, signal);
            return;
          } catch {
            // gone, or not yet started
          }
        }
        await signalMonitor(spec.socketPath, signal);
      },
    });
  }

  /** The instance's cgroup as the OCI runtime made it (for what its CLI does not offer). */
  private async cgroup(files: Pick<InstanceFiles, 'cgroupsPath'>): Promise<Cgroup> {
    this.cgroups ??= detectCgroups();
    return (await this.cgroups).open(files.cgroupsPath.replace(/^\/+/, ''));
  }

  async stats(id: string): Promise<ResourceStats> {
    const files = await this.files(id);
    let out: string;
    try {
      out = await this.oci(['events', '--stats', id]);
    } catch (error) {
      // Not every OCI runtime has `events` (crun): read the cgroup it made.
      return this.cgroup(files)
        .then(cgroupStats)
        .catch(() => {
          throw new ConflictError(`cannot read the stats of ${id}: ${stderrOf(error)}`);
        });
    }
    const data = (JSON.parse(out) as { data?: OciStats }).data ?? {};
    const limit = (n: number | undefined): number | null =>
      n === undefined || n === 0 || n >= 2 ** 62 ? null : n;
    return {
      memory: { usage: data.memory?.usage?.usage ?? 0, limit: limit(data.memory?.usage?.limit) },
      cpu: { usageNs: data.cpu?.usage?.total ?? 0 },
      pids: { current: data.pids?.current ?? 0, limit: limit(data.pids?.limit) },
    };
  }

  async pids(id: string): Promise<number[]> {
    const files = await this.files(id);
    if (!(await this.ociState(id))) return [];
    try {
      const pids = JSON.parse(await this.oci(['ps', '--format', 'json', id])) as number[] | null;
      return (pids ?? []).sort((a, b) => a - b);
    } catch {
      return this.cgroup(files)
        .then((cgroup) => cgroup.pids())
        .catch(() => []);
    }
  }

  async delete(id: string): Promise<void> {
    const files = await this.files(id).catch(() => undefined);
    const known = (await this.ociState(id)) !== undefined;
    if (known) await this.oci(['kill', id, 'KILL']).catch(() => undefined);
    if (files) {
      // A running container: let `run` see it die and clean up after it. A held one: end the monitor.
      if (!known || !(await gone(files, 5_000))) {
        await shimRequest(files.socketPath, 'signal 9').catch(() => undefined);
        if (!(await gone(files, 5_000)) && isShim(files.shimPid, files.runDir)) {
          try {
            process.kill(files.shimPid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
    }
    if (await this.ociState(id)) await this.oci(['delete', '--force', id]).catch(() => undefined);
    await rm(join(this.stateRoot(), id), { recursive: true, force: true });
    if (files) await unmount(files.rootfs);
    try {
      await (await this.cgroup(files ?? { cgroupsPath: `abode/${id}` })).destroy();
    } catch {
      // no cgroup left
    }
    await rm(this.runDir(id), { recursive: true, force: true });
  }
}

interface OciStats {
  cpu?: { usage?: { total?: number } };
  memory?: { usage?: { usage?: number; limit?: number } };
  pids?: { current?: number; limit?: number };
}

/** A monitor spec that runs `args` in the host's file system (the OCI runtime does the isolating). */
function ociShimSpec(
  p: Pick<ShimSpec, 'id' | 'args' | 'cwd' | 'terminal' | 'openStdin' | 'logPath' | 'exitPath' | 'socketPath'>,
): ShimSpec {
  return hostShimSpec({ ...p, env: [`PATH=${process.env.PATH ?? DEFAULT_PATH}`], cgroupProcs: [] });
}

/** The process as an OCI runtime takes it: numeric user (resolved in `roots`), no terminal (see above). */
async function ociProcess(process: OciProcess, roots: string[]): Promise<OciProcess> {
  const user = resolveUser(process.user.username ?? '', await readUserDb(roots), {
    uid: process.user.uid,
    gid: process.user.gid,
  });
  const out: OciProcess = { ...process, terminal: false, user: { ...user } };
  delete out.consoleSize;
  return out;
}

/** Mounts the snapshotter's mounts on `target`, in order. */
async function mountRootfs(mounts: Mount[], target: string): Promise<void> {
  if (mounts.length === 0) throw new InternalError('the bundle has no root file system mounts');
  for (const m of mounts) {
    const options = m.options.filter((o) => o !== '');
    try {
      await run('mount', [
        '-t',
        m.type,
        ...(options.length ? ['-o', options.join(',')] : []),
        m.source,
        target,
      ]);
    } catch (error) {
      await unmount(target).catch(() => undefined);
      throw new InternalError(`cannot mount the root file system on ${target}: ${stderrOf(error)}`);
    }
  }
}

/** Unmounts everything on `target` (stacked mounts too); nothing mounted is fine. */
async function unmount(target: string): Promise<void> {
  for (let i = 0; i < 8 && (await isMountPoint(target)); i++) {
    try {
      await run('umount', [target]);
    } catch {
      await run('umount', ['-l', target]).catch(() => undefined);
    }
  }
}

async function isMountPoint(path: string): Promise<boolean> {
  try {
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    return info.split('\n').some((line) => unescapeMount(line.split(' ')[4] ?? '') === path);
  } catch {
    return false;
  }
}

function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Looks the command up in `root` as the OCI runtime will after start (PATH from the process's env,
 * symlinks resolved inside root) and fails as `container` would: command_not_found or cannot_execute.
 * A command under one of `mounts` (a volume) is left for the runtime to find.
 */
async function lookCommand(root: string, process: OciProcess, mounts: OciMount[]): Promise<void> {
  const name = process.args[0] ?? '';
  const fail = (errno: number, path: string) => {
    throw { step: 'exec', errno, path, message: `exec ${name}` };
  };
  const underMount = (path: string) =>
    mounts.some(
      (m) =>
        !['/proc', '/dev', '/sys'].some((p) => m.destination === p || m.destination.startsWith(`${p}/`)) &&
        (path === m.destination || path.startsWith(`${m.destination.replace(/\/$/, '')}/`)),
    );
  if (name === '') return fail(ENOENT, name);
  if (name.includes('/')) {
    const path = posix.resolve(process.cwd || '/', name);
    if (underMount(path)) return;
    const found = await resolveInRoot(root, path);
    if (!found) return fail(ENOENT, name);
    if (!(await isExecutable(found))) return fail(EACCES, name);
    return;
  }
  const pathEnv = process.env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
  let denied = false;
  for (const dir of pathEnv.split(':')) {
    const path = posix.resolve(process.cwd || '/', dir || '.', name);
    if (underMount(path)) return;
    const found = await resolveInRoot(root, path);
    if (!found) continue;
    if (await isExecutable(found)) return;
    denied = true;
  }
  return fail(denied ? EACCES : ENOENT, name);
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const st = await stat(path);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The host path of `path` inside `root`, following symlinks without leaving root; undefined if missing. */
async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  let pending = path.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  for (let hops = 0; pending.length > 0;) {
    const part = pending.shift() as string;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, part);
    let st;
    try {
      st = await lstat(host);
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) {
      done.push(part);
      continue;
    }
    if (++hops > 40) return undefined;
    const target = await readlink(host);
    const parts = target.split('/').filter((p) => p !== '' && p !== '.');
    if (isAbsolute(target)) done.length = 0;
    pending = [...parts, ...pending];
  }
  return join(root, ...done);
}

/** The last error the OCI runtime logged (its --log, JSON lines), if any. */
async function runtimeError(logPath: string): Promise<string | undefined> {
  try {
    const lines = (await readFile(logPath, 'utf8')).split('\n').filter(Boolean);
    for (const line of lines.reverse()) {
      try {
        const entry = JSON.parse(line) as { level?: string; msg?: string };
        if ((entry.level === 'error' || entry.level === 'fatal') && entry.msg) return entry.msg;
      } catch {
        // not JSON
      }
    }
  } catch {
    // no log
  }
  return undefined;
}

/** Resolves true once the monitor has exited (its socket is gone), false after `ms`. */
async function gone(files: InstanceFiles, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!existsSync(files.socketPath) && !isShim(files.shimPid, files.runDir)) return true;
    await sleep(20);
  }
  return false;
}

/** Whether `pid` is still this instance's monitor (not a reused pid). */
function isShim(pid: number, runDir: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return cmdline.includes(runDir) && !/^State:\s+Z/m.test(status);
  } catch {
    return false;
  }
}

/** The monitor's record of `run`, which exits with 128+signal when a signal ended the container. */
function fromShimExit(record: ShimExit): ExitStatus {
  const signal =
    record.signal || (record.exitCode > 128 && record.exitCode <= 128 + 64 ? record.exitCode - 128 : 0);
  return { ...shimExitStatus(record), signal };
}

function stderrOf(error: unknown): string {
  const e = error as { stderr?: string; message?: string };
  return (e.stderr || e.message || String(error)).trim();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
