/**
 * `abode build`: runs a Containerfile against a build context. RUN steps are instances created and
 * started through the engine's own lifecycle; their writable layer (the snapshot's upper directory)
 * is committed as the step's layer. COPY/ADD/WORKDIR write into a mounted snapshot of the step's
 * parent and commit it the same way; metadata instructions commit a config-only image. Every step's
 * image is remembered in a cache keyed on its parent, the instruction and its inputs.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { extract as extractTar } from 'tar';
import { cacheKey, type CacheInputs } from '../../core/build/cache-key.js';
import {
  expandValue,
  keyValuePairs,
  parseContainerfile,
  processWords,
  splitStages,
  type Instruction,
  type Stage,
  type Vars,
} from '../../core/build/containerfile.js';
import { IgnoreMatcher, parseDockerignore } from '../../core/build/dockerignore.js';
import { shortId } from '../../core/digest.js';
import {
  AbodeError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from '../../core/errors.js';
import type {
  ImageConfig,
  ImageRecord,
  ImageService,
  LayerCommitter,
  ProgressEvent,
  SnapshotDiffer,
  Snapshotter,
} from '../../core/image.js';
import { createOptions } from '../../core/instance.js';
import { familiarString, parseNormalizedTagged } from '../../core/reference.js';
import type { Engine } from '../engine.js';
import { resolveInRoot } from '../archive.js';
import {
  copyInto,
  describeSources,
  findSources,
  mkdirIn,
  mountAll,
  resolveChown,
  unmountAll,
} from './files.js';

/** What `abode build` asks for. */
export interface BuildRequest {
  /** -t: references to tag the result with. */
  tags: string[];
  /** -f: the Containerfile's path inside the context; default `Containerfile`, else `Dockerfile`. */
  dockerfile?: string;
  buildArgs: Record<string, string>;
  target?: string;
  noCache: boolean;
  /** --platform for base images that must be pulled. */
  platform?: string;
  /** --network for RUN steps: host lets them reach the network (e.g. apt-get install), none keeps them off it. */
  network?: 'none' | 'host';
}

export interface BuildResult {
  id: string;
  tags: string[];
}

/** The build's output, docker's classic builder text (`Step 1/5 : FROM busybox`). */
export type BuildOutput = (text: string) => void;

/** A failed step: the message docker prints (`The command '/bin/sh -c false' returned a non-zero code: 1`). */
export class BuildStepError extends AbodeError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('invalid_argument', message, details);
  }
}

const RUNTIME_FILES = ['etc/hosts', 'etc/hostname', 'etc/resolv.conf'];
const DEFAULT_SHELL = ['/bin/sh', '-c'];

interface StageState {
  /** The current image (ID). */
  image: string;
  config: ImageConfig;
  /** Build arguments declared in this stage, with their values. */
  args: Map<string, string | undefined>;
  /** Whether CMD was set in this stage (ENTRYPOINT resets only an inherited CMD). */
  cmdSet: boolean;
}

/** What the builder needs from the engine. */
function internals(engine: Engine): {
  images: ImageService & Partial<LayerCommitter>;
  snapshotter: Snapshotter & Partial<SnapshotDiffer>;
  root: string;
} {
  return engine.parts;
}

/** The step cache: key → image ID, in `ROOT/build/cache.json`. */
class BuildCache {
  private queue: Promise<unknown> = Promise.resolve();
  constructor(private readonly file: string) {}

  private async read(): Promise<Record<string, string>> {
    try {
      return JSON.parse(await fs.readFile(this.file, 'utf8')) as Record<string, string>;
    } catch {
      return {};
    }
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.read())[key];
  }

  set(key: string, id: string): Promise<void> {
    const p = this.queue.then(async () => {
      const doc = await this.read();
      doc[key] = id;
      await fs.mkdir(join(this.file, '..'), { recursive: true });
      const tmp = `${this.file}.${randomBytes(4).toString('hex')}`;
      await fs.writeFile(tmp, JSON.stringify(doc));
      await fs.rename(tmp, this.file);
    });
    this.queue = p.catch(() => undefined);
    return p;
  }
}

function envMap(env: readonly string[] = []): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env) {
    const eq = e.indexOf('=');
    m.set(eq < 0 ? e : e.slice(0, eq), eq < 0 ? '' : e.slice(eq + 1));
  }
  return m;
}

