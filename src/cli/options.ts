import { InvalidArgumentError } from '../core/errors.js';
import type { CreateOptions, Isolation } from '../core/instance.js';
import { parseBytes, parseCpus } from './format/parse-units.js';

/** Collects a repeatable flag (-e A -e B). */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

export interface RunFlags {
  name?: string;
  env?: string[];
  envFile?: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  volume?: string[];
  tmpfs?: string[];
  memory?: string;
  memorySwap?: string;
  cpus?: string;
  cpuShares?: string;
  pidsLimit?: string;
  hostname?: string;
  readOnly?: boolean;
  isolation?: string;
  network?: string;
  /** --kernel: a guest kernel image for --isolation vm. */
  kernel?: string;
  runtime?: string;
  rm?: boolean;
  detach?: boolean;
  interactive?: boolean;
  tty?: boolean;
  privileged?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  securityOpt?: string[];
  init?: boolean;
  label?: string[];
  stopSignal?: string;
  stopTimeout?: string;
  ulimit?: string[];
  pull?: string;
  platform?: string;
}

/** Turns docker's run/create flags into CreateOptions, reporting every bad value at once. */
export async function toCreateOptions(
  image: string,
  command: string[],
  flags: RunFlags,
): Promise<CreateOptions> {
  const problems: string[] = [];
  const bytes = (flag: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    if (value === '-1' && flag === '--memory-swap') return -1;
    try {
      return parseBytes(value);
    } catch {
      problems.push(`invalid argument "${value}" for "${flag}" flag: invalid size: '${value}'`);
      return undefined;
    }
  };
  const integer = (flag: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    if (!/^-?\d+$/.test(value)) {
      problems.push(
        `invalid argument "${value}" for "${flag}" flag: strconv.ParseInt: parsing "${value}": invalid syntax`,
      );
      return undefined;
    }
    return Number(value);
  };
  let nanoCpus: number | undefined;
  if (flags.cpus !== undefined) {
    try {
      const parsed = parseCpus(flags.cpus);
      if (parsed <= 0) throw new Error('not positive');
      nanoCpus = parsed;
    } catch {
      problems.push(
        `invalid argument "${flags.cpus}" for "--cpus" flag: failed to parse ${flags.cpus} as a rational number`,
      );
    }
  }
  if (flags.pull !== undefined && !['missing', 'always', 'never'].includes(flags.pull)) {
    problems.push(`invalid pull option: '${flags.pull}': must be one of "always", "missing" or "never"`);
  }
  const isolation = (flags.isolation ?? 'container') as Isolation;
  if (isolation !== 'container' && isolation !== 'vm') {
    problems.push(`invalid --isolation "${flags.isolation}": want container or vm`);
  }
  const network = flags.network ?? 'none';
  if (network !== 'none' && network !== 'host') {
    problems.push(
      `invalid --network "${network}": abode offers none (loopback only, the default) and host; bridge networks are not there yet`,
    );
  } else if (network === 'host' && isolation === 'vm') {
    problems.push('--network host is for containers: a VM has its own kernel and network stack');
  }
  let kernel: string | undefined;
  if (flags.kernel !== undefined) {
    const { resolve } = await import('node:path');
    const { stat } = await import('node:fs/promises');
    kernel = resolve(flags.kernel);
    if (isolation !== 'vm') problems.push('--kernel needs --isolation vm');
    else if (!(await stat(kernel).catch(() => undefined))?.isFile())
      problems.push(`--kernel ${flags.kernel}: no such kernel image (${kernel} is not a file)`);
  }
  const memory = bytes('--memory', flags.memory);
  if (memory !== undefined && memory < 6 * 1024 * 1024) {
    problems.push('Minimum memory limit allowed is 6MB');
  }
  const env: string[] = [];
  for (const file of flags.envFile ?? []) {
    const { readFile } = await import('node:fs/promises');
    try {
      const text = await readFile(file, 'utf8');
      for (const line of text.split('\n')) {
        const trimmed = line.trim();
        if (trimmed && !trimmed.startsWith('#')) env.push(expandEnv(trimmed));
      }
    } catch (error) {
      problems.push(
        `open ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (error as Error).message}`,
      );
    }
  }
  env.push(...(flags.env ?? []).map(expandEnv));
  const securityOpt: string[] = [];
  for (const opt of flags.securityOpt ?? []) {
    const match = /^seccomp[=:](.+)$/.exec(opt);
    if (match && match[1] !== 'unconfined') {
      // docker's CLI reads the profile file and sends its content.
      const { readFile } = await import('node:fs/promises');
      try {
        securityOpt.push(`seccomp=${await readFile(match[1], 'utf8')}`);
      } catch {
        problems.push(`opening seccomp profile (${match[1]}) failed: no such file or directory`);
      }
    } else securityOpt.push(opt);
  }
  const labels: Record<string, string> = {};
  for (const label of flags.label ?? []) {
    const eq = label.indexOf('=');
    labels[eq < 0 ? label : label.slice(0, eq)] = eq < 0 ? '' : label.slice(eq + 1);
  }
  const options: CreateOptions = {
    image,
    cmd: command,
    env,
    tty: flags.tty ?? false,
    openStdin: flags.interactive ?? false,
    readOnly: flags.readOnly ?? false,
    privileged: flags.privileged ?? false,
    capAdd: flags.capAdd ?? [],
    capDrop: flags.capDrop ?? [],
    securityOpt,
    volumes: flags.volume ?? [],
    tmpfs: flags.tmpfs ?? [],
    init: flags.init ?? false,
    isolation,
    autoRemove: flags.rm ?? false,
    labels,
    ulimits: flags.ulimit ?? [],
    ...(flags.name !== undefined ? { name: flags.name } : {}),
    ...(flags.runtime !== undefined ? { runtime: flags.runtime } : {}),
    ...(kernel !== undefined ? { kernel } : {}),
    ...(network === 'host' ? { network: 'host' as const } : {}),
    ...(flags.workdir !== undefined ? { workdir: flags.workdir } : {}),
    ...(flags.user !== undefined ? { user: flags.user } : {}),
    ...(flags.hostname !== undefined ? { hostname: flags.hostname } : {}),
    ...(flags.entrypoint !== undefined
      ? { entrypoint: flags.entrypoint === '' ? [] : [flags.entrypoint] }
      : {}),
    ...(flags.stopSignal !== undefined ? { stopSignal: flags.stopSignal } : {}),
  };
  const setNumber = (key: keyof CreateOptions, value: number | undefined) => {
    if (value !== undefined) (options as unknown as Record<string, number>)[key] = value;
  };
  setNumber('memory', memory);
  setNumber('memorySwap', bytes('--memory-swap', flags.memorySwap));
  setNumber('nanoCpus', nanoCpus);
  setNumber('cpuShares', integer('--cpu-shares', flags.cpuShares));
  setNumber('pidsLimit', integer('--pids-limit', flags.pidsLimit));
  setNumber('stopTimeout', integer('--stop-timeout', flags.stopTimeout));
  if (problems.length > 0) throw new InvalidArgumentError(problems.join('\n'));
  return options;
}

/** -e NAME without a value takes NAME from this shell, as docker does (dropped when unset). */
function expandEnv(entry: string): string {
  if (entry.includes('=')) return entry;
  const value = process.env[entry];
  return value === undefined ? entry : `${entry}=${value}`;
}
