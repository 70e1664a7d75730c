/**
 * MicroVMs: the image's layers as a virtio-blk disk, booted in QEMU's microvm with Debian's cloud
 * kernel and abode-agent as PID 1. QEMU runs under abode-shim, which speaks the agent channel over
 * QEMU's stdio (native/agent-protocol.h): the shim stays the instance's monitor, so logs, attach,
 * exit records and daemon restarts work as for containers.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type {
  Bundle,
  ExecHandle,
  ProcessTable,
  ResourceStats,
  Runtime,
  RuntimeState,
} from '../../core/runtime.js';
import type { OciProcess, OciResources, OciSpec } from '../../core/oci.js';
import { AbodeError, InternalError, InvalidArgumentError, UnavailableError } from '../../core/errors.js';
import { criLogText } from '../../core/cri-log.js';
import type { ShimSpec } from '../../platform/native-protocol.js';
import type { Cgroup, CgroupDriver } from '../../platform/cgroups/index.js';
import { readUserDb, resolveUser } from '../../platform/user.js';
import { ensureKernel, type GuestKernel } from '../../platform/qemu/kernel.js';
import { ensureInitramfs } from '../../platform/qemu/initramfs.js';
import {
  createPlaceholderDisk,
  ensureBaseDisk,
  ensureOverlayDisk,
  sweepBaseDisks,
} from '../../platform/qemu/disk.js';
import {
  hostTscKhz,
  kernelCmdline,
  machineSize,
  MIN_GUEST_MIB,
  qemuArgs,
  templateCmdline,
  type VmMachine,
} from '../../platform/qemu/args.js';
import {
  encodeAgentStart,
  guestProcessTable,
  rootProcess,
  type AgentMount,
  type AgentProcess,
  type AgentTmpfs,
} from '../../platform/qemu/agent-protocol.js';
import { parseMountOptions } from '../../platform/mount-options.js';
import { startVirtiofsd, type Share } from '../../platform/qemu/virtiofsd.js';
import { qmpGuestMemory, qmpRestore, qmpSnapshot, qmpStatus } from '../../platform/qemu/qmp.js';
import { processFailure } from '../errors.js';
import { findOnPath, hostShimSpec, lowerDirs } from '../host-process.js';
import { CgroupShimRuntime } from '../instance-cgroup.js';
import type { StandbyPool } from '../standby-pool.js';
import { execMonitorPaths, makeExecDir, startExec, startMonitor, startMonitorIn } from '../shim-instance.js';
import { consoleTail, parseStartError, type VmFiles } from './files.js';
import {
  MemoryHolder,
  templateKey,
  writeTemplateRecord,
  type BuiltTemplate,
  type Template,
  type VmTemplates,
} from './templates.js';

/** How long `top` waits for the guest's process list. */
const TOP_TIMEOUT_MS = 10_000;

/** Beside the shim: lets a copy of a template give guest pages back under QEMU 7.2 (native/qemu-discard.c). */
const DISCARD_PRELOAD = 'abode-qemu-discard.so';

/** How long a template's guest gets to give its free pages back before its snapshot (reporting waits 2 s). */
const TEMPLATE_SETTLE_MS = 2500;

/** QEMU's own memory beside guest RAM (its code, the kept kernel copy, the TCG cache), added to the cgroup limit. */
export const QEMU_OVERHEAD = 192 * 2 ** 20;

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
  /** virtiofsd (default: Debian's /usr/lib/qemu/virtiofsd). */
  virtiofsd?: string;
  /** TCG's translation cache in MiB (ABODE_TCG_CACHE_MIB in the daemon): less memory, slower boots. */
  tcgCacheMiB?: number;
  /** Standby monitors already in a cgroup of their own (QEMU then starts inside it, no migration). */
  pool?: StandbyPool;
  /** VM templates to restore from (and build after a boot); without it every VM boots. */
  templates?: VmTemplates;
}

/** The OCI annotation that carries `--kernel` to the runtime. */
export const KERNEL_ANNOTATION = 'org.abode.kernel';
/** The OCI annotation that says the instance is removed when it exits (--rm): its disk is thrown away. */
export const AUTO_REMOVE_ANNOTATION = 'org.abode.auto-remove';

