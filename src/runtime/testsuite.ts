/**
 * The runtime conformance suite: the same lifecycle and isolation cases against every Runtime
 * (`container`, `oci:<binary>`, `vm`). A test file calls runRuntimeSuite with a way to make the
 * runtime and bundles (it may use the engine's buildSpec and the image service; this file may not).
 * Cases a runtime cannot do are skipped by its `capabilities`, as the engine asks them; checks of
 * container behaviour a runtime does not share are skipped by its `differs`, each with its reason.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, it, type TestContext } from 'node:test';
import type { Duplex } from 'node:stream';
import type { Bundle, ExitStatus, Runtime } from '../core/runtime.js';
import type { CreateOptions } from '../core/instance.js';
import { AbodeError } from '../core/errors.js';
import { ShimFrameDecoder, ShimStream } from '../platform/native-protocol.js';

/** What a case asks of a bundle: run options (docker's), the command always given. */
export type SuiteBundleOptions = Partial<CreateOptions> & { cmd: string[] };

export interface RuntimeSuiteOptions {
  name: string;
  /** The runtime under test; made once for the suite. */
  newRuntime(): Promise<Runtime> | Runtime;
  /** An OCI bundle for instance `id` (config.json, root file system mounts, log path) over busybox. */
  makeBundle(id: string, options: SuiteBundleOptions): Promise<Bundle>;
  /** Frees what makeBundle made (the snapshot), after the runtime has deleted the instance. */
  releaseBundle?(id: string, bundle: Bundle): Promise<void>;
  /** Directories where the runtime keeps per-instance files: nothing named after a deleted instance may stay. */
  runRoots?: string[];
  /** Where the runtime puts an instance's cgroup, relative to each hierarchy's root; default `abode/ID`. */
  cgroupPath?(id: string): string;
  /** A reason to skip the whole suite (not root, runtime missing), or false. */
  skip?: string | false;
  /** Runs after every case (removes the throw-away state root). */
  cleanup?(): Promise<void>;
  /**
   * Container behaviour this runtime does not share, each with the reason: the checks that need it
   * are skipped (the reason goes to the test's diagnostics), the rest of their case still runs.
   */
  differs?: RuntimeDifferences;
  /** The stats case's `--memory` and the limit stats() must then report; default 64 MiB both. */
  statsMemory?: { memory: number; limit: number };
}

export interface RuntimeDifferences {
  /** The main process is not PID 1 of the instance's own pid namespace (so exec's PID 1 is not it either). */
  pid1?: string;
  /** docker's masked paths (/proc/kcore …) are not masked. */
  maskedPaths?: string;
  /** A read-only root (docker --read-only) is not read-only. */
  readOnlyRoot?: string;
  /** pids() are not the instance's processes as the host sees them. */
  hostPids?: string;
}

interface Frames {
  stdout: string;
  stderr: string;
  exit?: { exitCode: number };
}

const TIMEOUT = 30_000;

