/**
 * The composition root: wires the state store, images, runtimes, engine and API, then serves the API on
 * the daemon's unix socket. Instances outlive this process; on start it finds what an earlier one left.
 */
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolvePaths } from '../core/paths.js';
import { StateStore } from '../engine/state-store.js';
import { Engine } from '../engine/engine.js';
import { createApiServer } from '../api/server.js';
import { createImageService } from '../image/index.js';
import { detectCgroups } from '../platform/cgroups/index.js';
import { ContainerRuntime } from '../runtime/container/index.js';
import { VmRuntime } from '../runtime/vm/index.js';
import { VmTemplates } from '../runtime/vm/templates.js';
import { StandbyPool } from '../runtime/standby-pool.js';
import { installedOciRuntimes, OciRuntime } from '../runtime/oci/index.js';
import { accelerator, hardLimits, hostCpu, instanceResolvConf, processTable } from '../platform/host.js';
import { cpus, release, totalmem } from 'node:os';

export const VERSION = '0.1.0';
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${message}\n`);
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const socket = connect(path);
    socket.on('connect', () => {
      socket.destroy();
      resolveAnswer(true);
    });
    socket.on('error', () => resolveAnswer(false));
  });
}

/** One daemon per state root: an atomic lock directory holding the owner's pid; a dead owner's lock is taken over. */
function acquireLock(dir: string): boolean {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), `${process.pid}\n`);
      process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number(readFileSync(join(dir, 'pid'), { encoding: 'utf8', flag: 'a+' }).trim());
      if (owner > 0 && owner !== process.pid && processAlive(owner)) return false;
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return false;
}

/** Whether `pid` is a running abode daemon: a killed one may linger as a zombie until init reaps it. */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('daemon/main.js');
  } catch {
    return false;
  }
}

function parseArgs(argv: string[]): { root?: string; runRoot?: string } {
  const out: { root?: string; runRoot?: string } = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--root') out.root = argv[++i];
    else if (argv[i].startsWith('--root=')) out.root = argv[i].slice(7);
    else if (argv[i] === '--run-root') out.runRoot = argv[++i];
  }
  return out;
}

async function main(): Promise<void> {
  const paths = resolvePaths(parseArgs(process.argv.slice(2)));
  await mkdir(paths.root, { recursive: true, mode: 0o711 });
  await mkdir(paths.runRoot, { recursive: true, mode: 0o711 });
  if (
    !acquireLock(join(paths.runRoot, 'daemon.lock')) ||
    (existsSync(paths.socket) && (await socketAnswers(paths.socket)))
  ) {
    log(`another abode daemon already serves ${paths.socket}`);
    process.exit(1);
  }
  const store = new StateStore(join(paths.root, 'abode.db'));
  const { images, snapshotter } = createImageService({ root: paths.root });
  const cgroups = await detectCgroups();
  const shimPath = process.env.ABODE_SHIM ?? join(repoRoot, 'native/build/abode-shim');
  // One standby monitor, in a fresh cgroup, for whichever runtime creates next (container or vm).
  const pool = new StandbyPool({ runRoot: paths.runRoot, shimPath, cgroups, cgroupParent: 'abode' });
  const container = new ContainerRuntime({
    runRoot: paths.runRoot,
    shimPath,
    cgroups,
    cgroupParent: 'abode',
    pool,
  });
  // MicroVMs: QEMU under the shim, the guest agent in an initramfs; caches under ROOT/vm.
  const vm = new VmRuntime({
    runRoot: paths.runRoot,
    cacheRoot: join(paths.root, 'vm'),
    shimPath,
    agentPath: process.env.ABODE_AGENT ?? join(repoRoot, 'native/build/abode-agent'),
    cgroups,
    cgroupParent: 'abode',
    pool,
    accelerator,
    ...(process.env.ABODE_QEMU ? { qemu: process.env.ABODE_QEMU } : {}),
    ...(process.env.ABODE_VM_KERNEL ? { kernel: process.env.ABODE_VM_KERNEL } : {}),
    ...(Number(process.env.ABODE_TCG_CACHE_MIB) > 0
      ? { tcgCacheMiB: Number(process.env.ABODE_TCG_CACHE_MIB) }
      : {}),
    // VMs restored from a snapshot of a booted one: ABODE_VM_TEMPLATES=0 boots every VM.
    ...(process.env.ABODE_VM_TEMPLATES === '0' ? {} : { templates: new VmTemplates(log) }),
  });
  // External OCI runtimes (oci:runc always; oci:crun too when installed): create says when one is missing.
  const ociRuntimes = Object.fromEntries(
    [...new Set(['runc', ...installedOciRuntimes()])].map((binary) => [
      `oci:${binary}`,
      new OciRuntime({ binary, runRoot: paths.runRoot, shimPath, cgroups }),
    ]),
  );
  const limits = await hardLimits();
  const engine = new Engine({
    root: paths.root,
    store,
    images,
    snapshotter,
    runtimes: { container, vm, ...ociRuntimes },
    hardLimits: limits,
    resolvConf: instanceResolvConf,
  });
  engine.on('error-log', (error: Error) => log(`error: ${error.stack ?? error.message}`));
  await vm.sweepTemplates();
  await engine.recover();
  // Pool cgroups an earlier daemon's standby monitors left empty.
  void pool.collect(() => false);
  const server = createApiServer(
    {
      engine,
      images,
      version: () => ({
        Version: VERSION,
        ApiVersion: '1',
        Os: 'linux',
        Arch: process.arch,
        KernelVersion: release(),
        NodeVersion: process.version,
      }),
      info: async () => {
        const all = engine.list(true);
        const accel = await accelerator();
        return {
          ServerVersion: VERSION,
          KernelVersion: release(),
          OperatingSystem: 'linux',
          NCPU: cpus().length,
          MemTotal: totalmem(),
          Containers: all.length,
          ContainersRunning: all.filter((r) => r.state.status === 'running').length,
          ContainersStopped: all.filter((r) => r.state.status !== 'running').length,
          Images: (await images.list()).length,
          Driver: 'overlay',
          RootDir: paths.root,
          RunRoot: paths.runRoot,
          Cgroup: cgroups.describe(),
          Runtimes: Object.keys({ container, vm, ...ociRuntimes }),
          Accelerator: accel,
          VmTemplates: await vm.templatesInfo(),
        };
      },
      processTable,
      hostCpu,
      hostMemory: totalmem(),
      instanceFiles: (id) => ({
        logPath: join(paths.root, 'instances', id, 'container.log'),
        hostname: engine.get(id).options.hostname || id.slice(0, 12),
      }),
    },
    (error) => log(`api error: ${(error as Error)?.stack ?? String(error)}`),
  );
  await rm(paths.socket, { force: true });
  await new Promise<void>((ready) => server.listen(paths.socket, ready));
  await chmod(paths.socket, 0o660);
  await writeFile(paths.pidFile, `${process.pid}\n`);
  log(`abode daemon ${VERSION} serving ${paths.socket} (root ${paths.root}, cgroups ${cgroups.mode})`);
  const shutdown = (signal: string) => {
    log(`${signal}: shutting down (instances keep running)`);
    server.close();
    Promise.all([pool.close(), vm.sweepTemplates()])
      .catch(() => undefined)
      .then(() => rm(paths.pidFile, { force: true }))
      .then(() => rm(paths.socket, { force: true }))
      .finally(() => {
        store.close();
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error) => {
  log(`fatal: ${(error as Error)?.stack ?? String(error)}`);
  process.exit(1);
});
