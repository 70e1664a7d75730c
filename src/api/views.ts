import type { InstanceRecord } from '../core/instance.js';

/** docker's inspect shape for an instance (the fields users script against). */
export function inspectView(record: InstanceRecord, extra: { logPath: string; hostname: string }) {
  const o = record.options;
  return {
    Id: record.id,
    Created: record.created,
    Path: record.path,
    Args: record.args,
    State: {
      Status: record.state.status,
      Running: record.state.status === 'running' || record.state.status === 'paused',
      Paused: record.state.status === 'paused',
      Restarting: record.state.status === 'restarting',
      OOMKilled: record.state.oomKilled,
      Dead: record.state.status === 'dead',
      Pid: record.state.pid,
      ExitCode: record.state.exitCode,
      Error: record.state.error,
      StartedAt: record.state.startedAt,
      FinishedAt: record.state.finishedAt,
    },
    Image: record.imageId,
    LogPath: extra.logPath,
    Name: `/${record.name}`,
    RestartCount: record.restartCount,
    Driver: 'overlay2',
    Platform: 'linux',
    Isolation: record.isolation,
    HostConfig: {
      Binds: o.volumes,
      AutoRemove: o.autoRemove,
      Privileged: o.privileged,
      ReadonlyRootfs: o.readOnly,
      CapAdd: o.capAdd,
      CapDrop: o.capDrop,
      SecurityOpt: o.securityOpt.map((s) =>
        s.startsWith('seccomp=') && s.length > 40 ? 'seccomp=<profile>' : s,
      ),
      Tmpfs: Object.fromEntries(o.tmpfs.map((t) => [t.split(':')[0], t.split(':').slice(1).join(':')])),
      Memory: o.memory ?? 0,
      MemorySwap: o.memorySwap ?? 0,
      NanoCpus: o.nanoCpus ?? 0,
      CpuShares: o.cpuShares ?? 0,
      PidsLimit: o.pidsLimit ?? null,
      Init: o.init,
      Isolation: o.isolation,
      Ulimits: o.ulimits,
    },
    Mounts: record.mounts.map((m) => ({
      Type: m.type,
      ...(m.name ? { Name: m.name } : {}),
      Source: m.source,
      Destination: m.destination,
      Mode: m.readOnly ? 'ro' : '',
      RW: !m.readOnly,
    })),
    Config: {
      Hostname: extra.hostname,
      User: o.user ?? '',
      Tty: o.tty,
      OpenStdin: o.openStdin,
      Env: o.env,
      Cmd: o.cmd.length > 0 ? o.cmd : null,
      Image: record.image,
      WorkingDir: o.workdir ?? '',
      Entrypoint: o.entrypoint ?? null,
      Labels: o.labels,
      StopSignal: o.stopSignal,
    },
  };
}

/** One row of `ps` (docker's /containers/json shape). */
export function summaryView(record: InstanceRecord) {
  return {
    Id: record.id,
    Names: [`/${record.name}`],
    Image: record.image,
    ImageID: record.imageId,
    Command: [record.path, ...record.args].map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' '),
    Created: Math.floor(Date.parse(record.created) / 1000),
    CreatedAt: record.created,
    State: record.state.status,
    ExitCode: record.state.exitCode,
    StartedAt: record.state.startedAt,
    FinishedAt: record.state.finishedAt,
    Isolation: record.isolation,
    Labels: record.options.labels,
    Mounts: record.mounts.map((m) => m.name ?? m.source),
  };
}
