import { EventEmitter } from 'node:events';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { ImageRecord, ImageService, Snapshotter } from '../core/image.js';
import type { ExecHandle, ExitStatus, ProcessTable, ResourceStats, Runtime } from '../core/runtime.js';
import {
  type CreateOptions,
  type InstanceRecord,
  type MountPoint,
  EMPTY_TIME,
  newState,
} from '../core/instance.js';
import { ConflictError, InvalidArgumentError, NotFoundError, invalidAll } from '../core/errors.js';
import { NAME_PATTERN, newId, randomName } from '../core/ids.js';
import { signalNumber } from '../core/signals.js';
import { buildSpec, mergeEnv, resolveProcessArgs } from './bundle.js';
import { StateStore } from './state-store.js';
import { type LogEntry, type LogOptions, readLog } from './logs.js';
import { VolumeService } from './volumes.js';

export interface EngineOptions {
  root: string;
  store: StateStore;
  images: ImageService;
  snapshotter: Snapshotter;
  runtimes: Record<string, Runtime>;
  /** The hard rlimits this daemon has (never ask the kernel for more). */
  hardLimits: Record<string, number>;
  /** The resolv.conf to give instances (all of the host's name servers when they share its network). */
  resolvConf: (hostNetwork: boolean) => Promise<string>;
}

export interface ExecOptions {
  cmd: string[];
  env: string[];
  user?: string;
  workdir?: string;
  tty: boolean;
  openStdin: boolean;
}

interface ExecSession {
  id: string;
  instanceId: string;
  handle: ExecHandle;
  options: ExecOptions;
  running: boolean;
  exitCode?: number;
}

