import { mkdir, readFile, readdir, rmdir, stat, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbodeError,
  ConflictError,
  InternalError,
  InvalidArgumentError,
  UnavailableError,
} from '../../core/errors.js';

/** The few file operations the drivers need; errors carry errno codes (ENOENT, EEXIST, EBUSY, EINVAL). */
export interface CgroupFs {
  readFile(path: string): Promise<string>;
  /** Writes to an existing file without creating or truncating it (cgroup files accept one value per write). */
  writeFile(path: string, data: string): Promise<void>;
  /** Creates one directory; fails with EEXIST when present and ENOENT when the parent is missing. */
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  /** Names of the subdirectories of `path`. */
  listDirs(path: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
}

/** The real file system. */
export const nodeCgroupFs: CgroupFs = {
  readFile: (path) => readFile(path, 'utf8'),
  writeFile: (path, data) => writeFile(path, data, { flag: 'r+' }),
  mkdir: async (path) => {
    await mkdir(path);
  },
  rmdir: (path) => rmdir(path),
  listDirs: async (path) =>
    (await readdir(path, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name),
  exists: async (path) => {
    try {
      await stat(path);
      return true;
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw err;
    }
  },
};

/** Sends a signal to a process; ESRCH (already gone) is ignored by callers. */
export type KillFn = (pid: number, signal: NodeJS.Signals) => void;

export const nodeKill: KillFn = (pid, signal) => process.kill(pid, signal);

export function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

/** Turns an errno from a cgroup write into an AbodeError naming the file and the value. */
export function writeError(file: string, value: string, err: unknown): AbodeError {
  if (err instanceof AbodeError) return err;
  const code = errno(err) ?? 'error';
  const what = `cannot write "${value}" to ${file}`;
  switch (code) {
    case 'EINVAL':
    case 'ERANGE':
      return new InvalidArgumentError(`${what}: the kernel rejected the value (${code})`, { file, value });
    case 'EBUSY':
      return new ConflictError(`${what}: resource busy (usage above the new limit?)`, { file, value });
    case 'ENOENT':
      return new UnavailableError(`${what}: the file does not exist (controller not available?)`, {
        file,
        value,
      });
    default:
      return new InternalError(`${what}: ${err instanceof Error ? err.message : String(err)}`, {
        file,
        value,
      });
  }
}

/** Small helpers over a CgroupFs. */
export class CgroupFiles {
  constructor(readonly fs: CgroupFs) {}

  async write(file: string, value: string): Promise<void> {
    try {
      await this.fs.writeFile(file, value);
    } catch (err) {
      throw writeError(file, value, err);
    }
  }

  /** Reads a file, trimmed; undefined when it does not exist. */
  async read(file: string): Promise<string | undefined> {
    try {
      return (await this.fs.readFile(file)).trim();
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Reads a single integer; undefined when missing, null for `max` or a value beyond 2^53 (unlimited). */
  async readLimit(file: string): Promise<number | null | undefined> {
    const text = await this.read(file);
    if (text === undefined) return undefined;
    return parseLimit(text);
  }

  /** Reads a counter (precision beyond 2^53 is lost, never the value); undefined when missing or not numeric. */
  async readNumber(file: string): Promise<number | undefined> {
    const text = await this.read(file);
    return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
  }

  /** Reads a flat-keyed file (`key value` per line); empty when missing. */
  async readKeyed(file: string): Promise<Map<string, number>> {
    return parseKeyed((await this.read(file)) ?? '');
  }

  /** Creates a directory; returns false when it already existed. */
  async mkdir(dir: string): Promise<boolean> {
    try {
      await this.fs.mkdir(dir);
      return true;
    } catch (err) {
      if (errno(err) === 'EEXIST') return false;
      throw new InternalError(
        `cannot create cgroup ${dir}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  /** Removes a cgroup directory, retrying briefly while the kernel still reports it busy; missing is fine. */
  async rmdir(dir: string, attempts = 20): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await this.fs.rmdir(dir);
        return;
      } catch (err) {
        const code = errno(err);
        if (code === 'ENOENT') return;
        if (code === 'EBUSY' && i < attempts) {
          await sleep(Math.min(10 * 2 ** i, 100));
          continue;
        }
        throw new InternalError(
          `cannot remove cgroup ${dir}: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    }
  }

  /** Pids listed in `<dir>/cgroup.procs` of `dir` and all its descendants. */
  async procsRecursive(dir: string, into: Set<number>): Promise<void> {
    const text = await this.read(`${dir}/cgroup.procs`);
    if (text === undefined) return;
    for (const line of text.split('\n')) {
      const pid = Number(line);
      if (line !== '' && Number.isInteger(pid)) into.add(pid);
    }
    let children: string[] = [];
    try {
      children = await this.fs.listDirs(dir);
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
    }
    for (const child of children) await this.procsRecursive(`${dir}/${child}`, into);
  }
}

/** Parses `max`, `-1` or a number; null means unlimited. */
export function parseLimit(text: string): number | null | undefined {
  const t = text.trim();
  if (t === 'max' || t === '-1') return null;
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  return n > Number.MAX_SAFE_INTEGER ? null : n;
}

/** Parses `key value` lines into numbers, skipping lines that are not numeric. */
export function parseKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^-?\d+$/.test(value)) out.set(key, Number(value));
  }
  return out;
}
