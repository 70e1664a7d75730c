import { setTimeout as sleep } from 'node:timers/promises';
import { AlreadyExistsError, InternalError, NotFoundError, UnavailableError } from '../../core/errors.js';
import type { OciResources } from '../../core/oci.js';
import { CgroupFiles, errno, nodeCgroupFs, nodeKill, type CgroupFs, type KillFn } from './fs.js';
import { checkCgroupPath, validateResources, wants } from './resources.js';
import type { Cgroup, CgroupDriver, CgroupHierarchy, CgroupInfo, CgroupMode, CgroupStats } from './types.js';

/** Options shared by both drivers. */
export interface DriverOptions {
  /** File operations; the real file system unless a test injects one. */
  fs?: CgroupFs;
  /** Signal sender; process.kill unless a test injects one. */
  kill?: KillFn;
  /** Parent of abode's cgroups, `abode` by default. */
  parent?: string;
}

/** How long destroy() keeps killing before giving up on a cgroup that will not empty. */
const DESTROY_TIMEOUT_MS = 3000;

/** A hierarchy this cgroup lives in, with its directory there. */
export interface CgroupDir extends CgroupHierarchy {
  dir: string;
}

/** Path handling, creation with rollback, reattaching and listing, common to v1 and v2. */
export abstract class BaseDriver implements CgroupDriver {
  abstract readonly mode: CgroupMode;
  readonly parent: string;
  protected readonly files: CgroupFiles;
  protected readonly kill: KillFn;

  constructor(opts: DriverOptions) {
    this.parent = checkCgroupPath(opts.parent ?? 'abode');
    this.files = new CgroupFiles(opts.fs ?? nodeCgroupFs);
    this.kill = opts.kill ?? nodeKill;
  }

  /** The hierarchies abode's cgroups are created in. */
  protected abstract hierarchies(): CgroupHierarchy[];
  /** Controllers that can be limited. */
  protected abstract available(): Set<string>;
  /** Prepares `parentDir` before a child is created in it (v2 enables controllers there). */
  protected abstract beforeMkdir(
    h: CgroupHierarchy,
    parentDir: string,
    resources?: OciResources,
  ): Promise<void>;
  /** Initialises a freshly created directory (v1 copies cpuset values). */
  protected abstract afterMkdir(h: CgroupHierarchy, dir: string, parentDir: string): Promise<void>;
  protected abstract newCgroup(path: string, dirs: CgroupDir[]): Cgroup;
  abstract describe(): CgroupInfo;

  protected info(hierarchies: CgroupHierarchy[]): CgroupInfo {
    const controllers = [...new Set(hierarchies.flatMap((h) => h.controllers))].sort();
    return { mode: this.mode, parent: this.parent, hierarchies, controllers };
  }

  pathFor(id: string): string {
    return `${this.parent}/${checkCgroupPath(id)}`;
  }

  /** Throws UnavailableError when `resources` needs a controller this host lacks. */
  protected checkAvailable(resources: OciResources | undefined): void {
    const want = wants(resources);
    const have = this.available();
    const missing = (Object.keys(want) as (keyof typeof want)[]).filter((c) => want[c] && !have.has(c));
    if (missing.length > 0)
      throw new UnavailableError(
        `the ${missing.join(', ')} cgroup controller${missing.length > 1 ? 's are' : ' is'} not available on this host, cannot apply the requested limits`,
        { missing },
      );
  }

  private dirsOf(path: string): CgroupDir[] {
    return this.hierarchies().map((h) => ({ ...h, dir: `${h.mountPoint}/${path}` }));
  }