/** The engine: instances and their lifecycle, independent of how a runtime isolates them. */
export class Engine extends EventEmitter {
  readonly volumes: VolumeService;
  private readonly watching = new Set<string>();
  private readonly execs = new Map<string, ExecSession>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly options: EngineOptions) {
    super();
    this.volumes = new VolumeService(options.store, join(options.root, 'volumes'), () =>
      this.options.store.listInstances(),
    );
  }

  /** Finds every instance an earlier daemon left and resumes watching the ones still running. */
  async recover(): Promise<void> {
    for (const record of this.options.store.listInstances()) {
      if (record.state.status !== 'running' && record.state.status !== 'paused') continue;
      const runtime = this.runtime(record);
      const state = await runtime.state(record.id).catch(() => undefined);
      if (state && state.status !== 'stopped') this.watch(record);
      else await this.finish(record.id, state?.status === 'stopped' ? state.exit : lostExit());
    }
  }

  /** The image service, snapshotter and state root, for the engine's own helpers (archive, build). */
  get parts(): Pick<EngineOptions, 'images' | 'snapshotter' | 'root'> {
    return { images: this.options.images, snapshotter: this.options.snapshotter, root: this.options.root };
  }

  /** Serializes operations on one instance. */
  async locked<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.locks.set(id, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === next) this.locks.delete(id);
    }
  }

  private runtime(record: InstanceRecord): Runtime {
    const runtime = this.options.runtimes[record.runtime];
    if (!runtime) throw new InvalidArgumentError(`unknown runtime "${record.runtime}"`);
    return runtime;
  }

  private instanceDir(id: string): string {
    return join(this.options.root, 'instances', id);
  }

  /** The record for an id, a unique id prefix or a name. */
  get(ref: string): InstanceRecord {
    const all = this.options.store.listInstances();
    const name = ref.startsWith('/') ? ref.slice(1) : ref;
    const exact = all.find((r) => r.id === ref || r.name === name);
    if (exact) return exact;
    const prefixed = ref.length > 0 ? all.filter((r) => r.id.startsWith(ref)) : [];
    if (prefixed.length === 1) return prefixed[0];
    if (prefixed.length > 1)
      throw new InvalidArgumentError(`multiple IDs found with provided prefix: ${ref}`);
    throw new NotFoundError(`No such container: ${ref}`);
  }

  list(all: boolean): InstanceRecord[] {
    return this.options.store
      .listInstances()
      .filter((r) => all || r.state.status === 'running' || r.state.status === 'paused')
      .sort((a, b) => b.created.localeCompare(a.created));
  }

  async create(options: CreateOptions): Promise<InstanceRecord> {
    const problems: string[] = [];
    if (options.name !== undefined && !NAME_PATTERN.test(options.name)) {
      problems.push(`Invalid container name (${options.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    }
    if (options.runtime !== undefined && !this.options.runtimes[options.runtime]) {
      problems.push(
        `unknown runtime "${options.runtime}": this daemon offers ${Object.keys(this.options.runtimes).join(', ')}`,
      );
    } else if (options.runtime === undefined && !this.options.runtimes[options.isolation]) {
      problems.push(
        `invalid isolation "${options.isolation}": this daemon offers ${Object.keys(this.options.runtimes).join(', ')}`,
      );
    }
    if (problems.length > 0) throw invalidAll(problems);
    const image = await this.options.images.resolve(options.image);
    const args = resolveProcessArgs(options, image.config);
    const id = newId();
    const name = options.name?.replace(/^\//, '') ?? this.uniqueName();
    const mounts = await this.resolveMounts(options);
    const record: InstanceRecord = {
      id,
      name,
      created: new Date().toISOString(),
      image: options.image,
      imageId: image.id,
      isolation: options.isolation,
      runtime: options.runtime ?? options.isolation,
      path: args[0],
      args: args.slice(1),
      options,
      mounts,
      state: newState(),
      restartCount: 0,
    };
    this.options.store.insertInstance(record);
    try {
      await this.writeBundle(record, image);
    } catch (error) {
      this.options.store.deleteInstance(id);
      await rm(this.instanceDir(id), { recursive: true, force: true });
      throw error;
    }
    this.emit('event', { type: 'create', id });
    return record;
  }

  private uniqueName(): string {
    const taken = new Set(this.options.store.listInstances().map((r) => r.name));
    for (let i = 0; i < 100; i++) {
      const name = randomName();
      if (!taken.has(name)) return name;
    }
    return `${randomName()}_${newId().slice(0, 6)}`;
  }

  private async resolveMounts(options: CreateOptions): Promise<MountPoint[]> {
    const problems: string[] = [];
    const mounts: MountPoint[] = [];
    for (const spec of options.volumes) {
      const parts = spec.split(':');
      if (parts.length < 2 || parts.length > 3 || !parts[1].startsWith('/')) {
        problems.push(
          `invalid volume specification: '${spec}' (want /host/path:/container/path[:ro] or name:/path)`,
        );
        continue;
      }
      const [source, destination, mode = 'rw'] = parts;
      if (mode !== 'ro' && mode !== 'rw') {
        problems.push(`invalid mode: ${mode} in '${spec}' (want ro or rw)`);
        continue;
      }
      if (source.startsWith('/')) {
        mounts.push({ type: 'bind', source, destination, readOnly: mode === 'ro' });
      } else {
        const volume = await this.volumes.ensure(source);
        mounts.push({
          type: 'volume',
          name: volume.name,
          source: volume.mountpoint,
          destination,
          readOnly: mode === 'ro',
        });
      }
    }
    for (const spec of options.tmpfs) {
      const [destination, opts] = [spec.split(':')[0], spec.split(':').slice(1).join(':')];
      if (!destination.startsWith('/')) {
        problems.push(`invalid tmpfs specification: '${spec}' (want /path[:options])`);
        continue;
      }
      mounts.push({
        type: 'tmpfs',
        source: '',
        destination,
        readOnly: false,
        options: opts ? opts.split(',') : [],
      });
    }
    if (problems.length > 0) throw invalidAll(problems);
    for (const mount of mounts) {
      if (mount.type === 'bind' && !existsSync(mount.source)) await mkdir(mount.source, { recursive: true });
    }
    return mounts;
  }

  private async writeBundle(record: InstanceRecord, image: ImageRecord): Promise<void> {
    const dir = this.instanceDir(record.id);
    await mkdir(dir, { recursive: true });
    const hostname = record.options.hostname || record.id.slice(0, 12);
    const etcFiles = {
      hostname: join(dir, 'hostname'),
      hosts: join(dir, 'hosts'),
      resolvConf: join(dir, 'resolv.conf'),
    };
    await writeFile(etcFiles.hostname, `${hostname}\n`);
    await writeFile(
      etcFiles.hosts,
      `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n`,
    );
    await writeFile(etcFiles.resolvConf, await this.options.resolvConf(record.options.network === 'host'));
    const spec = buildSpec({
      id: record.id,
      options: record.options,
      image: image.config,
      hostname,
      etcFiles,
      mounts: record.mounts,
      hardLimits: this.options.hardLimits,
    });
    await writeFile(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  }

  /** Starts a created or exited instance; `beforeStart` runs once the process is prepared (to attach). */
  async start(ref: string, beforeStart?: (record: InstanceRecord) => Promise<void>): Promise<InstanceRecord> {
    const record = this.get(ref);
    return this.locked(record.id, async () => {
      const current = this.get(record.id);
      if (current.state.status === 'running' || current.state.status === 'paused') return current;
      const runtime = this.runtime(current);
      const dir = this.instanceDir(current.id);
      const image = await this.options.images.resolve(current.imageId);
      const spec = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
      // A restart keeps the instance's file system: reuse its snapshot when it has one.
      const snapshots = this.options.snapshotter;
      const rootfs = await snapshots.mounts(current.id).catch(() => snapshots.prepare(current.id, image));
      const logPath = join(dir, 'container.log');
      await rm(join(dir, 'exit.json'), { force: true });
      await runtime.delete(current.id);
      let pid: number;
      try {
        ({ pid } = await runtime.create(current.id, { dir, spec, rootfs, logPath }));
      } catch (error) {
        current.state = {
          ...current.state,
          status: current.state.status === 'created' ? 'created' : 'exited',
          error: (error as Error).message,
          exitCode: (error as { exitCode?: number }).exitCode ?? 125,
        };
        this.options.store.updateInstance(current);
        throw error;
      }
      if (beforeStart) await beforeStart(current);
      await runtime.start(current.id);
      current.state = {
        ...newState(),
        status: 'running',
        pid,
        startedAt: new Date().toISOString(),
      };
      this.options.store.updateInstance(current);
      this.watch(current);
      this.emit('event', { type: 'start', id: current.id });
      return current;
    });
  }

  private watch(record: InstanceRecord): void {
    if (this.watching.has(record.id)) return;
    this.watching.add(record.id);
    const runtime = this.runtime(record);
    runtime
      .wait(record.id)
      .catch(() => lostExit())
      .then((exit) => this.finish(record.id, exit))
      .catch((error) => this.emit('error-log', error))
      .finally(() => this.watching.delete(record.id));
  }

  /** Records an exit, frees the instance's runtime resources, and removes it with --rm. */
  private async finish(id: string, exit: ExitStatus): Promise<void> {
    let record: InstanceRecord;
    try {
      record = this.get(id);
    } catch {
      return;
    }
    // With --rm, remove() below frees the runtime's resources; otherwise do it now.
    if (!record.options.autoRemove) {
      await this.runtime(record)
        .delete(id)
        .catch(() => undefined);
    }
    record.state = {
      ...record.state,
      status: 'exited',
      pid: 0,
      exitCode: exit.exitCode,
      oomKilled: exit.oomKilled,
      error: exit.error ?? '',
      finishedAt: exit.finishedAt || new Date().toISOString(),
    };
    this.options.store.updateInstance(record);
    this.emit('event', { type: 'die', id, exitCode: exit.exitCode });
    // With --rm, waiters learn of the exit only once the instance is gone, as docker's CLI expects.
    if (record.options.autoRemove) await this.remove(id, { force: true }).catch(() => undefined);
    this.emit(`exit:${id}`, record);
  }

  /** Resolves with the exit code once the instance is not running (at once if it is not). */
  async wait(ref: string): Promise<InstanceRecord> {
    const record = this.get(ref);
    const pending = ['running', 'paused', 'removing'].includes(record.state.status);
    if (!pending) return record;
    return new Promise((resolve) => this.once(`exit:${record.id}`, resolve));
  }

  async kill(ref: string, signal: string | number = 'KILL'): Promise<void> {
    const record = this.get(ref);
    const number = signalNumber(signal);
    if (record.state.status !== 'running' && record.state.status !== 'paused') {
      throw new ConflictError(`cannot kill container: ${ref}: container ${record.id} is not running`);
    }
    await this.runtime(record).kill(record.id, number);
  }

  /** docker stop: the stop signal, then SIGKILL after the timeout (seconds). */
  async stop(ref: string, timeoutSeconds?: number): Promise<void> {
    const record = this.get(ref);
    if (record.state.status !== 'running' && record.state.status !== 'paused') return;
    const timeout = timeoutSeconds ?? record.options.stopTimeout ?? 10;
    const exited = this.wait(record.id);
    await this.runtime(record)
      .kill(record.id, signalNumber(record.options.stopSignal ?? 'TERM'))
      .catch(() => undefined);
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeout * 1000));
    if ((await Promise.race([exited, timer])) === 'timeout') {
      await this.runtime(record)
        .kill(record.id, 9)
        .catch(() => undefined);
      await exited;
    }
  }

  async restart(ref: string, timeoutSeconds?: number): Promise<void> {
    const record = this.get(ref);
    await this.stop(record.id, timeoutSeconds);
    await this.start(record.id);
    const updated = this.get(record.id);
    updated.restartCount += 1;
    this.options.store.updateInstance(updated);
  }

  async remove(ref: string, opts: { force: boolean; volumes?: boolean }): Promise<string> {
    const record = this.get(ref);
    if ((record.state.status === 'running' || record.state.status === 'paused') && !opts.force) {
      throw new ConflictError(
        `You cannot remove a running container ${record.id}. Stop the container before attempting removal or force remove`,
      );
    }
    if (record.state.status === 'running' || record.state.status === 'paused') {
      const exited = this.wait(record.id);
      await this.runtime(record)
        .kill(record.id, 9)
        .catch(() => undefined);
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    }
    return this.locked(record.id, async () => {
      let current: InstanceRecord;
      try {
        current = this.get(record.id);
      } catch {
        return record.id;
      }
      current.state.status = 'removing';
      this.options.store.updateInstance(current);
      // The runtime first: it unmounts what may be mounted inside the instance's directory.
      await this.runtime(current).delete(current.id);
      await Promise.all([
        this.options.snapshotter.remove(current.id),
        rm(this.instanceDir(current.id), { recursive: true, force: true }),
      ]);
      this.options.store.deleteInstance(current.id);
      if (opts.volumes) {
        for (const mount of current.mounts) {
          if (mount.type === 'volume' && mount.name)
            await this.volumes.remove(mount.name, false).catch(() => undefined);
        }
      }
      this.emit('event', { type: 'destroy', id: current.id });
      if (!current.options.autoRemove) this.emit(`exit:${current.id}`, current);
      return current.id;
    });
  }

  rename(ref: string, newName: string): void {
    const record = this.get(ref);
    if (!NAME_PATTERN.test(newName)) {
      throw new InvalidArgumentError(
        `Invalid container name (${newName}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`,
      );
    }
    const name = newName.replace(/^\//, '');
    const holder = this.options.store.listInstances().find((r) => r.name === name);
    if (holder && holder.id !== record.id) {
      throw new ConflictError(
        `Error when allocating new name: Conflict. The container name "/${name}" is already in use by container "${holder.id}". You have to remove (or rename) that container to be able to reuse that name.`,
      );
    }
    record.name = name;
    this.options.store.updateInstance(record);
  }

  /** Removes every stopped instance; returns the removed ids. */
  async prune(): Promise<string[]> {
    const removed: string[] = [];
    for (const record of this.options.store.listInstances()) {
      if (
        record.state.status === 'exited' ||
        record.state.status === 'created' ||
        record.state.status === 'dead'
      ) {
        removed.push(await this.remove(record.id, { force: false }));
      }
    }
    return removed;
  }

  logs(ref: string, options: LogOptions): AsyncGenerator<LogEntry> {
    const record = this.get(ref);
    const isDone = () => {
      try {
        const status = this.get(record.id).state.status;
        return status !== 'running' && status !== 'paused';
      } catch {
        return true;
      }
    };
    return readLog(join(this.instanceDir(record.id), 'container.log'), options, isDone);
  }

  async attach(ref: string, opts: { stdin: boolean }): Promise<Duplex> {
    const record = this.get(ref);
    return this.runtime(record).attach(record.id, opts);
  }

  async resize(ref: string, rows: number, cols: number): Promise<void> {
    const record = this.get(ref);
    await this.runtime(record).resize(record.id, rows, cols);
  }

  async stats(ref: string): Promise<{ record: InstanceRecord; stats: ResourceStats | undefined }> {
    const record = this.get(ref);
    if (record.state.status !== 'running') return { record, stats: undefined };
    return { record, stats: await this.runtime(record).stats(record.id) };
  }

  async pids(ref: string): Promise<number[]> {
    const record = this.running(ref);
    return this.runtime(record).pids(record.id);
  }

  /** The instance's processes as its runtime sees them (a VM's guest), or undefined: the host's view of pids() serves. */
  async top(ref: string): Promise<ProcessTable | undefined> {
    const record = this.running(ref);
    const runtime = this.runtime(record);
    return runtime.top ? runtime.top(record.id) : undefined;
  }

  private running(ref: string): InstanceRecord {
    const record = this.get(ref);
    if (record.state.status !== 'running') {
      throw new ConflictError(`container ${record.id} is not running`);
    }
    return record;
  }

  /** Prepares a process inside a running instance (docker exec create). */
  async execCreate(ref: string, options: ExecOptions): Promise<string> {
    const record = this.get(ref);
    if (record.state.status !== 'running') {
      throw new ConflictError(`container ${record.id} is not running`);
    }
    if (options.cmd.length === 0) throw new InvalidArgumentError('No exec command specified');
    const runtime = this.runtime(record);
    const spec = JSON.parse(await readFile(join(this.instanceDir(record.id), 'config.json'), 'utf8'));
    const id = newId();
    const handle = await runtime.exec(
      record.id,
      id,
      {
        ...spec.process,
        terminal: options.tty,
        args: options.cmd,
        env: mergeEnv(spec.process.env, options.env, options.tty ? { TERM: 'xterm' } : {}),
        cwd: options.workdir || spec.process.cwd,
        user: { uid: 0, gid: 0, username: options.user ?? spec.process.user.username ?? '' },
      },
      { openStdin: options.openStdin },
    );
    this.execs.set(id, { id, instanceId: record.id, handle, options, running: false });
    return id;
  }

  exec(id: string): ExecSession {
    const session = this.execs.get(id);
    if (!session) throw new NotFoundError(`No such exec instance: ${id}`);
    return session;
  }

  async execStart(id: string): Promise<void> {
    const session = this.exec(id);
    await session.handle.start();
    session.running = true;
    session.handle
      .wait()
      .then((exit) => {
        session.running = false;
        session.exitCode = exit.exitCode;
        setTimeout(() => this.execs.delete(id), 5 * 60_000).unref();
      })
      .catch(() => undefined);
  }
}

function lostExit(): ExitStatus {
  return { exitCode: 255, signal: 0, oomKilled: false, finishedAt: new Date().toISOString() };
}

export { EMPTY_TIME };
