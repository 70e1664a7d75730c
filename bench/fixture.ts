/**
 * What every benchmark shares: a throw-away abode state root with its own daemon, the busybox rootfs as
 * a plain directory, a runc bundle of it and a podman image of it (`podman import`, no registry). Everything
 * made here is registered for cleanup(), which undoes it in reverse order.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSpec } from '../src/engine/bundle.js';
import { createOptions } from '../src/core/instance.js';
import type { OciSpec } from '../src/core/oci.js';
import { hardLimits } from '../src/platform/host.js';

/** The repository (this file is dist/bench/fixture.js once compiled). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(REPO, 'dist/src/cli/main.js');
export const LAUNCHER = join(REPO, 'abode');
/** The monitor: ABODE_SHIM as the daemon reads it (it inherits the CLI's environment), else the built one. */
export const SHIM = process.env.ABODE_SHIM ?? join(REPO, 'native/build/abode-shim');
/** Parent of the cgroups the benchmarks create outside the daemon (the in-process runtime, runc). */
export const CGROUP_PARENT = 'abode-bench';
/** What podman needs on these hosts: cgroupfs (no systemd) and limits within the hard nofile of 20000. */
export const PODMAN_GLOBAL = ['--cgroup-manager=cgroupfs'];
export const PODMAN_RUN = [
  '--runtime',
  'runc',
  '--network',
  'none',
  '--ulimit',
  'nofile=20000:20000',
  '--ulimit',
  'nproc=32768:32768',
];
/** The busybox image's config, as abode builds it (src/image/builtin/busybox.ts). */
const BUSYBOX_CONFIG = {
  Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  Cmd: ['sh'],
};

