/**
 * MicroVMs: the image's layers as a virtio-blk disk, booted in QEMU's microvm with Debian's cloud
 * kernel and abode-agent as PID 1. QEMU runs under abode-shim, which speaks the agent channel over
 * QEMU's stdio (native/agent-protocol.h): the shim stays the instance's monitor, so logs, attach,
 * exit records and daemon restarts work as for containers.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { Duplex } from 'node:stream';
import type {
  Bundle,
  ExecHandle,
  ExitStatus,
  ResourceStats,
  Runtime,
  RuntimeState,
} from '../../core/runtime.js';
import type { OciProcess, OciResources, OciSpec } from '../../core/oci.js';
import { AbodeError, InternalError, NotFoundError, UnavailableError } from '../../core/errors.js';
import type { ShimSpec } from '../../platform/native-protocol.js';
import { shimAttach, shimRequest, shimWait, startShim } from '../../platform/shim.js';
import type { CgroupDriver } from '../../platform/cgroups/index.js';
import { readUserDb, resolveUser } from '../../platform/user.js';
import { ensureKernel, type GuestKernel } from '../../platform/qemu/kernel.js';
import { ensureInitramfs } from '../../platform/qemu/initramfs.js';
import { ensureBaseDisk, ensureOverlayDisk } from '../../platform/qemu/disk.js';
import { hostTscKhz, kernelCmdline, machineSize, qemuArgs } from '../../platform/qemu/args.js';
import { encodeAgentStart, type AgentProcess } from '../../platform/qemu/agent-protocol.js';
import { processFailure } from '../errors.js';
import { consoleTail, fromShimExit, parseStartError, readExit, toExit, type VmFiles } from './files.js';

/** QEMU's own memory beside guest RAM (its code, the kept kernel copy, the TCG cache), added to the cgroup limit. */
const QEMU_OVERHEAD = 192 * 2 ** 20;
/** QEMU runs with the capabilities this process may pass on (it sandboxes itself with -sandbox on). */
const ALL_CAPS = (() => {
  try {
    const line = readFileSync('/proc/self/status', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('CapBnd:'));
    return line ? BigInt(`0x${line.split(/\s+/)[1]}`) : (1n << 41n) - 1n;
  } catch {
    return (1n << 41n) - 1n;
  }
})();

export interface VmRuntimeOptions {
  runRoot: string;
  /** Caches: the kernel, initramfs and per-image root disks (e.g. ROOT/vm). */
  cacheRoot: string;
  shimPath: string;
  agentPath: string;
  cgroups: CgroupDriver;
  cgroupParent: string;
  accelerator: () => Promise<{ name: 'kvm' | 'tcg'; reason: string }>;
  /** qemu-system-x86_64 (a name looked up in PATH, or a path); ABODE_QEMU in the daemon. */
  qemu?: string;
  qemuImg?: string;
  /** A kernel image to boot instead of Debian's cloud kernel; ABODE_VM_KERNEL in the daemon. */
  kernel?: string;
  bootTimeoutMs?: number;
}

