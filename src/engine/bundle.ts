import type { CreateOptions, MountPoint } from '../core/instance.js';
import type { ImageConfig } from '../core/image.js';
import type { OciMount, OciSpec } from '../core/oci.js';
import { InvalidArgumentError, invalidAll } from '../core/errors.js';
import { resolveCapabilities } from '../core/security/capabilities.js';
import { defaultSeccompProfile } from '../core/security/seccomp-default.js';
import { parseSeccompProfile } from '../core/security/seccomp-profile.js';

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** docker's paths hidden from unprivileged containers. */
export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** docker's paths kept read-only in unprivileged containers. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const RLIMIT_NAMES = new Set([
  'core',
  'cpu',
  'data',
  'fsize',
  'locks',
  'memlock',
  'msgqueue',
  'nice',
  'nofile',
  'nproc',
  'rss',
  'rtprio',
  'rttime',
  'sigpending',
  'stack',
]);

/** The process an instance runs: docker's combination of --entrypoint, the command and the image. */
export function resolveProcessArgs(options: CreateOptions, image: ImageConfig): string[] {
  const entrypoint = options.entrypoint ?? image.Entrypoint ?? [];
  // docker resets the image's Cmd when --entrypoint is given.
  const cmd =
    options.cmd.length > 0 ? options.cmd : options.entrypoint !== undefined ? [] : (image.Cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new InvalidArgumentError('No command specified');
  return args;
}

/** Image env, then -e values (later keys win), with PATH and HOSTNAME as docker sets them. */
export function mergeEnv(imageEnv: string[], userEnv: string[], extra: Record<string, string>): string[] {
  const merged = new Map<string, string>();
  for (const entry of [...imageEnv, ...userEnv]) {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    merged.set(key, entry);
  }
  if (!merged.has('PATH')) merged.set('PATH', DEFAULT_PATH);
  for (const [key, value] of Object.entries(extra)) if (!merged.has(key)) merged.set(key, `${key}=${value}`);
  return [...merged.values()].filter((entry) => entry.includes('='));
}

export interface BundleInputs {
  id: string;
  options: CreateOptions;
  image: ImageConfig;
  hostname: string;
  /** Host files the instance sees as /etc/hostname, /etc/hosts, /etc/resolv.conf (with --network host: the host's). */
  etcFiles: { hostname: string; hosts: string; resolvConf: string };
  mounts: MountPoint[];
  /** Hard limits the daemon was given: never ask for more. */
  hardLimits: Record<string, number>;
}

/** The OCI runtime spec for an instance, from its image and run options. */
export function buildSpec(inputs: BundleInputs): OciSpec {
  const { options, image } = inputs;
  const problems: string[] = [];
  const args = resolveProcessArgs(options, image);
  let capabilities: string[] = [];
  try {
    capabilities = resolveCapabilities({
      privileged: options.privileged,
      capAdd: options.capAdd,
      capDrop: options.capDrop,
    });
  } catch (error) {
    problems.push((error as Error).message);
  }
  const security = parseSecurityOpts(options.securityOpt, problems);
  const rlimits = parseUlimits(options.ulimits, inputs.hardLimits, problems);
  if (problems.length > 0) throw invalidAll(problems);

  const env = mergeEnv(image.Env ?? [], options.env, {
    HOSTNAME: inputs.hostname,
    ...(options.tty ? { TERM: 'xterm' } : {}),
  });
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/sys',
      type: 'sysfs',
      source: 'sysfs',
      options: ['nosuid', 'noexec', 'nodev', options.privileged ? 'rw' : 'ro'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    ...etcMounts(inputs.etcFiles),
    ...inputs.mounts.map(toOciMount),
  ];
  const resources = {
    memory:
      options.memory !== undefined
        ? {
            limit: options.memory,
            ...(options.memorySwap !== undefined ? { swap: options.memorySwap } : {}),
          }
        : undefined,
    cpu:
      options.nanoCpus !== undefined || options.cpuShares !== undefined
        ? {
            ...(options.cpuShares !== undefined ? { shares: options.cpuShares } : {}),
            ...(options.nanoCpus !== undefined
              ? { quota: Math.round((options.nanoCpus * 100000) / 1e9), period: 100000 }
              : {}),
          }
        : undefined,
    pids: options.pidsLimit !== undefined && options.pidsLimit > 0 ? { limit: options.pidsLimit } : undefined,
  };
  const seccomp =
    options.privileged || security.seccomp === 'unconfined'
      ? undefined
      : security.seccomp === undefined
        ? defaultSeccompProfile(capabilities)
        : parseSeccompProfile(security.seccomp, capabilities);
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: options.tty,
      user: { uid: 0, gid: 0, username: options.user || image.User || '' },
      args,
      env,
      cwd: options.workdir || image.WorkingDir || '/',
      capabilities: {
        bounding: capabilities,
        effective: capabilities,
        permitted: capabilities,
        inheritable: [],
        ambient: [],
      },
      rlimits,
      noNewPrivileges: security.noNewPrivileges,
      oomScoreAdj: 0,
    },
    root: { path: 'rootfs', readonly: options.readOnly },
    hostname: inputs.hostname,
    mounts,
    annotations: {
      'org.abode.init': String(options.init),
      'org.abode.open-stdin': String(options.openStdin),
      'org.abode.isolation': options.isolation,
      ...(options.autoRemove ? { 'org.abode.auto-remove': 'true' } : {}),
      ...(options.kernel ? { 'org.abode.kernel': options.kernel } : {}),
    },
    linux: {
      // --network host shares the host's network namespace (docker's host network).
      namespaces: (
        [
          { type: 'pid' },
          { type: 'network' },
          { type: 'ipc' },
          { type: 'uts' },
          { type: 'mount' },
          { type: 'cgroup' },
        ] as const
      ).filter((ns) => !(ns.type === 'network' && options.network === 'host')),
      resources: Object.fromEntries(Object.entries(resources).filter(([, v]) => v !== undefined)),
      cgroupsPath: `abode/${inputs.id}`,
      devices: options.privileged ? [] : [],
      seccomp,
      maskedPaths: options.privileged ? [] : MASKED_PATHS,
      readonlyPaths: options.privileged ? [] : READONLY_PATHS,
    },
  };
}