/** Registers the suite's cases with node:test. */
export function runRuntimeSuite(opts: RuntimeSuiteOptions): void {
  describe(`runtime conformance: ${opts.name}`, { skip: opts.skip ?? false }, () => {
    let runtime: Runtime;
    const made: { id: string; bundle: Bundle }[] = [];
    /** Instances that outlive their case (the shared sleeper), deleted after the suite. */
    const kept: { id: string; bundle: Bundle }[] = [];
    const statsMemory = opts.statsMemory ?? { memory: 64 * 1024 * 1024, limit: 64 * 1024 * 1024 };
    const cgroupPath = opts.cgroupPath ?? ((id: string) => `abode/${id}`);

    before(async () => {
      runtime = await opts.newRuntime();
    });

    /** Deletes the instances (and frees their bundles) listed in `list`, emptying it. */
    async function remove(list: { id: string; bundle: Bundle }[]): Promise<void> {
      for (const { id, bundle } of list.splice(0)) {
        await runtime.delete(id).catch(() => undefined);
        await opts.releaseBundle?.(id, bundle).catch(() => undefined);
      }
    }

    afterEach(() => remove(made));

    after(async () => {
      await remove(kept);
      await opts.cleanup?.();
    });

    const caps = () => runtime.capabilities;
    const differs = opts.differs ?? {};

    /** Whether a check of `what` applies to this runtime; when not, says why in the test's diagnostics. */
    const checks = (t: TestContext, what: keyof RuntimeDifferences, check: string): boolean => {
      const reason = differs[what];
      if (reason) t.diagnostic(`not checked for ${opts.name}: ${check} (${reason})`);
      return !reason;
    };

    /** After delete: no cgroup, process, file in the run roots or mount of the instance is left. */
    function assertNothingLeft(id: string, bundle: Bundle): void {
      assert.deepEqual(leftoverCgroups(cgroupPath(id)), [], 'cgroup directories left');
      assert.deepEqual(leftoverProcesses(id), [], 'processes left');
      assert.deepEqual(leftoverFiles(opts.runRoots ?? [], id), [], 'files left in the run roots');
      assert.deepEqual(leftoverMounts(bundle.dir), [], 'mounts left');
    }

    /** A bundle for a new instance; afterEach deletes it. */
    async function bundleFor(
      options: SuiteBundleOptions,
      list = made,
    ): Promise<{ id: string; bundle: Bundle }> {
      const id = randomBytes(32).toString('hex');
      const bundle = await opts.makeBundle(id, options);
      list.push({ id, bundle });
      return { id, bundle };
    }

    /** Creates an instance, attaches to it (with stdin or not) and starts it; frames resolve at the stream's end. */
    async function attachAndStart(
      options: SuiteBundleOptions,
      stdin: boolean,
    ): Promise<{ id: string; stream: Duplex; frames: Promise<Frames> }> {
      const { id, bundle } = await bundleFor(options);
      await runtime.create(id, bundle);
      const stream = await runtime.attach(id, { stdin });
      const frames = collectFrames(stream);
      await runtime.start(id);
      return { id, stream, frames };
    }

    let sleeper: Promise<{ id: string; bundle: Bundle }> | undefined;

    /**
     * A running `exec sleep 1000` (hostname suite-exec, the stats case's --memory) shared by the cases
     * that only look at it (exec, stats) and ended by the delete case: a VM boot saved per case.
     */
    function sharedSleeper(): Promise<{ id: string; bundle: Bundle }> {
      sleeper ??= (async () => {
        const { id, bundle } = await bundleFor(
          {
            cmd: ['sh', '-c', 'echo ready; exec sleep 1000'],
            hostname: 'suite-exec',
            memory: statsMemory.memory,
          },
          kept,
        );
        await runtime.create(id, bundle);
        await runtime.start(id);
        await waitForLog(bundle, 'ready');
        return { id, bundle };
      })();
      return sleeper;
    }

    /** Creates and starts `cmd` (sh -c SCRIPT when given a string). */
    async function runScript(
      script: string,
      options: Partial<SuiteBundleOptions> = {},
    ): Promise<{ id: string; bundle: Bundle; pid: number }> {
      const { id, bundle } = await bundleFor({ cmd: ['sh', '-c', script], ...options });
      const { pid } = await runtime.create(id, bundle);
      await runtime.start(id);
      return { id, bundle, pid };
    }

    it(
      'create holds the process; start runs it; the log keeps stdout and stderr apart; wait gives the code',
      {
        timeout: TIMEOUT,
      },
      async () => {
        const { id, bundle } = await bundleFor({
          cmd: ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 0'],
        });
        const { pid } = await runtime.create(id, bundle);
        assert.ok(pid > 0, `create returned pid ${pid}`);
        const created = await runtime.state(id);
        assert.equal(created.status, 'created');
        await sleep(300);
        assert.deepEqual(readLog(bundle.logPath), [], 'the process ran before start');
        assert.equal((await runtime.state(id)).status, 'created');
        await runtime.start(id);
        const exit = await withTimeout(runtime.wait(id), 'wait');
        assert.equal(exit.exitCode, 0);
        const log = readLog(bundle.logPath);
        assert.deepEqual(
          log.filter((l) => l.stream === 'stdout').map((l) => l.text),
          ['to-stdout'],
        );
        assert.deepEqual(
          log.filter((l) => l.stream === 'stderr').map((l) => l.text),
          ['to-stderr'],
        );
        const stopped = await runtime.state(id);
        assert.equal(stopped.status, 'stopped');
        assert.equal(stopped.status === 'stopped' && stopped.exit.exitCode, 0);
      },
    );

    it('exit codes: 3 as given', { timeout: TIMEOUT }, async () => {
      const { id } = await runScript('exit 3');
      const exit = await withTimeout(runtime.wait(id), 'wait');
      assert.equal(exit.exitCode, 3);
      assert.equal(exit.error, undefined, 'an exit code is no runtime error');
    });

    it('exit codes: 137 after kill 9', { timeout: TIMEOUT }, async () => {
      const { id, bundle } = await runScript('echo ready; exec sleep 1000');
      await waitForLog(bundle, 'ready');
      await runtime.kill(id, 9);
      const exit = await withTimeout(runtime.wait(id), 'wait');
      assert.equal(exit.exitCode, 137);
      assert.equal(exit.signal, 9);
      assert.equal(exit.error, undefined, 'a killed process is no runtime error');
    });

    it('SIGTERM reaches a process that traps it', { timeout: TIMEOUT }, async () => {
      const { id, bundle } = await runScript(
        'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.1; done',
      );
      await waitForLog(bundle, 'ready');
      await runtime.kill(id, 15);
      const exit = await withTimeout(runtime.wait(id), 'wait');
      assert.equal(exit.exitCode, 42);
      assert.ok(
        readLog(bundle.logPath).some((l) => l.text === 'got-term'),
        'the trap did not run',
      );
    });

    it('attach receives stdcopy frames and the exit frame', { timeout: TIMEOUT }, async () => {
      const { id, frames } = await attachAndStart(
        {
          cmd: ['sh', '-c', 'echo out-line; echo err-line >&2; exit 5'],
        },
        false,
      );
      const got = await withTimeout(frames, 'attach frames');
      assert.equal(got.stdout, 'out-line\n');
      assert.equal(got.stderr, 'err-line\n');
      assert.equal(got.exit?.exitCode, 5);
      assert.equal((await runtime.wait(id)).exitCode, 5);
    });

    it('stdin through attach, ended by a half-close', { timeout: TIMEOUT }, async () => {
      const { stream, frames } = await attachAndStart(
        {
          cmd: ['sh', '-c', 'cat; echo stdin-closed'],
          openStdin: true,
        },
        true,
      );
      stream.write('hello through stdin\n');
      stream.end();
      const got = await withTimeout(frames, 'attach frames');
      assert.equal(got.stdout, 'hello through stdin\nstdin-closed\n');
      assert.equal(got.exit?.exitCode, 0);
    });

    it(
      'exec runs in the instance (same hostname and pid namespace) and gives its code',
      {
        timeout: TIMEOUT,
      },
      async (t) => {
        if (!caps().exec) return t.skip(`${opts.name} has no exec`);
        const { id, bundle } = await sharedSleeper();
        const handle = await runtime.exec(id, randomBytes(32).toString('hex'), {
          ...bundle.spec.process,
          terminal: false,
          args: ['sh', '-c', 'hostname; tr "\\0" " " < /proc/1/cmdline; echo; exit 7'],
        });
        const stream = await handle.attach({ stdin: false });
        const frames = collectFrames(stream);
        await handle.start();
        const got = await withTimeout(frames, 'exec frames');
        const [hostname, cmdline] = got.stdout.split('\n');
        assert.equal(hostname, 'suite-exec');
        if (checks(t, 'pid1', "exec's PID 1 is the main process")) assert.equal(cmdline.trim(), 'sleep 1000');
        assert.equal((await withTimeout(handle.wait(), 'exec wait')).exitCode, 7);
        assert.equal((await runtime.state(id)).status, 'running', 'exec ended the instance');
      },
    );

    it('pids lists the processes', { timeout: TIMEOUT }, async (t) => {
      if (!caps().top) return t.skip(`${opts.name} cannot list processes`);
      if (differs.hostPids) return t.skip(differs.hostPids);
      const { id, bundle } = await runScript('sleep 1000 & sleep 1000 & echo ready; wait');
      await waitForLog(bundle, 'ready');
      const state = await runtime.state(id);
      assert.equal(state.status, 'running');
      let pids: number[] = [];
      await waitUntil(async () => (pids = await runtime.pids(id)).length >= 3, 'three processes');
      for (const pid of pids) assert.ok(existsSync(`/proc/${pid}`), `pid ${pid} does not exist`);
      const names = pids.map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'));
      assert.equal(names.filter((argv) => argv.join(' ').trim() === 'sleep 1000').length, 2);
      if (state.status === 'running') assert.ok(pids.includes(state.pid), `pids ${pids} lack ${state.pid}`);
    });

    it('stats reports memory, cpu and pids', { timeout: TIMEOUT }, async (t) => {
      if (!caps().stats) return t.skip(`${opts.name} has no stats`);
      const { id } = await sharedSleeper();
      const stats = await runtime.stats(id);
      assert.ok(stats.memory.usage > 0, `memory usage ${stats.memory.usage}`);
      assert.equal(stats.memory.limit, statsMemory.limit);
      assert.ok(stats.cpu.usageNs >= 0);
      assert.ok(stats.pids.current >= 1, `pids ${stats.pids.current}`);
    });

    it(
      'delete of a running instance leaves no cgroup, socket, process or mount; twice is fine',
      {
        timeout: TIMEOUT,
      },
      async () => {
        const { id, bundle } = await sharedSleeper();
        sleeper = undefined;
        const state = await runtime.state(id);
        assert.equal(state.status, 'running');
        const pid = state.status === 'running' ? state.pid : 0;
        await runtime.delete(id);
        assertNothingLeft(id, bundle);
        assert.ok(!existsSync(`/proc/${pid}`) || isZombie(pid), `pid ${pid} still runs`);
        await runtime.delete(id);
      },
    );

    it('delete of a created (held) instance leaves nothing', { timeout: TIMEOUT }, async () => {
      const { id, bundle } = await bundleFor({ cmd: ['sh', '-c', 'echo never'] });
      await runtime.create(id, bundle);
      await runtime.delete(id);
      assert.deepEqual(readLog(bundle.logPath), []);
      assertNothingLeft(id, bundle);
    });

    it(
      'isolation: PID 1, own hostname, only lo, a masked /proc file, read-only root',
      {
        timeout: TIMEOUT,
      },
      async (t) => {
        // /proc/kcore, or another of docker's masked files where the kernel has no kcore.
        const masked = ['/proc/kcore', '/proc/keys', '/proc/timer_list'].find((p) => existsSync(p));
        const checkMasked = checks(t, 'maskedPaths', 'a masked /proc file');
        if (checkMasked) assert.ok(masked, 'the host has none of /proc/kcore, /proc/keys, /proc/timer_list');
        const { id, bundle } = await runScript(
          [
            'echo pid=$$',
            'echo host=$(hostname)',
            'echo net=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" " ")',
            // masked: /dev/null is bound over it (a character device instead of a regular file)
            `if [ -c ${masked} ]; then echo masked=yes; else echo masked=no; fi`,
            'if touch /probe 2>/dev/null; then echo root=rw; else echo root=ro; fi',
          ].join('; '),
          { hostname: 'suite-iso', readOnly: true },
        );
        assert.equal((await withTimeout(runtime.wait(id), 'wait')).exitCode, 0);
        // Lines of checks that do not apply to this runtime are left out of both sides.
        const unchecked = [
          ...(checks(t, 'pid1', 'the main process is PID 1') ? [] : ['pid=']),
          ...(checkMasked ? [] : ['masked=']),
          ...(checks(t, 'readOnlyRoot', 'a read-only root') ? [] : ['root=']),
        ];
        const checked = (lines: string[]) => lines.filter((l) => !unchecked.some((p) => l.startsWith(p)));
        const out = readLog(bundle.logPath)
          .filter((l) => l.stream === 'stdout')
          .map((l) => l.text);
        assert.deepEqual(
          checked(out),
          checked(['pid=1', 'host=suite-iso', 'net=lo', 'masked=yes', 'root=ro']),
        );
      },
    );

    it('isolation: the root is writable unless asked', { timeout: TIMEOUT }, async () => {
      const { id, bundle } = await runScript('touch /probe && echo root=rw');
      assert.equal((await withTimeout(runtime.wait(id), 'wait')).exitCode, 0);
      assert.ok(readLog(bundle.logPath).some((l) => l.text === 'root=rw'));
    });

    it(
      "a terminal (-t): output and input flow through the monitor's pty",
      { timeout: TIMEOUT },
      async (t) => {
        if (!caps().pty) return t.skip(`${opts.name} has no pty`);
        const { id, stream, frames } = await attachAndStart(
          {
            cmd: ['sh', '-c', 'read line; echo "got $line"; exit 4'],
            tty: true,
            openStdin: true,
          },
          true,
        );
        await runtime.resize(id, 30, 100);
        stream.write('over-the-pty\n');
        const got = await withTimeout(frames, 'attach frames');
        assert.match(got.stdout, /got over-the-pty\r?\n/);
        assert.equal(got.stderr, '', 'a terminal has one stream');
        assert.equal(got.exit?.exitCode, 4);
      },
    );

    it(
      'a new runtime object (a restarted daemon) finds, signals and waits for a running instance',
      {
        timeout: TIMEOUT,
      },
      async () => {
        const { id, bundle } = await runScript('trap "exit 9" TERM; echo ready; while :; do sleep 0.1; done');
        await waitForLog(bundle, 'ready');
        const later = await opts.newRuntime();
        const state = await later.state(id);
        assert.equal(state.status, 'running');
        await later.kill(id, 15);
        assert.equal((await withTimeout(later.wait(id), 'wait')).exitCode, 9);
        const stopped = await (await opts.newRuntime()).state(id);
        assert.equal(stopped.status === 'stopped' && stopped.exit.exitCode, 9);
      },
    );

    it('a missing command fails create (or start) with command_not_found', { timeout: TIMEOUT }, async () => {
      const { id, bundle } = await bundleFor({ cmd: ['no-such-command-here'] });
      let failure: unknown;
      try {
        await runtime.create(id, bundle);
        await runtime.start(id);
      } catch (error) {
        failure = error;
      }
      assert.ok(failure instanceof AbodeError, `expected an AbodeError, got ${String(failure)}`);
      assert.equal(failure.code, 'command_not_found', failure.message);
      assert.match(failure.message, /no-such-command-here/);
      await runtime.delete(id);
      assert.deepEqual(leftoverProcesses(id), [], 'processes left');
      assert.deepEqual(leftoverMounts(bundle.dir), [], 'mounts left');
    });
  });
}