export function say(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** Runs a command to completion; throws with its stderr unless it exits with `expect`. */
export function run(
  command: string,
  args: string[],
  options: SpawnSyncOptions & { expect?: number } = {},
): string {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (result.error) throw result.error;
  if (result.status !== (options.expect ?? 0)) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.status ?? result.signal}: ${String(result.stderr ?? '').trim()}`,
    );
  }
  return String(result.stdout ?? '');
}

export function shortId(): string {
  return randomBytes(8).toString('hex');
}

export class Fixture {
  /** Environment of the CLI: the throw-away root, and no extra CA bundle (as the ./abode launcher does). */
  readonly cliEnv: NodeJS.ProcessEnv;
  readonly abodeRoot: string;
  /** The busybox rootfs as a plain directory (a copy of abode's unpacked layer). */
  readonly rootfs: string;
  /** The untouched unpacked busybox layer in the throw-away root. */
  layer = '';
  /** A runc bundle (config.json from buildSpec, root.path = rootfs) and runc's state directory. */
  readonly runcBundle: string;
  readonly runcRoot: string;
  podmanImage = '';
  hardLimits: Record<string, number> = {};
  private readonly cleanups: { what: string; undo: () => unknown }[] = [];

  private constructor(readonly dir: string) {
    this.abodeRoot = join(dir, 'root');
    this.rootfs = join(dir, 'rootfs');
    this.runcBundle = join(dir, 'runc-bundle');
    this.runcRoot = join(dir, 'runc-state');
    const env: NodeJS.ProcessEnv = { ...process.env, ABODE_ROOT: this.abodeRoot };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.ABODE_RUN;
    this.cliEnv = env;
  }

  /** Sets everything up; on failure undoes what was done and rethrows. */
  static async create(): Promise<Fixture> {
    const fixture = new Fixture(await mkdtemp('/var/tmp/abode-bench-'));
    fixture.defer(`remove ${fixture.dir}`, () => rm(fixture.dir, { recursive: true, force: true }));
    try {
      await fixture.setup();
    } catch (error) {
      await fixture.cleanup();
      throw error;
    }
    return fixture;
  }

  defer(what: string, undo: () => unknown): void {
    this.cleanups.push({ what, undo });
  }

  /** Undoes everything, newest first; reports (but survives) what fails. */
  async cleanup(): Promise<void> {
    while (this.cleanups.length > 0) {
      const { what, undo } = this.cleanups.pop()!;
      try {
        await undo();
      } catch (error) {
        say(`cleanup: ${what}: ${(error as Error).message}`);
      }
    }
  }

  /** Runs the CLI (`node dist/src/cli/main.js ARGS`) against the throw-away root and returns its stdout. */
  cli(args: string[], expect = 0): string {
    return run(process.execPath, [CLI, ...args], { env: this.cliEnv, expect });
  }

  private async setup(): Promise<void> {
    this.hardLimits = await hardLimits();
    await mkdir(join(this.abodeRoot, 'cache'), { recursive: true });
    // The busybox image is built from Debian's busybox-static .deb: reuse the host's copy when there is one.
    const hostCache = '/var/lib/abode/cache';
    for (const name of existsSync(hostCache) ? readdirSync(hostCache) : []) {
      if (name.startsWith('busybox-static_') && name.endsWith('.deb'))
        await cp(join(hostCache, name), join(this.abodeRoot, 'cache', name));
    }

    // The daemon makes its cgroup parent ("abode") where there is none: remove what it made, when empty.
    const daemonCgroups = cgroupRoots().filter((root) => !existsSync(join(root, 'abode')));
    this.defer('remove the daemon cgroups', () => {
      for (const root of daemonCgroups) {
        if (existsSync(join(root, 'abode'))) rmdirSync(join(root, 'abode'));
      }
    });
    say(`starting a daemon on ${this.abodeRoot} and building busybox`);
    this.defer('stop the daemon', () => this.stopDaemon());
    this.defer('remove instances', () => this.removeInstances());
    this.cli(['run', '--rm', 'busybox', 'true']);

    this.layer = this.findLayer();
    await cp(this.layer, this.rootfs, { recursive: true, verbatimSymlinks: true });

    await this.writeRuncBundle();
    this.defer('remove cgroups', () => removeCgroupParent(CGROUP_PARENT));
    // runc must accept the bundle before anything is timed.
    run('runc', ['--root', this.runcRoot, 'run', '-b', this.runcBundle, `check-${shortId()}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });

    say('importing the busybox rootfs into podman');
    const tarball = join(this.dir, 'busybox.tar');
    run('tar', ['-C', this.layer, '-cf', tarball, '.']);
    const ref = `localhost/abode-bench-busybox:${shortId()}`;
    run('podman', [...PODMAN_GLOBAL, 'import', '-q', tarball, ref]);
    this.podmanImage = ref;
    this.defer(`podman rmi ${ref}`, () => run('podman', [...PODMAN_GLOBAL, 'rmi', '-f', ref]));
    await rm(tarball);
    run('podman', [...PODMAN_GLOBAL, 'run', '--rm', ...PODMAN_RUN, ref, 'true']);
  }

  /** The one unpacked layer of busybox in the throw-away root. */
  private findLayer(): string {
    const layers = join(this.abodeRoot, 'layers');
    const found = readdirSync(layers)
      .map((name) => join(layers, name, 'fs'))
      .filter((path) => existsSync(join(path, 'bin', 'busybox')));
    if (found.length !== 1)
      throw new Error(`expected one busybox layer under ${layers}, found ${found.length}`);
    return found[0];
  }

  /** Files an instance sees as /etc/hostname, /etc/hosts and /etc/resolv.conf (one set for every run). */
  async etcFiles(dir: string): Promise<{ hostname: string; hosts: string; resolvConf: string }> {
    await mkdir(dir, { recursive: true });
    const files = {
      hostname: join(dir, 'hostname'),
      hosts: join(dir, 'hosts'),
      resolvConf: join(dir, 'resolv.conf'),
    };
    await writeFile(files.hostname, 'bench\n');
    await writeFile(files.hosts, '127.0.0.1\tlocalhost\n');
    await writeFile(files.resolvConf, 'nameserver 127.0.0.1\n');
    return files;
  }

  /** The OCI spec abode's engine writes for `run busybox true`. */
  async busyboxTrueSpec(id: string): Promise<OciSpec> {
    return buildSpec({
      id,
      options: createOptions({ image: 'busybox', cmd: ['true'] }),
      image: BUSYBOX_CONFIG,
      hostname: 'bench',
      etcFiles: await this.etcFiles(join(this.dir, 'etc')),
      mounts: [],
      hardLimits: this.hardLimits,
    });
  }

  /** buildSpec's output with root.path set to the plain rootfs and a cgroup of our own. */
  private async writeRuncBundle(): Promise<void> {
    const spec = await this.busyboxTrueSpec('runc');
    spec.root = { path: this.rootfs, readonly: false };
    spec.linux.cgroupsPath = `/${CGROUP_PARENT}/runc`;
    await mkdir(this.runcBundle, { recursive: true });
    await mkdir(this.runcRoot, { recursive: true });
    await writeFile(join(this.runcBundle, 'config.json'), JSON.stringify(spec, null, 2));
  }

  private removeInstances(): void {
    const ids = this.cli(['ps', '-aq']).split('\n').filter(Boolean);
    if (ids.length > 0) this.cli(['rm', '-f', ...ids]);
  }

  /** SIGTERM to the daemon of the throw-away root, then wait (bounded) until it is gone. */
  private async stopDaemon(): Promise<void> {
    const pidFile = join(this.abodeRoot, 'run', 'abode.pid');
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (!pid) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50));
    if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
  }
}

/** The cgroup hierarchies' root directories (v2's /sys/fs/cgroup, or each v1 controller's and "unified"). */
function cgroupRoots(): string[] {
  const base = '/sys/fs/cgroup';
  const subdirs = readdirSync(base, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => join(base, entry.name));
  return existsSync(join(base, 'cgroup.procs')) ? [base] : subdirs;
}

/** Removes `parent` (and its empty children) from every cgroup hierarchy; they must be empty. */
export function removeCgroupParent(parent: string): void {
  for (const root of cgroupRoots()) {
    const dir = join(root, parent);
    if (!existsSync(dir)) continue;
    for (const child of readdirSync(dir, { withFileTypes: true })) {
      if (child.isDirectory()) rmdirSync(join(dir, child.name));
    }
    rmdirSync(dir);
  }
}