function etcMounts(files: BundleInputs['etcFiles']): OciMount[] {
  return [
    ['/etc/resolv.conf', files.resolvConf],
    ['/etc/hostname', files.hostname],
    ['/etc/hosts', files.hosts],
  ].map(([destination, source]) => ({ destination, source, type: 'bind', options: ['rbind', 'rprivate'] }));
}

function toOciMount(mount: MountPoint): OciMount {
  if (mount.type === 'tmpfs') {
    return {
      destination: mount.destination,
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', 'noexec', ...(mount.options ?? [])],
    };
  }
  return {
    destination: mount.destination,
    source: mount.source,
    type: 'bind',
    options: ['rbind', 'rprivate', mount.readOnly ? 'ro' : 'rw'],
  };
}

function parseSecurityOpts(
  opts: string[],
  problems: string[],
): { seccomp?: string; noNewPrivileges: boolean } {
  let seccomp: string | undefined;
  let noNewPrivileges = true;
  for (const opt of opts) {
    const sep = opt.search(/[=:]/);
    const key = sep < 0 ? opt : opt.slice(0, sep);
    const value = sep < 0 ? '' : opt.slice(sep + 1);
    if (key === 'seccomp') seccomp = value;
    else if (key === 'no-new-privileges') noNewPrivileges = value === '' || value === 'true';
    else if (key === 'label' || key === 'apparmor') continue;
    else
      problems.push(
        `invalid --security-opt: "${opt}" (supported: seccomp=unconfined|PROFILE, no-new-privileges)`,
      );
  }
  return { seccomp, noNewPrivileges };
}

/** --ulimit name=soft[:hard], clamped to the hard limits the daemon has (asking for more is an error). */
export function parseUlimits(
  specs: string[],
  hardLimits: Record<string, number>,
  problems: string[],
): { type: string; soft: number; hard: number }[] {
  const limits: { type: string; soft: number; hard: number }[] = [];
  for (const spec of specs) {
    const match = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(spec);
    if (!match || !RLIMIT_NAMES.has(match[1])) {
      problems.push(`invalid ulimit argument: "${spec}" (want name=soft[:hard], e.g. nofile=1024:2048)`);
      continue;
    }
    const soft = Number(match[2]);
    const hard = match[3] !== undefined ? Number(match[3]) : soft;
    if (soft > hard) {
      problems.push(`ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`);
      continue;
    }
    const ceiling = hardLimits[match[1]];
    if (ceiling !== undefined && ceiling >= 0 && hard > ceiling) {
      problems.push(
        `ulimit ${match[1]}=${hard} is above this host's hard limit ${ceiling} (raising it needs CAP_SYS_RESOURCE); ask for at most ${ceiling}`,
      );
      continue;
    }
    limits.push({ type: `RLIMIT_${match[1].toUpperCase()}`, soft, hard });
  }
  return limits;
}