/** Mounts of every container's spec that the guest makes itself. */
const GUEST_OWN_MOUNTS = new Set(['/dev', '/dev/shm']);

/** Bind mounts the engine adds for every instance; a VM writes these files itself. */
const ENGINE_FILES = new Set(['/etc/resolv.conf', '/etc/hostname', '/etc/hosts']);

/** Finds a binary by path or in PATH. */
function findBinary(name: string): string | undefined {
  return findOnPath(name, process.env.PATH ?? GUEST_PATH);
}

/** PATH for QEMU and the exec relay (and where to look for them when the daemon has no PATH). */
const GUEST_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** MicroVMs under QEMU, watched by abode-shim, talking to abode-agent in the guest. */
export class VmRuntime extends CgroupShimRuntime<VmFiles> implements Runtime {
  readonly name = 'vm';
  readonly capabilities = { exec: true, pty: true, stats: true, top: true };
  private kernel?: Promise<GuestKernel>;

  constructor(private readonly options: VmRuntimeOptions) {
    super(options.runRoot, 'v', options.cgroups, options.cgroupParent);
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
    checkMemory(bundle.spec.linux.resources?.memory?.limit);
    const qemu = this.qemuBinary();
    const qemuImg = findBinary(this.options.qemuImg ?? 'qemu-img');
    if (!qemuImg)
      throw new UnavailableError('qemu-img is not installed: install it with apt-get install qemu-utils');
    const ownKernel = bundle.spec.annotations?.[KERNEL_ANNOTATION];
    const kernel = ownKernel
      ? await ensureKernel(join(this.options.cacheRoot, 'kernel'), ownKernel, '--kernel')
      : await this.guestKernel();
    const volumes = await sharedDirectories(bundle.spec);
    if (volumes.length > 0 && kernel.modules.length > 0 && kernel.virtiofsModules.length === 0)
      throw new UnavailableError(
        `the guest kernel ${kernel.image} has no virtio-fs modules that abode knows of, and -v in a VM needs them`,
      );
    const initrd = await ensureInitramfs(
      join(this.options.cacheRoot, 'initramfs'),
      this.options.agentPath,
      kernel,
    );
    const lowerdirs = layerDirs(bundle);
    const disks = join(this.options.cacheRoot, 'disks');
    const base = await ensureBaseDisk(disks, lowerdirs);
    // The disks of removed images go now (a removal does not reach the runtime), beside this create.
    void sweepBaseDisks(disks).catch(() => undefined);
    const diskPath = join(bundle.dir, 'disk.qcow2');
    await ensureOverlayDisk(qemuImg, base, diskPath);
    await writeFile(join(bundle.dir, 'vm-layers.json'), JSON.stringify(lowerdirs));

    const spec = bundle.spec;
    const size = machineSize(spec.linux.resources?.memory?.limit, nanoCpus(spec.linux.resources));
    const accel = await this.options.accelerator();
    const machine = {
      qemu,
      accel: accel.name,
      memoryMiB: size.memoryMiB,
      cpus: size.cpus,
      ...(this.options.tcgCacheMiB ? { tcgCacheMiB: this.options.tcgCacheMiB } : {}),
      kernel: kernel.image,
      initrd,
      cmdline: kernelCmdline({ tscKhz: await hostTscKhz() }),
    };
    // virtio-fs needs guest RAM that virtiofsd maps too: a VM with shares always boots.
    const key =
      this.options.templates && volumes.length === 0
        ? await templateKey(machine).catch(() => undefined)
        : undefined;
    const template = key ? this.options.templates!.get(key) : undefined;
    const boot = { id, bundle, volumes, lowerdirs, diskPath, machine, kernel };
    if (template) {
      try {
        return await this.boot(boot, template);
      } catch (error) {
        if (!(error instanceof CopyFailedError)) throw error;
        // A copy that does not come up costs its template (it is built again), never the run.
        this.options.templates!.drop(key!, error.message);
      }
    }
    const created = await this.boot(boot);
    if (key) this.options.templates!.prepare(key, () => this.buildTemplate(key, machine, qemuImg));
    return created;
  }

