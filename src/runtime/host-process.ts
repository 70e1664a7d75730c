/**
 * Host facts the runtimes share, and the monitor spec of a process that runs in the host's file
 * system with this process's capabilities (`<binary> run` for oci, QEMU and exec relays for vm):
 * the runtime it starts does the isolating.
 */
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Mount } from '../core/image.js';
import type { ShimSpec } from '../platform/native-protocol.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Capabilities 0..40, every one Linux knew when this was written. */
export const KNOWN_CAPABILITIES = (1n << 41n) - 1n;

/** The capability bounding set of this process (what it may pass on); undefined when /proc does not say. */
export const HOST_BOUNDING: bigint | undefined = (() => {
  try {
    const line = readFileSync('/proc/self/status', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('CapBnd:'));
    return line ? BigInt(`0x${line.split(/\s+/)[1]}`) : undefined;
  } catch {
    return undefined;
  }
})();

/** Finds an executable by path or on PATH; undefined when absent. */
export function findOnPath(name: string, path = process.env.PATH ?? DEFAULT_PATH): string | undefined {
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The image's layer directories (top first) named by the snapshotter's overlay mounts. */
export function lowerDirs(rootfs: Mount[]): string[] {
  return rootfs.flatMap((m) =>
    m.options.filter((o) => o.startsWith('lowerdir=')).flatMap((o) => o.slice(9).split(':')),
  );
}

/** A monitor spec that runs `args` as root in the host's file system, with the host's capabilities. */
export function hostShimSpec(
  p: Pick<
    ShimSpec,
    | 'id'
    | 'args'
    | 'env'
    | 'cwd'
    | 'terminal'
    | 'openStdin'
    | 'cgroupProcs'
    | 'logPath'
    | 'exitPath'
    | 'socketPath'
  > &
    Partial<Pick<ShimSpec, 'agent' | 'agentStart' | 'bootTimeoutMs' | 'reclaimFiles'>>,
): ShimSpec {
  const caps = HOST_BOUNDING ?? KNOWN_CAPABILITIES;
  return {
    mode: 'run',
    uid: 0,
    gid: 0,
    additionalGids: [],
    noNewPrivileges: false,
    capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: 0n, ambient: 0n },
    rlimits: [],
    init: false,
    ...noEnvironment(),
    holdUntilStart: true,
    ...p,
  };
}

/** The run-mode fields of a process that gets no environment of its own (in the host's, or joining an instance's). */
export function noEnvironment(): Pick<
  ShimSpec,
  | 'namespaces'
  | 'joinNamespaces'
  | 'rootfs'
  | 'readonlyRootfs'
  | 'mounts'
  | 'devices'
  | 'symlinks'
  | 'maskedPaths'
  | 'readonlyPaths'
  | 'hostname'
> {
  return {
    namespaces: 0,
    joinNamespaces: [],
    rootfs: '',
    readonlyRootfs: false,
    mounts: [],
    devices: [],
    symlinks: [],
    maskedPaths: [],
    readonlyPaths: [],
    hostname: '',
  };
}