  async create(path: string, resources: OciResources | undefined): Promise<Cgroup> {
    const rel = checkCgroupPath(path);
    validateResources(resources);
    this.checkAvailable(resources);
    const created: string[] = [];
    try {
      for (const h of this.hierarchies()) {
        let dir = h.mountPoint;
        const segments = rel.split('/');
        for (const [i, segment] of segments.entries()) {
          const parentDir = dir;
          await this.beforeMkdir(h, parentDir, resources);
          dir = `${dir}/${segment}`;
          if (await this.files.mkdir(dir)) {
            created.push(dir);
            await this.afterMkdir(h, dir, parentDir);
          } else if (i === segments.length - 1) {
            throw new AlreadyExistsError(`cgroup ${rel} already exists (${dir}); destroy it first`, {
              path: rel,
            });
          }
        }
      }
      const cgroup = this.newCgroup(rel, this.dirsOf(rel));
      if (resources) await cgroup.update(resources);
      return cgroup;
    } catch (err) {
      for (const dir of created.reverse()) await this.files.rmdir(dir, 2).catch(() => undefined);
      throw err;
    }
  }

  async open(path: string): Promise<Cgroup> {
    const rel = checkCgroupPath(path);
    const dirs = this.dirsOf(rel);
    for (const d of dirs) if (await this.files.fs.exists(d.dir)) return this.newCgroup(rel, dirs);
    throw new NotFoundError(`cgroup ${rel} does not exist`, { path: rel });
  }

  async listChildren(parent: string = this.parent): Promise<string[]> {
    const rel = checkCgroupPath(parent);
    const names = new Set<string>();
    for (const h of this.hierarchies()) {
      try {
        for (const name of await this.files.fs.listDirs(`${h.mountPoint}/${rel}`)) names.add(name);
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err;
      }
    }
    return [...names].sort().map((n) => `${rel}/${n}`);
  }
}

/** Process listing, signalling and removal, common to v1 and v2. */
export abstract class BaseCgroup implements Cgroup {
  constructor(
    readonly path: string,
    protected readonly dirs: CgroupDir[],
    protected readonly files: CgroupFiles,
    protected readonly kill: KillFn,
  ) {}

  abstract stats(): Promise<CgroupStats>;
  abstract oomKilled(): Promise<boolean>;
  abstract update(resources: OciResources): Promise<void>;
  abstract killAll(signal?: NodeJS.Signals): Promise<void>;

  procsFiles(): string[] {
    return this.dirs.map((d) => `${d.dir}/cgroup.procs`);
  }

  controllerDir(controller: string): string | undefined {
    return this.dirs.find((d) => d.controllers.includes(controller))?.dir;
  }

  /** Directory for `controller`, or UnavailableError naming what could not be done. */
  protected need(controller: string, what: string): string {
    const dir = this.controllerDir(controller);
    if (!dir)
      throw new UnavailableError(`cannot ${what}: the ${controller} cgroup controller is not available`);
    return dir;
  }

  async pids(): Promise<number[]> {
    const pids = new Set<number>();
    for (const d of this.dirs) await this.files.procsRecursive(d.dir, pids);
    return [...pids].sort((a, b) => a - b);
  }

  /** Signals each listed process, ignoring those that already exited. */
  protected async signalEach(signal: NodeJS.Signals): Promise<void> {
    for (const pid of await this.pids()) {
      try {
        this.kill(pid, signal);
      } catch (err) {
        if (errno(err) !== 'ESRCH') throw err;
      }
    }
  }

  async destroy(): Promise<void> {
    const deadline = Date.now() + DESTROY_TIMEOUT_MS;
    for (let i = 0; ; i++) {
      const left = await this.pids();
      if (left.length === 0) break;
      if (Date.now() > deadline)
        throw new InternalError(`cgroup ${this.path} still has processes after SIGKILL: ${left.join(', ')}`, {
          pids: left,
        });
      await this.killAll('SIGKILL');
      await sleep(Math.min(5 * 2 ** i, 200));
    }
    for (const d of this.dirs) await this.removeTree(d.dir);
  }

  /** Removes `dir` and any cgroups the container created below it, deepest first. */
  private async removeTree(dir: string): Promise<void> {
    let children: string[];
    try {
      children = await this.files.fs.listDirs(dir);
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      throw err;
    }
    for (const child of children) await this.removeTree(`${dir}/${child}`);
    await this.files.rmdir(dir);
  }
}

/** Polls `check` until it holds or `ms` elapse; returns whether it held. */
export async function waitFor(check: () => Promise<boolean>, ms = 1000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (let i = 0; ; i++) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(Math.min(2 ** i, 50));
  }
}