// --- helpers ---

interface LogLine {
  stream: string;
  text: string;
}

/** The CRI log's lines (partial lines joined). */
function readLog(path: string): LogLine[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const lines: LogLine[] = [];
  let partial: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^\S+ (stdout|stderr) (F|P) (.*)$/.exec(line);
    if (!match) continue;
    const [, stream, tag, body] = match;
    if (tag === 'P') {
      partial[stream] = (partial[stream] ?? '') + body;
      continue;
    }
    lines.push({ stream, text: (partial[stream] ?? '') + body });
    partial = { ...partial, [stream]: '' };
  }
  return lines;
}

async function waitForLog(bundle: Bundle, text: string): Promise<void> {
  await waitUntil(() => readLog(bundle.logPath).some((l) => l.text === text), `"${text}" in the log`);
}

async function waitUntil(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function collectFrames(stream: Duplex): Promise<Frames> {
  return new Promise((resolve, reject) => {
    const decoder = new ShimFrameDecoder();
    const got: Frames = { stdout: '', stderr: '' };
    stream.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.stream === ShimStream.stdout) got.stdout += frame.payload.toString();
        else if (frame.stream === ShimStream.stderr) got.stderr += frame.payload.toString();
        else if (frame.stream === ShimStream.exit)
          got.exit = JSON.parse(frame.payload.toString()) as ExitStatus;
      }
    });
    stream.once('error', reject);
    stream.once('close', () => resolve(got));
  });
}