  /** Boots the VM, or restores it from `template`; on failure nothing of it is left. */
  private async boot(
    b: {
      id: string;
      bundle: Bundle;
      volumes: SharedDirectory[];
      lowerdirs: string[];
      diskPath: string;
      machine: Omit<VmMachine, 'consolePath'>;
      kernel: GuestKernel;
    },
    template?: Template,
  ): Promise<{ pid: number }> {
    const { id, bundle, volumes, lowerdirs, diskPath, machine, kernel } = b;
    const runDir = this.runDir(id);
    await rm(runDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    const spec = bundle.spec;
    const resources = hostResources(spec.linux.resources);
    const { cgroupPath, cgroup, standby } = await this.instanceCgroup(id, resources, this.options.pool);
    const consolePath = join(runDir, 'console.log');
    const qmpSocket = join(runDir, 'qmp.sock');
    const discardRoot = spec.annotations?.[AUTO_REMOVE_ANNOTATION] === 'true';
    const sharePids: number[] = [];
    try {
      const shares: Share[] = volumes.map((v, i) => ({
        tag: `abode${i}`,
        source: v.source,
        readOnly: v.readOnly,
        socket: join(runDir, `fs${i}.sock`),
        logPath: join(runDir, `virtiofsd${i}.log`),
      }));
      for (const share of shares)
        sharePids.push(await startVirtiofsd(share, cgroup.procsFiles(), this.options.virtiofsd));
      const mounts: AgentMount[] = shares.map((share, i) => ({
        tag: share.tag,
        destination: volumes[i]!.destination,
        readOnly: share.readOnly,
      }));
      const args = qemuArgs({
        ...machine,
        ...(template
          ? { cmdline: templateCmdline(machine.cmdline), template: { memory: template.memory, role: 'copy' } }
          : {}),
        disk: diskPath,
        diskDisposable: discardRoot,
        consolePath,
        qmpSocket,
        shares: shares.map((share) => ({ tag: share.tag, socket: share.socket })),
      });
      const process = await this.agentProcess(spec.process, lowerdirs, spec);
      const shimSpec = hostProcessSpec({
        id,
        args: [machine.qemu, ...args],
        cgroupProcs: cgroup.procsFiles(),
        logPath: bundle.logPath,
        exitPath: join(bundle.dir, 'exit.json'),
        socketPath: join(runDir, 'shim.sock'),
        agent: 'vm',
        agentStart: encodeAgentStart({
          ...process,
          hostname: spec.hostname ?? '',
          readOnly: spec.root.readonly ?? false,
          mounts,
          tmpfs: userTmpfs(spec),
          discardRoot,
        }),
        // A boot takes ~1 s under TCG: 30 s is ample, and a hung one is reported (with its console)
        // before a caller's own minute runs out. A copy is up in ~0.2 s: one that is not within 10 s
        // is given up for a boot.
        bootTimeoutMs: Math.min(this.options.bootTimeoutMs ?? 30_000, template ? 10_000 : Infinity),
        // As /proc/PID/maps names them.
        reclaimFiles: await Promise.all([kernel.image, machine.initrd].map((file) => realpath(file))),
        ...(template
          ? { agentResume: true, preload: join(dirname(this.options.shimPath), DISCARD_PRELOAD) }
          : {}),
      });
      let ready;
      try {
        const started = startMonitorIn(this.options.shimPath, runDir, shimSpec, standby);
        if (template) {
          // A copy waits for its device state. Whichever of the two fails first ends the attempt:
          // QEMU is ended (the monitor then gives up at once), and the restore stops asking.
          let monitorDone = false;
          void started.then(
            () => (monitorDone = true),
            () => (monitorDone = true),
          );
          const restored = qmpRestore(qmpSocket, template.state, { giveUp: () => monitorDone });
          try {
            await Promise.all([restored, started]);
          } catch (error) {
            await cgroup.killAll('SIGKILL').catch(() => undefined);
            await Promise.allSettled([restored, started]);
            throw error;
          }
        }
        ready = await started;
      } catch (error) {
        const tail = await consoleTail(consolePath);
        const qemuErr = (await readFile(join(runDir, 'shim.stderr'), 'utf8').catch(() => '')).trim();
        const message =
          `the VM did not come up: ${(error as Error).message}` +
          (qemuErr ? `\nQEMU: ${qemuErr.split('\n').slice(-5).join('\n')}` : '') +
          (tail ? `\nlast console lines:\n${tail}` : '');
        throw template ? new CopyFailedError(message) : new InternalError(message);
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
        ...(standby ? { monitorInCgroup: true } : {}),
        ...(ready.bootMs !== undefined ? { bootMs: ready.bootMs } : {}),
        ...(template ? { restored: true } : {}),
      };
      await this.saveFiles(files);
      return { pid: ready.pid };
    } catch (error) {
      for (const pid of sharePids) killQuietly(pid);
      await cgroup.killAll('SIGKILL').catch(() => undefined);
      await cgroup.destroy().catch(() => undefined);
      await rm(runDir, { recursive: true, force: true });
      throw error instanceof AbodeError ? error : processFailure(error, spec.process.args[0] ?? '');
    }
  }

  /** VM templates for `abode info`: off, or the ready ones. */
  async templatesInfo(): Promise<{
    Enabled: boolean;
    Ready: { MemoryMiB: number; Cpus: number; HeldBytes: number }[];
  }> {
    const ready = (await this.options.templates?.describe()) ?? [];
    return {
      Enabled: this.options.templates !== undefined,
      Ready: ready.map((t) => ({ MemoryMiB: t.memoryMiB, Cpus: t.cpus, HeldBytes: t.heldBytes })),
    };
  }

  /**
   * Ends what templates a previous daemon left (its holders ended with it; a build it had under way did
   * not) and their files. Run at the daemon's start, and at its end for builds still under way.
   */
  async sweepTemplates(): Promise<void> {
    this.options.templates?.close();
    const dir = join(this.options.runRoot, 'templates');
    const keys = await readdir(dir).catch(() => [] as string[]);
    for (const key of keys) {
      const cgroup = await this.options.cgroups
        .open(join(this.options.cgroupParent, `template-${key}`))
        .catch(() => undefined);
      await cgroup?.killAll('SIGKILL').catch(() => undefined);
      await cgroup?.destroy().catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
  }

  /**
   * Boots a template of the machine (no disk of an image's: a placeholder), waits for the guest to give
   * its free pages back, snapshots it and seals its memory. Runs beside the VMs, in a cgroup of its own.
   */
  private async buildTemplate(
    key: string,
    machine: Omit<VmMachine, 'consolePath'>,
    qemuImg: string,
  ): Promise<BuiltTemplate> {
    const dir = join(this.options.runRoot, 'templates', key);
    const cgroupPath = join(this.options.cgroupParent, `template-${key}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const holder = await MemoryHolder.start(this.options.shimPath, machine.memoryMiB * 2 ** 20);
    let cgroup: Cgroup | undefined;
    try {
      cgroup = await this.options.cgroups.create(cgroupPath, {
        memory: { limit: machine.memoryMiB * 2 ** 20 + QEMU_OVERHEAD },
      });
      const disk = join(dir, 'placeholder.qcow2');
      await createPlaceholderDisk(qemuImg, disk);
      const qmpSocket = join(dir, 'qmp.sock');
      const args = qemuArgs({
        ...machine,
        cmdline: templateCmdline(machine.cmdline),
        template: { memory: holder.path, role: 'boot' },
        disk,
        consolePath: join(dir, 'console.log'),
        qmpSocket,
      });
      const booted = await startMonitorIn(
        this.options.shimPath,
        dir,
        hostProcessSpec({
          id: `template-${key}`,
          args: [machine.qemu, ...args],
          cgroupProcs: cgroup.procsFiles(),
          logPath: join(dir, 'log'),
          exitPath: join(dir, 'exit.json'),
          socketPath: join(dir, 'shim.sock'),
          agent: 'vm',
          agentStart: Buffer.alloc(0),
          bootTimeoutMs: this.options.bootTimeoutMs ?? 30_000,
        }),
      );
      // Free page reporting gives the host the guest's free pages ~2 s after they are freed: the
      // snapshot's memory then holds only what the guest uses.
      await new Promise((resolve) => setTimeout(resolve, TEMPLATE_SETTLE_MS));
      const state = join(dir, 'state');
      await qmpSnapshot(qmpSocket, state);
      await cgroup.killAll('SIGKILL');
      // The seal waits for the last shared writable mapping to go: QEMU's.
      await waitGone(booted.pid, 5000);
      await holder.seal();
      const template = { memory: holder.path, state };
      await writeTemplateRecord(dir, {
        ...template,
        holderPid: holder.pid,
        memoryMiB: machine.memoryMiB,
        cpus: machine.cpus,
      });
      return { template, holder, memoryMiB: machine.memoryMiB, cpus: machine.cpus };
    } catch (error) {
      holder.kill();
      throw error;
    } finally {
      await cgroup?.killAll('SIGKILL').catch(() => undefined);
      await cgroup?.destroy().catch(() => undefined);
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
    await startMonitor(files.socketPath, async (reply) => {
      const spec = await this.bundleSpec(files);
      const failure = parseStartError(reply);
      // The guest never got to the process (the shim's deadline): what its console said is the clue.
      const tail = failure.step === 'boot' ? await consoleTail(files.consolePath) : '';
      if (tail) failure.message += `\nlast console lines:\n${tail}`;
      return processFailure(failure, spec.process.args[0] ?? '');
    });
  }

  /**
   * The monitor's view, checked against QEMU's (QMP query-status): a VM whose guest panicked or whose
   * emulation failed would otherwise sit "running" for ever; it is killed, and its exit recorded.
   */
  override async state(id: string): Promise<RuntimeState> {
    const state = await super.state(id);
    if (state.status !== 'running') return state;
    const files = await this.files(id);
    const status = await qmpStatus(files.qmpSocket, 1000).catch(() => undefined);
    if (status === 'guest-panicked' || status === 'internal-error') {
      await this.kill(id, 9).catch(() => undefined);
    }
    return state;
  }

  /** The cgroup's figures (QEMU's real cost on the host), with the guest's RAM (QMP query-balloon) as the limit. */
  override async stats(id: string): Promise<ResourceStats> {
    const stats = await super.stats(id);
    const files = await this.files(id);
    const guest = await qmpGuestMemory(files.qmpSocket, 1000).catch(() => undefined);
    return guest ? { ...stats, memory: { ...stats.memory, limit: guest } } : stats;
  }

  /** When the monitor is gone, what may remain (QEMU) is ended. */
  protected orphanSignal(): NodeJS.Signals {
    return 'SIGKILL';
  }

  async exec(
    id: string,
    execId: string,
    process: OciProcess,
    options: { openStdin?: boolean } = {},
  ): Promise<ExecHandle> {
    const files = await this.files(id);
    const spec = await this.bundleSpec(files);
    const snapshot = layerDirsFromSpecDir(files.bundleDir);
    const guest = await this.agentProcess(process, await snapshot, spec);
    const dir = await makeExecDir(files, execId);
    return this.startSession(files, execId, dir, { ...guest, openStdin: options.openStdin ?? false });
  }

  /** A new session on the VM's agent channel, under a monitor of its own in `dir` (exec, top). */
  private startSession(
    files: VmFiles,
    execId: string,
    dir: string,
    guest: AgentProcess,
  ): Promise<ExecHandle> {
    const command = guest.args[0] ?? '';
    const shimSpec = hostProcessSpec({
      id: execId,
      args: [this.options.shimPath, '--relay', files.socketPath],
      cgroupProcs: [],
      ...execMonitorPaths(dir),
      agent: 'session',
      agentStart: encodeAgentStart(guest),
      bootTimeoutMs: 10_000,
    });
    return startExec(this.options.shimPath, execId, dir, shimSpec, {
      failure: (error) => processFailure(error, command),
      startFailure: (reply) => processFailure(parseStartError(reply), command),
    });
  }

  /** The guest's processes (the agent lists them in a session of their own), not QEMU's on the host. */
  async top(id: string): Promise<ProcessTable> {
    const files = await this.files(id);
    const execId = randomBytes(32).toString('hex');
    const dir = await makeExecDir(files, execId);
    try {
      const handle = await this.startSession(files, execId, dir, {
        ...rootProcess(['ps']),
        listProcesses: true,
      });
      // A guest that does not answer must not hold the caller: its listing is ended after a while.
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([
        handle.start().then(() => handle.wait()),
        new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), TOP_TIMEOUT_MS))),
      ])
        .catch(async (error: unknown) => {
          await handle.kill(9).catch(() => undefined);
          throw error;
        })
        .finally(() => clearTimeout(timer));
      if (exit === 'timeout') {
        await handle.kill(9).catch(() => undefined);
        throw new InternalError(`the guest did not list its processes within ${TOP_TIMEOUT_MS / 1000} s`);
      }
      if (exit.exitCode !== 0 || exit.error)
        throw new InternalError(`the guest's process list failed: ${exit.error ?? `exit ${exit.exitCode}`}`);
      return guestProcessTable(criLogText(await readFile(execMonitorPaths(dir).logPath, 'utf8'), 'stdout'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** QEMU may outlive the shim's SIGKILL briefly: end it, and let the shim record the exit first. */
  protected override async settle(files: VmFiles, cgroup: Cgroup | undefined): Promise<void> {
    await cgroup?.killAll('SIGKILL').catch(() => undefined);
    await waitGone(files.shimPid, 5000);
  }
}

/** A copy of a template that did not come up (its restore or its monitor failed): the VM boots instead. */
class CopyFailedError extends InternalError {}

/** Refuses guest RAM the guest cannot boot in, in the words of the flag that asked for it. */
function checkMemory(limit: number | undefined): void {
  if (limit === undefined || limit >= MIN_GUEST_MIB * 2 ** 20) return;
  const MiB = 2 ** 20;
  const asked = limit % MiB === 0 ? `${limit / MiB}m` : limit % 1024 === 0 ? `${limit / 1024}k` : `${limit}b`;
  throw new InvalidArgumentError(
    `a VM needs at least ${MIN_GUEST_MIB}MiB of memory; --memory ${asked} is too little`,
  );
}

/** A host directory that -v shares with the guest. */
interface SharedDirectory {
  source: string;
  destination: string;
  readOnly: boolean;
}

/** The user's volumes (-v, named volumes: bind mounts in the spec), shared over virtio-fs; directories only. */
async function sharedDirectories(spec: OciSpec): Promise<SharedDirectory[]> {
  const binds = (spec.mounts ?? []).filter((m) => m.type === 'bind' && !ENGINE_FILES.has(m.destination));
  return Promise.all(
    binds.map(async (m) => {
      const info = await stat(m.source!).catch(() => undefined);
      if (!info)
        throw new InvalidArgumentError(`invalid mount config: bind source path does not exist: ${m.source}`);
      if (!info.isDirectory())
        throw new InvalidArgumentError(
          `a VM shares directories only (virtio-fs): -v ${m.source}:${m.destination} names a file`,
        );
      return { source: m.source!, destination: m.destination, readOnly: (m.options ?? []).includes('ro') };
    }),
  );
}

/** The instance's --tmpfs mounts (not the /dev and /dev/shm every container gets: the guest has its own). */
function userTmpfs(spec: OciSpec): AgentTmpfs[] {
  return (spec.mounts ?? [])
    .filter((m) => m.type === 'tmpfs' && !GUEST_OWN_MOUNTS.has(m.destination))
    .map((m) => {
      const { flags, data } = parseMountOptions(m.options);
      return { destination: m.destination, flags, data };
    });
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** The image's layer directories (top first) from the snapshotter's overlay mount. */
function layerDirs(bundle: Bundle): string[] {
  const lower = lowerDirs(bundle.rootfs);
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

/** QEMU (or an exec's relay) under the monitor in agent mode: in the host's file system, with the host's capabilities (QEMU sandboxes itself with -sandbox on). */
function hostProcessSpec(
  p: Pick<
    ShimSpec,
    'id' | 'args' | 'cgroupProcs' | 'logPath' | 'exitPath' | 'socketPath' | 'agentStart' | 'bootTimeoutMs'
  > &
    Pick<Partial<ShimSpec>, 'reclaimFiles' | 'agentResume'> & { agent: 'vm' | 'session'; preload?: string },
): ShimSpec {
  const { preload, ...spec } = p;
  const env = [`PATH=${GUEST_PATH}`, ...(preload ? [`LD_PRELOAD=${preload}`] : [])];
  return hostShimSpec({ ...spec, env, cwd: '/', terminal: false, openStdin: true });
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