function setEnv(config: ImageConfig, key: string, value: string): void {
  const env = [...(config.Env ?? [])];
  const i = env.findIndex((e) => e.split('=', 1)[0] === key);
  if (i < 0) env.push(`${key}=${value}`);
  else env[i] = `${key}=${value}`;
  config.Env = env;
}

/** Runs builds; one Builder per engine, any number of builds at once. */
export class Builder {
  private readonly cache: BuildCache;

  constructor(private readonly engine: Engine) {
    this.cache = new BuildCache(join(internals(engine).root, 'build', 'cache.json'));
  }

  /** Builds from a context tar; `out` receives the progress text; `signal` aborts (client gone). */
  build(context: Readable, req: BuildRequest, out: BuildOutput, signal?: AbortSignal): Promise<BuildResult> {
    return new BuildRun(this.engine, this.cache).build(context, req, out, signal);
  }
}

/** One build: its stages by name and index. */
class BuildRun {
  private readonly stageNames = new Map<string, StageState>();
  private readonly stageIndex = new Map<number, StageState>();

  constructor(
    private readonly engine: Engine,
    private readonly cache: BuildCache,
  ) {}

  async build(
    context: Readable,
    req: BuildRequest,
    out: BuildOutput,
    signal?: AbortSignal,
  ): Promise<BuildResult> {
    const { root } = internals(this.engine);
    const work = join(root, 'tmp', `build-${randomBytes(8).toString('hex')}`);
    const ctx = join(work, 'context');
    await fs.mkdir(ctx, { recursive: true, mode: 0o700 });
    try {
      await new Promise<void>((resolve, reject) => {
        const x = extractTar({ cwd: ctx, strict: true, preserveOwner: false });
        x.on('error', (e: Error) => reject(new InvalidArgumentError(`invalid build context: ${e.message}`)));
        x.on('close', () => resolve());
        x.on('finish', () => resolve());
        context.on('error', reject);
        context.pipe(x as unknown as NodeJS.WritableStream);
      });
      return await this.run(ctx, req, out, signal);
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  private async run(
    ctx: string,
    req: BuildRequest,
    out: BuildOutput,
    signal?: AbortSignal,
  ): Promise<BuildResult> {
    const { images } = internals(this.engine);
    // The Containerfile: -f, else Containerfile, else Dockerfile.
    const candidates = req.dockerfile ? [req.dockerfile] : ['Containerfile', 'Dockerfile'];
    let text: string | undefined;
    let fileName = candidates[0]!;
    for (const c of candidates) {
      const r = await resolveInRoot(ctx, `/${c}`, { followFinal: true }).catch(() => undefined);
      if (r?.exists) {
        text = await fs.readFile(r.hostPath, 'utf8');
        fileName = c;
        break;
      }
    }
    if (text === undefined)
      throw new NotFoundError(
        `Cannot locate specified Dockerfile: ${candidates.join(' or ')} in the build context`,
      );
    const display = posix.basename(fileName);
    const { globalArgs, stages } = splitStages(parseContainerfile(text, display), display);
    const ignoreText = await fs.readFile(join(ctx, '.dockerignore'), 'utf8').catch(() => '');
    const ignore = new IgnoreMatcher(parseDockerignore(ignoreText));

    let last = stages.length - 1;
    if (req.target) {
      const t = stages.findIndex((s) => s.name === req.target!.toLowerCase());
      if (t < 0) throw new InvalidArgumentError(`failed to reach build target ${req.target} in Dockerfile`);
      last = t;
    }
    const built = stages.slice(0, last + 1);
    const total = built.reduce((n, s) => n + 1 + s.instructions.length, 0);
    const used = new Set<string>();

    // Global ARGs (before the first FROM): usable in FROM lines, and as defaults of ARGs redeclared in stages.
    const globals = new Map<string, string | undefined>();
    for (const a of globalArgs) {
      for (const [k, v] of keyValuePairs('ARG', a.args, (n) => globals.get(n))) {
        used.add(k);
        globals.set(k, req.buildArgs[k] ?? v);
      }
    }

    const results: StageState[] = [];
    let step = 0;
    let final: StageState | undefined;
    for (const stage of built) {
      step++;
      const state = await this.from(stage, globals, results, req, out, step, total, signal);
      for (const ins of stage.instructions) {
        if (signal?.aborted) throw new UnavailableError('the build was cancelled');
        step++;
        out(`Step ${step}/${total} : ${ins.original}\n`);
        try {
          await this.step(ins, state, ctx, ignore, results, req, out, signal, globals, used);
        } catch (err) {
          if (err instanceof BuildStepError) throw err;
          const e = err as Error;
          const code = err instanceof AbodeError ? err.code : 'internal';
          throw new BuildStepError(`${ins.name} failed (${display} line ${ins.line}): ${e.message}`, {
            line: ins.line,
            code,
          });
        }
      }
      results[stage.index] = state;
      this.stageIndex.set(stage.index, state);
      if (stage.name) this.stageNames.set(stage.name, state);
      final = state;
    }
    const unused = Object.keys(req.buildArgs).filter((k) => !used.has(k));
    if (unused.length) out(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
    const id = final!.image;
    out(`Successfully built ${shortId(id)}\n`);
    const tags: string[] = [];
    for (const t of req.tags) {
      await images.tag(id, t);
      const shown = familiarString(parseNormalizedTagged(t));
      tags.push(shown);
      out(`Successfully tagged ${shown}\n`);
    }
    return { id, tags };
  }

  private async from(
    stage: Stage,
    globals: Map<string, string | undefined>,
    results: StageState[],
    req: BuildRequest,
    out: BuildOutput,
    step: number,
    total: number,
    signal?: AbortSignal,
  ): Promise<StageState> {
    const { images } = internals(this.engine);
    out(`Step ${step}/${total} : ${stage.from.original}\n`);
    const base = expandValue(stage.base, (n) => globals.get(n));
    const platform = stage.from.flags.platform
      ? expandValue(stage.from.flags.platform, (n) => globals.get(n))
      : req.platform;
    const fresh = (image: ImageRecord): StageState => ({
      image: image.id,
      config: structuredClone(image.config),
      args: new Map(),
      cmdSet: false,
    });
    if (base.toLowerCase() === 'scratch') {
      const image = await this.cached({ parent: 'scratch', instruction: 'FROM scratch' }, req, async () =>
        this.commit(undefined, { config: {}, createdBy: '', platform }),
      );
      out(' ---> \n');
      return fresh(image);
    }
    const byName = this.stageNames.get(base.toLowerCase());
    if (byName) {
      out(` ---> ${shortId(byName.image)}\n`);
      return { ...structuredClone(byName), args: new Map(), cmdSet: false };
    }
    let image: ImageRecord;
    const progress = (e: ProgressEvent) => out(`${e.id ? `${e.id}: ` : ''}${e.status}\n`);
    try {
      image = images.resolveWithProgress
        ? await images.resolveWithProgress(base, progress)
        : await images.resolve(base);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      out(`Unable to find image '${familiarString(parseNormalizedTagged(base))}' locally\n`);
      if (signal?.aborted) throw err;
      image = await images.pull(base, platform ? { platform } : {}, progress);
    }
    out(` ---> ${shortId(image.id)}\n`);
    return fresh(image);
  }

  private async step(
    ins: Instruction,
    state: StageState,
    ctx: string,
    ignore: IgnoreMatcher,
    results: StageState[],
    req: BuildRequest,
    out: BuildOutput,
    signal: AbortSignal | undefined,
    globals: Map<string, string | undefined>,
    used: Set<string>,
  ): Promise<void> {
    const env = envMap(state.config.Env);
    const vars: Vars = (n) => (env.has(n) ? env.get(n) : state.args.get(n));
    const words = () => processWords(ins.args, vars);
    const config = structuredClone(state.config);
    let metadata = true;
    switch (ins.name) {
      case 'ENV':
        for (const [k, v] of keyValuePairs('ENV', ins.args, vars)) setEnv(config, k, v ?? '');
        break;
      case 'LABEL':
        config.Labels = { ...(config.Labels ?? {}) };
        for (const [k, v] of keyValuePairs('LABEL', ins.args, vars)) config.Labels[k] = v ?? '';
        break;
      case 'ARG': {
        for (const [k, v] of keyValuePairs('ARG', ins.args, vars)) {
          used.add(k);
          state.args.set(k, req.buildArgs[k] ?? v ?? globals.get(k));
        }
        out(` ---> ${shortId(state.image)}\n`);
        return; // ARG changes no image
      }
      case 'USER': {
        const [user] = words();
        if (!user) throw new InvalidArgumentError('USER requires exactly one argument');
        config.User = user;
        break;
      }
      case 'EXPOSE': {
        config.ExposedPorts = { ...(config.ExposedPorts ?? {}) };
        for (const p of words()) {
          const m = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
          if (!m) throw new InvalidArgumentError(`invalid containerPort: ${p}`);
          const lo = Number(m[1]);
          const hi = m[2] ? Number(m[2]) : lo;
          for (let port = lo; port <= hi; port++)
            config.ExposedPorts[`${port}/${(m[3] ?? 'tcp').toLowerCase()}`] = {};
        }
        break;
      }
      case 'VOLUME': {
        config.Volumes = { ...(config.Volumes ?? {}) };
        for (const v of ins.json ?? words()) config.Volumes[expandValue(v, vars)] = {};
        break;
      }
      case 'STOPSIGNAL':
        config.StopSignal = words()[0] ?? '';
        break;
      case 'SHELL':
        if (!ins.json || ins.json.length === 0)
          throw new InvalidArgumentError('SHELL requires the arguments to be in JSON form');
        config.Shell = ins.json;
        break;
      case 'CMD':
        config.Cmd = ins.json ?? [...(config.Shell ?? DEFAULT_SHELL), ins.args];
        state.cmdSet = true;
        break;
      case 'ENTRYPOINT':
        config.Entrypoint = ins.json ?? [...(config.Shell ?? DEFAULT_SHELL), ins.args];
        if (!state.cmdSet) delete config.Cmd; // an inherited CMD does not survive a new ENTRYPOINT
        break;
      case 'MAINTAINER':
      case 'ONBUILD':
      case 'HEALTHCHECK':
        out(`[Warning] ${ins.name} is recorded in the history only\n`);
        break;
      default:
        metadata = false;
    }
    if (metadata) {
      const createdBy = `/bin/sh -c #(nop)  ${ins.original}`;
      const image = await this.cached(
        { parent: state.image, instruction: createdBy },
        req,
        () => this.commit(undefined, { parent: state.image, config, createdBy }),
        out,
      );
      this.advance(state, image, out);
      return;
    }
    switch (ins.name) {
      case 'RUN':
        return this.runStep(ins, state, req, out, signal);
      case 'COPY':
      case 'ADD':
        return this.copyStep(ins, state, vars, ctx, ignore, req, out);
      case 'WORKDIR': {
        const dir = posix.resolve(state.config.WorkingDir || '/', expandValue(ins.args, vars));
        const cfg = { ...structuredClone(state.config), WorkingDir: dir };
        const createdBy = `/bin/sh -c #(nop) WORKDIR ${dir}`;
        const image = await this.cached(
          { parent: state.image, instruction: createdBy },
          req,
          () =>
            this.inSnapshot(state.image, (root) => mkdirIn(root, dir, 0, 0).then(() => undefined), {
              parent: state.image,
              config: cfg,
              createdBy,
            }),
          out,
        );
        this.advance(state, image, out);
        return;
      }
      default:
        throw new InternalError(`unhandled instruction ${ins.name}`);
    }
  }

  private advance(state: StageState, image: ImageRecord, out: BuildOutput): void {
    state.image = image.id;
    state.config = structuredClone(image.config);
    out(` ---> ${shortId(image.id)}\n`);
  }

  /** Looks a step up in the cache (unless --no-cache), else makes it and records it. */
  private async cached(
    inputs: CacheInputs,
    req: BuildRequest,
    make: () => Promise<ImageRecord>,
    out?: BuildOutput,
  ): Promise<ImageRecord> {
    const { images } = internals(this.engine);
    const key = cacheKey(inputs);
    if (!req.noCache) {
      const id = await this.cache.get(key);
      if (id) {
        const hit = await images.resolve(id).catch(() => undefined);
        if (hit) {
          out?.(' ---> Using cache\n');
          return hit;
        }
      }
    }
    const image = await make();
    await this.cache.set(key, image.id);
    return image;
  }

  private commit(
    layer: NodeJS.ReadableStream | undefined,
    opts: Parameters<LayerCommitter['commitLayer']>[1],
  ): Promise<ImageRecord> {
    const { images } = internals(this.engine);
    if (!images.commitLayer) throw new UnavailableError('this image service cannot commit layers');
    return images.commitLayer(layer, opts);
  }

  /** Mounts a fresh snapshot of `image`, lets `work` change it, and commits the changes as a layer. */
  private async inSnapshot(
    image: string,
    work: (root: string) => Promise<void>,
    commit: Parameters<LayerCommitter['commitLayer']>[1],
  ): Promise<ImageRecord> {
    const { images, snapshotter, root } = internals(this.engine);
    if (!snapshotter.diff) throw new UnavailableError('this snapshotter cannot export changes');
    const key = `build-${randomBytes(8).toString('hex')}`;
    const record = await images.resolve(image);
    const mounts = await snapshotter.prepare(key, record);
    try {
      await this.withMounted(mounts, root, work);
      const diff = await snapshotter.diff(key);
      return await this.commit(diff, commit);
    } finally {
      await snapshotter.remove(key).catch(() => undefined);
    }
  }

  private async withMounted<T>(
    mounts: Parameters<typeof mountAll>[0],
    root: string,
    work: (dir: string) => Promise<T>,
  ): Promise<T> {
    const base = join(root, 'tmp');
    await fs.mkdir(base, { recursive: true, mode: 0o700 });
    const target = await fs.mkdtemp(join(base, 'build-mnt-'));
    try {
      await mountAll(mounts, target);
      return await work(target);
    } finally {
      await unmountAll(target);
      await fs.rmdir(target).catch(() => undefined); // never rm -r through a mount
    }
  }

  private async copyStep(
    ins: Instruction,
    state: StageState,
    vars: Vars,
    ctx: string,
    ignore: IgnoreMatcher,
    req: BuildRequest,
    out: BuildOutput,
  ): Promise<void> {
    const { images, snapshotter, root } = internals(this.engine);
    const list = (ins.json ?? processWords(ins.args, vars)).map((w) => (ins.json ? expandValue(w, vars) : w));
    if (list.length < 2) throw new InvalidArgumentError(`${ins.name} requires at least two arguments`);
    const srcs = list.slice(0, -1);
    let dest = list[list.length - 1]!;
    if (!dest.startsWith('/'))
      dest = posix.join(state.config.WorkingDir || '/', dest) + (dest.endsWith('/') ? '/' : '');
    const chown = ins.flags.chown ? expandValue(ins.flags.chown, vars) : undefined;
    const chmod = ins.flags.chmod ? parseInt(ins.flags.chmod, 8) : undefined;
    if (ins.flags.chmod && (!/^[0-7]{3,4}$/.test(ins.flags.chmod) || Number.isNaN(chmod)))
      throw new InvalidArgumentError(`invalid --chmod=${ins.flags.chmod}: want octal permission bits`);
    const from = ins.flags.from ? expandValue(ins.flags.from, vars) : undefined;
    const createdBy = `/bin/sh -c #(nop) ${ins.name} ${chown ? `--chown=${chown} ` : ''}${chmod !== undefined ? `--chmod=${ins.flags.chmod} ` : ''}${from ? `--from=${from} ` : ''}${JSON.stringify(srcs)} ${dest}`;

    const doCopy = async (srcRoot: string, srcIgnore: IgnoreMatcher | undefined, extra: string[]) => {
      const sources = await findSources(srcRoot, srcs, srcIgnore);
      const files = from ? undefined : await describeSources(sources, srcIgnore);
      return this.cached(
        { parent: state.image, instruction: createdBy, ...(files ? { files } : {}), extra },
        req,
        () =>
          this.inSnapshot(
            state.image,
            async (rootfs) => {
              const owner = await resolveChown(rootfs, chown);
              await copyInto(rootfs, sources, dest, {
                ...owner,
                ...(chmod !== undefined ? { mode: chmod } : {}),
                ...(srcIgnore ? { ignore: srcIgnore } : {}),
                extractArchives: ins.name === 'ADD',
              });
            },
            { parent: state.image, config: state.config, createdBy },
          ),
        out,
      );
    };

    let image: ImageRecord;
    if (!from) image = await doCopy(ctx, ignore, []);
    else {
      // --from: a stage (by name or index) or an image.
      let source: string | undefined = this.stageNames.get(from.toLowerCase())?.image;
      if (!source && /^\d+$/.test(from)) source = this.stageIndex.get(Number(from))?.image;
      if (!source) source = (await images.resolve(from)).id;
      const key = `build-${randomBytes(8).toString('hex')}`;
      const mounts = await snapshotter.prepare(key, await images.resolve(source));
      try {
        image = await this.withMounted(mounts, root, (srcRoot) =>
          doCopy(srcRoot, undefined, [`from=${source}`]),
        );
      } finally {
        await snapshotter.remove(key).catch(() => undefined);
      }
    }
    this.advance(state, image, out);
  }

  private async runStep(
    ins: Instruction,
    state: StageState,
    req: BuildRequest,
    out: BuildOutput,
    signal?: AbortSignal,
  ): Promise<void> {
    const { snapshotter } = internals(this.engine);
    const argv = ins.json ?? [...(state.config.Shell ?? DEFAULT_SHELL), ins.args];
    const env = envMap(state.config.Env);
    // Build arguments are the command's environment (ENV of the same name wins), and part of its cache key.
    const argEnv = [...state.args]
      .filter(([k, v]) => v !== undefined && !env.has(k))
      .map(([k, v]) => `${k}=${v}`);
    const createdBy = argEnv.length
      ? `|${argEnv.length} ${argEnv.join(' ')} ${argv.join(' ')}`
      : argv.join(' ');
    const image = await this.cached(
      { parent: state.image, instruction: createdBy, extra: argEnv },
      req,
      async () => {
        if (!snapshotter.diff) throw new UnavailableError('this snapshotter cannot export changes');
        const record = await this.engine.create(
          createOptions({
            image: state.image,
            cmd: argv,
            entrypoint: [],
            env: argEnv,
            labels: { 'org.abode.build': 'true' },
            ...(req.network === 'host' ? { network: 'host' as const } : {}),
          }),
        );
        const id = record.id;
        out(` ---> Running in ${id.slice(0, 12)}\n`);
        const kill = () => void this.engine.kill(id, 'KILL').catch(() => undefined);
        signal?.addEventListener('abort', kill);
        try {
          let output: Promise<void> = Promise.resolve();
          await this.engine.start(id, async () => {
            const stream = await this.engine.attach(id, { stdin: false });
            output = relayFrames(stream, out);
          });
          const done = await this.engine.wait(id);
          await Promise.race([output, new Promise((r) => setTimeout(r, 2000))]);
          if (signal?.aborted) throw new UnavailableError('the build was cancelled');
          const code = done.state.exitCode;
          if (code !== 0)
            throw new BuildStepError(`The command '${argv.join(' ')}' returned a non-zero code: ${code}`, {
              exitCode: code,
            });
          const diff = await snapshotter.diff(id, { excludeEmptyFiles: RUNTIME_FILES });
          const committed = await this.commit(diff, { parent: state.image, config: state.config, createdBy });
          out(`Removing intermediate container ${id.slice(0, 12)}\n`);
          return committed;
        } finally {
          signal?.removeEventListener('abort', kill);
          await this.engine.remove(id, { force: true }).catch(() => undefined);
        }
      },
      out,
    );
    this.advance(state, image, out);
  }
}

/** Copies stdcopy frames (1 stdout, 2 stderr; 3 is the exit record) to the build output. */
function relayFrames(
  stream: NodeJS.ReadableStream & { destroy?: () => void },
  out: BuildOutput,
): Promise<void> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 8) {
        const len = buf.readUInt32BE(4);
        if (buf.length < 8 + len) break;
        const kind = buf[0];
        const payload = buf.subarray(8, 8 + len);
        buf = buf.subarray(8 + len);
        if (kind === 1 || kind === 2) out(payload.toString('utf8'));
      }
    });
    stream.on('end', () => resolve());
    stream.on('close', () => resolve());
    stream.on('error', () => resolve());
  });
}