function withTimeout<T>(promise: Promise<T>, what: string, ms = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `path` under every mounted cgroup hierarchy (named ones such as name=systemd too), where it still exists. */
function leftoverCgroups(path: string): string[] {
  const roots = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => {
      const sep = fields.indexOf('-', 6);
      return sep > 0 && (fields[sep + 1] === 'cgroup' || fields[sep + 1] === 'cgroup2');
    })
    .map((fields) => fields[4]);
  return [...new Set(roots)].map((root) => `${root}/${path}`).filter((dir) => existsSync(dir));
}

/** Live processes whose command line or cgroup names the instance. */
function leftoverProcesses(id: string): string[] {
  const short = id.slice(0, 16);
  const found: string[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (isZombie(Number(name))) continue;
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const cgroup = readFileSync(`/proc/${name}/cgroup`, 'utf8');
      if (cmdline.includes(short) || cgroup.includes(id)) found.push(`${name}: ${cmdline.trim()}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

function isZombie(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

/** Files or directories under `roots` named after the instance (its id or its 16-character prefix). */
function leftoverFiles(roots: string[], id: string): string[] {
  const short = id.slice(0, 16);
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = `${dir}/${name}`;
      if (name.includes(short)) found.push(path);
      else if (depth < 3) walk(path, depth + 1);
    }
  };
  roots.forEach((root) => walk(root, 0));
  return found;
}

/** Mount points at or under `dir` in this mount namespace. */
function leftoverMounts(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
}
