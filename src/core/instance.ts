/** Instances: what a user asks for (CreateOptions) and what the engine keeps (InstanceRecord). */

export type Isolation = 'container' | 'vm';

export type InstanceStatus = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';

/** What `abode create`/`run` asks for; docker's flags, already parsed and validated by the CLI. */
export interface CreateOptions {
  image: string;
  name?: string;
  /** Command after the image (replaces the image's Cmd when non-empty). */
  cmd: string[];
  /** --entrypoint: undefined keeps the image's; [] resets it (docker's --entrypoint ""). */
  entrypoint?: string[];
  env: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  tty: boolean;
  openStdin: boolean;
  /** --memory in bytes. */
  memory?: number;
  /** --memory-swap in bytes (-1 unlimited). */
  memorySwap?: number;
  /** --cpus in nano CPUs. */
  nanoCpus?: number;
  cpuShares?: number;
  pidsLimit?: number;
  readOnly: boolean;
  privileged: boolean;
  capAdd: string[];
  capDrop: string[];
  securityOpt: string[];
  /** -v specs: /host:/ctr[:ro] or name:/ctr[:ro]. */
  volumes: string[];
  /** --tmpfs specs: /path[:options]. */
  tmpfs: string[];
  init: boolean;
  isolation: Isolation;
  /** --kernel: the guest kernel image for --isolation vm (an absolute host path). */
  kernel?: string;
  /** --network: none (its own namespace with loopback only, the default) or host (the host's network). */
  network?: 'none' | 'host';
  /** --runtime: the runtime by name (`container`, `oci:runc`); default: the one of `isolation`. */
  runtime?: string;
  autoRemove: boolean;
  labels: Record<string, string>;
  stopSignal?: string;
  stopTimeout?: number;
  /** --ulimit specs name=soft[:hard]. */
  ulimits: string[];
}

export interface InstanceState {
  status: InstanceStatus;
  pid: number;
  exitCode: number;
  oomKilled: boolean;
  error: string;
  startedAt: string;
  finishedAt: string;
}

export interface MountPoint {
  type: 'bind' | 'volume' | 'tmpfs';
  /** Volume name for named volumes. */
  name?: string;
  source: string;
  destination: string;
  readOnly: boolean;
  options?: string[];
}

/** What the engine stores for one instance. */
export interface InstanceRecord {
  id: string;
  name: string;
  created: string;
  image: string;
  imageId: string;
  isolation: Isolation;
  runtime: string;
  /** The resolved process: path + args, as docker's inspect shows. */
  path: string;
  args: string[];
  options: CreateOptions;
  mounts: MountPoint[];
  state: InstanceState;
  restartCount: number;
}

export const EMPTY_TIME = '0001-01-01T00:00:00Z';

export function newState(): InstanceState {
  return {
    status: 'created',
    pid: 0,
    exitCode: 0,
    oomKilled: false,
    error: '',
    startedAt: EMPTY_TIME,
    finishedAt: EMPTY_TIME,
  };
}

/** Defaults for every CreateOptions field, so callers give only what they set. */
export function createOptions(partial: Partial<CreateOptions> & { image: string }): CreateOptions {
  return {
    cmd: [],
    env: [],
    tty: false,
    openStdin: false,
    readOnly: false,
    privileged: false,
    capAdd: [],
    capDrop: [],
    securityOpt: [],
    volumes: [],
    tmpfs: [],
    init: false,
    isolation: 'container',
    autoRemove: false,
    labels: {},
    ulimits: [],
    ...partial,
  };
}
