/** Drives the CLI as a user types it, against a throw-away state root with its own daemon. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(repoRoot, 'dist/src/cli/main.js');

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export class Abode {
  readonly root: string;

  constructor(prefix = 'abode-e2e-') {
    this.root = mkdtempSync(join(tmpdir(), prefix));
  }

  get env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, ABODE_ROOT: this.root };
    delete env.NODE_EXTRA_CA_CERTS;
    return env;
  }

  /** Runs `abode ARGS` and returns its exit code and output. */
  run(args: string[], options: { input?: string; timeoutMs?: number } = {}): Result {
    const result = spawnSync(process.execPath, [cli, ...args], {
      env: this.env,
      input: options.input ?? '',
      encoding: 'utf8',
      timeout: options.timeoutMs ?? 60_000,
    });
    return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
  }

  /** Runs `abode ARGS`, fails the test unless it exits 0, and returns its stdout. */
  ok(args: string[], input?: string): string {
    const result = this.run(args, { input });
    assert.equal(result.code, 0, `abode ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
    return result.stdout;
  }

  /** As run, without blocking the event loop (for commands that run while others act). */
  runAsync(args: string[], options: { input?: string } = {}): Promise<Result> {
    return new Promise((resolveResult) => {
      const child = spawn(process.execPath, [cli, ...args], { env: this.env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      child.stdin.end(options.input ?? '');
      child.on('close', (code) => resolveResult({ code: code ?? -1, stdout, stderr }));
    });
  }

  daemonPid(): number | undefined {
    const file = join(this.root, 'run', 'abode.pid');
    return existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : undefined;
  }

  /** Kills the daemon with SIGKILL (instances live on). */
  killDaemon(): void {
    const pid = this.daemonPid();
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (let i = 0; i < 100 && pid && alive(pid); i++) spawnSync('sleep', ['0.02']);
  }

  /** Removes every instance, stops the daemon and deletes the root. */
  cleanup(): void {
    const ids = this.run(['ps', '-aq', '--no-trunc']).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) this.run(['rm', '-f', ...ids]);
    const pid = this.daemonPid();
    if (pid) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
      for (let i = 0; i < 100 && alive(pid); i++) spawnSync('sleep', ['0.05']);
    }
    spawnSync('umount', ['-R', this.root], { stdio: 'ignore' });
    rmSync(this.root, { recursive: true, force: true });
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What a failed run could leak: mounts, cgroups, shim processes. */
export function hostSnapshot(root: string): { mounts: string[]; cgroups: string[]; shims: string[] } {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.includes(root))
    .sort();
  const cgroups: string[] = [];
  for (const base of ['/sys/fs/cgroup/memory/abode', '/sys/fs/cgroup/pids/abode', '/sys/fs/cgroup/abode']) {
    if (existsSync(base))
      cgroups.push(
        ...readdirSync(base)
          .filter((n) => /^[0-9a-f]{64}$/.test(n) || (n.startsWith('pool-') && !standbyOnly(`${base}/${n}`)))
          .map((n) => `${base}/${n}`),
      );
  }
  return { mounts, cgroups: cgroups.sort(), shims: processesOf('abode-shim', root) };
}

/**
 * Pids of the host's processes whose command line holds `program` and `root` (an instance's state
 * root). A VM template's build (ROOT/run/templates) is not an instance's: it comes and goes with the daemon.
 */
export function processesOf(program: string, root: string): string[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .filter((pid) => {
      const cmdline = commandLine(pid);
      return (
        cmdline.includes(program) && cmdline.includes(root) && !cmdline.includes(`${root}/run/templates/`)
      );
    });
}

/** A process's command line ('' once it is gone). */
export function commandLine(pid: string | number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/** A pool cgroup holding just a standby monitor (kept ready by the daemon on purpose), not a leak. */
function standbyOnly(dir: string): boolean {
  try {
    const pids = readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean);
    // A fresh pool cgroup is empty for the moment its standby takes to join it.
    if (pids.length === 0) return Date.now() - statSync(dir).mtimeMs < 5000;
    return pids.every((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--standby'));
  } catch {
    return false;
  }
}