/** Finds a binary by path or in PATH. */
function findBinary(name: string): string | undefined {
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** MicroVMs under QEMU, watched by abode-shim, talking to abode-agent in the guest. */
export class VmRuntime implements Runtime {
  readonly name = 'vm';
  readonly capabilities = { exec: true, pty: true, stats: true, top: true };
  private kernel?: Promise<GuestKernel>;

  constructor(private readonly options: VmRuntimeOptions) {}

  private runDir(id: string): string {
    return join(this.options.runRoot, 'v', id.slice(0, 16));
  }

  private async files(id: string): Promise<VmFiles> {
    try {
      return JSON.parse(await readFile(join(this.runDir(id), 'state.json'), 'utf8')) as VmFiles;
    } catch {
      throw new NotFoundError(`instance ${id} has no runtime state`);
    }
  }

  /** QEMU's binary, or an error that says how to install it. */
  qemuBinary(): string {
    const name = this.options.qemu ?? 'qemu-system-x86_64';
    const found = findBinary(name);
    if (!found)
      throw new UnavailableError(
        `QEMU (${name}) is not installed, and VM isolation needs it: install it with apt-get install qemu-system-x86 qemu-utils` +
          (this.options.qemu ? ' (or fix ABODE_QEMU)' : ''),
      );
    return found;
  }

  private guestKernel(): Promise<GuestKernel> {
    this.kernel ??= ensureKernel(join(this.options.cacheRoot, 'kernel'), this.options.kernel).catch(
      (error) => {
        this.kernel = undefined;
        throw error;
      },
    );
    return this.kernel;
  }

  async create(id: string, bundle: Bundle): Promise<{ pid: number }> {
    const qemu = this.qemuBinary();
    const qemuImg = findBinary(this.options.qemuImg ?? 'qemu-img');
    if (!qemuImg)
      throw new UnavailableError('qemu-img is not installed: install it with apt-get install qemu-utils');
    const kernel = await this.guestKernel();
    const initrd = await ensureInitramfs(
      join(this.options.cacheRoot, 'initramfs'),
      this.options.agentPath,
      kernel,
    );
    const lowerdirs = layerDirs(bundle);
    const base = await ensureBaseDisk(join(this.options.cacheRoot, 'disks'), lowerdirs);
    const diskPath = join(bundle.dir, 'disk.qcow2');
    await ensureOverlayDisk(qemuImg, base, diskPath);
    await writeFile(join(bundle.dir, 'vm-layers.json'), JSON.stringify(lowerdirs));

    const runDir = this.runDir(id);
    await rm(runDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    const spec = bundle.spec;
    const size = machineSize(spec.linux.resources?.memory?.limit, nanoCpus(spec.linux.resources));
    const cgroupPath = `${this.options.cgroupParent}/${id}`;
    const cgroup = await this.options.cgroups.create(cgroupPath, hostResources(spec.linux.resources));
    const consolePath = join(runDir, 'console.log');
    const qmpSocket = join(runDir, 'qmp.sock');
    try {
      const accel = await this.options.accelerator();
      const args = qemuArgs({
        qemu,
        accel: accel.name,
        memoryMiB: size.memoryMiB,
        cpus: size.cpus,
        kernel: kernel.image,
        initrd,
        cmdline: kernelCmdline({ tscKhz: await hostTscKhz() }),
        disk: diskPath,
        consolePath,
        qmpSocket,
      });
      const process = await this.agentProcess(spec.process, lowerdirs, spec);
      const shimSpec = hostProcessSpec({
        id,
        args: [qemu, ...args],
        cgroupProcs: cgroup.procsFiles(),
        logPath: bundle.logPath,
        exitPath: join(bundle.dir, 'exit.json'),
        socketPath: join(runDir, 'shim.sock'),
        agent: 'vm',
        agentStart: encodeAgentStart({ ...process, hostname: spec.hostname ?? '' }),
        bootTimeoutMs: this.options.bootTimeoutMs ?? 60_000,
      });
      let ready;
      try {
        ready = await startShim({
          shimPath: this.options.shimPath,
          spec: shimSpec,
          specPath: join(runDir, 'spec.bin'),
          stderrPath: join(runDir, 'shim.stderr'),
        });
      } catch (error) {
        const tail = await consoleTail(consolePath);
        const qemuErr = (await readFile(join(runDir, 'shim.stderr'), 'utf8').catch(() => '')).trim();
        throw new InternalError(
          `the VM did not come up: ${(error as Error).message}` +
            (qemuErr ? `\nQEMU: ${qemuErr.split('\n').slice(-5).join('\n')}` : '') +
            (tail ? `\nlast console lines:\n${tail}` : ''),
        );
      }
      const files: VmFiles = {
        bundleDir: bundle.dir,
        runDir,
        pid: ready.pid,
        shimPid: ready.shimPid,
        cgroupPath,
        socketPath: shimSpec.socketPath,
        exitPath: shimSpec.exitPath,
        consolePath,
        qmpSocket,
        diskPath,
        ...(ready.bootMs !== undefined ? { bootMs: ready.bootMs } : {}),
      };
      await writeFile(join(runDir, 'state.json'), JSON.stringify(files));
      return { pid: ready.pid };
    } catch (error) {
      await cgroup.destroy().catch(() => undefined);
      await rm(runDir, { recursive: true, force: true });
      throw error instanceof AbodeError ? error : processFailure(error, spec.process.args[0] ?? '');
    }
  }

  /** The guest process: the OCI process with its user resolved from the image's /etc/passwd and /etc/group. */
  private async agentProcess(process: OciProcess, lowerdirs: string[], spec: OciSpec): Promise<AgentProcess> {
    const user = resolveUser(process.user.username ?? '', await readUserDb(lowerdirs));
    return {
      args: process.args,
      env: process.env,
      cwd: process.cwd,
      uid: user.uid,
      gid: user.gid,
      additionalGids: user.additionalGids,
      terminal: process.terminal ?? false,
      openStdin: spec.annotations?.['org.abode.open-stdin'] === 'true',
      ...(process.consoleSize ? { rows: process.consoleSize.height, cols: process.consoleSize.width } : {}),
    };
  }

  async start(id: string): Promise<void> {
    const files = await this.files(id);
    const reply = await shimRequest(files.socketPath, 'start');
    if (!reply.startsWith('ok')) {
      const spec = JSON.parse(await readFile(join(files.bundleDir, 'config.json'), 'utf8')) as OciSpec;
      throw processFailure(parseStartError(reply), spec.process.args[0] ?? '');
    }
  }

  async kill(id: string, signal: number): Promise<void> {
    const files = await this.files(id);
    try {
      await shimRequest(files.socketPath, `signal ${signal}`);
    } catch {
      // The monitor is gone: end what may remain (QEMU) directly.
      const cgroup = await this.options.cgroups.open(files.cgroupPath);
      await cgroup.killAll('SIGKILL').catch(() => undefined);
    }
  }

  async state(id: string): Promise<RuntimeState> {
    const files = await this.files(id);
    const exit = await readExit(files.exitPath);
    if (exit) return { status: 'stopped', exit };
    try {
      const reply = (await shimRequest(files.socketPath, 'state')).trim();
      const [status, rest] = [reply.split(' ')[0], reply.slice(reply.indexOf(' ') + 1)];
      if (status === 'running' || status === 'created') return { status, pid: Number(rest) };
      if (status === 'exited') return { status: 'stopped', exit: toExit(rest) };
    } catch {
      // the monitor is gone
    }
    const late = await readExit(files.exitPath);
    if (late) return { status: 'stopped', exit: late };
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

  async wait(id: string): Promise<ExitStatus> {
    const files = await this.files(id);
    try {
      return fromShimExit(await shimWait(files.socketPath, files.exitPath));
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
    const spec = JSON.parse(await readFile(join(files.bundleDir, 'config.json'), 'utf8')) as OciSpec;
    const snapshot = layerDirsFromSpecDir(files.bundleDir);
    const guest = await this.agentProcess(process, await snapshot, spec);
    const dir = join(files.runDir, `exec-${execId.slice(0, 12)}`);
    await mkdir(dir, { recursive: true });
    const shimSpec = hostProcessSpec({
      id: execId,
      args: [this.options.shimPath, '--relay', files.socketPath],
      cgroupProcs: [],
      logPath: join(dir, 'exec.log'),
      exitPath: join(dir, 'exit.json'),
      socketPath: join(dir, 'exec.sock'),
      agent: 'session',
      agentStart: encodeAgentStart({ ...guest, openStdin: options.openStdin ?? false }),
      bootTimeoutMs: 10_000,
    });
    try {
      await startShim({
        shimPath: this.options.shimPath,
        spec: shimSpec,
        specPath: join(dir, 'spec.bin'),
        stderrPath: join(dir, 'shim.stderr'),
      });
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw processFailure(error, process.args[0] ?? '');
    }
    const socket = shimSpec.socketPath;
    return {
      id: execId,
      attach: (opts) => shimAttach(socket, opts),
      start: async () => {
        const reply = await shimRequest(socket, 'start');
        if (!reply.startsWith('ok')) throw processFailure(parseStartError(reply), process.args[0] ?? '');
      },
      wait: async () => {
        try {
          return fromShimExit(await shimWait(socket, shimSpec.exitPath));
        } catch {
          // monitor gone; fall back to its record
        }
        const exit = await readExit(shimSpec.exitPath);
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
    let files: VmFiles;
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
    await cgroup?.killAll('SIGKILL').catch(() => undefined);
    await waitGone(files.shimPid, 5000);
    await cgroup?.destroy();
    await rm(files.runDir, { recursive: true, force: true });
  }
}

/** The image's layer directories (top first) from the snapshotter's overlay mount. */
function layerDirs(bundle: Bundle): string[] {
  const lower = bundle.rootfs.flatMap((m) =>
    m.options.filter((o) => o.startsWith('lowerdir=')).flatMap((o) => o.slice(9).split(':')),
  );
  if (lower.length > 0) return lower;
  return bundle.rootfs.filter((m) => m.type === 'bind').map((m) => m.source);
}

/** For exec's user lookup: the layers recorded in the instance's snapshot, if the bundle says where. */
async function layerDirsFromSpecDir(bundleDir: string): Promise<string[]> {
  const state = await readFile(join(bundleDir, 'vm-layers.json'), 'utf8').catch(() => '[]');
  return JSON.parse(state) as string[];
}

function nanoCpus(resources: OciResources | undefined): number | undefined {
  const cpu = resources?.cpu;
  if (!cpu?.quota || !cpu.period) return undefined;
  return (cpu.quota / cpu.period) * 1e9;
}

/** The cgroup limits for QEMU: the guest's RAM plus QEMU's own overhead; CPU and pids as asked. */
function hostResources(resources: OciResources | undefined): OciResources | undefined {
  if (!resources?.memory?.limit) return resources;
  const limit = resources.memory.limit + QEMU_OVERHEAD;
  return {
    ...resources,
    memory: { ...resources.memory, limit, ...(resources.memory.swap ? { swap: -1 } : {}) },
  };
}

function hostProcessSpec(p: {
  id: string;
  args: string[];
  cgroupProcs: string[];
  logPath: string;
  exitPath: string;
  socketPath: string;
  agent: 'vm' | 'session';
  agentStart: Buffer;
  bootTimeoutMs: number;
}): ShimSpec {
  return {
    mode: 'run',
    id: p.id,
    args: p.args,
    env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    terminal: false,
    openStdin: true,
    noNewPrivileges: false,
    capabilities: {
      bounding: ALL_CAPS,
      effective: ALL_CAPS,
      permitted: ALL_CAPS,
      inheritable: 0n,
      ambient: 0n,
    },
    rlimits: [],
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
    cgroupProcs: p.cgroupProcs,
    logPath: p.logPath,
    exitPath: p.exitPath,
    socketPath: p.socketPath,
    holdUntilStart: true,
    agent: p.agent,
    agentStart: p.agentStart,
    bootTimeoutMs: p.bootTimeoutMs,
  };
}

async function waitGone(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
