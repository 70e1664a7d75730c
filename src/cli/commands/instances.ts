import { connectDaemon } from '../context.js';
import { forEach } from './run.js';
import { relay } from '../attach.js';
import { collect } from '../options.js';
import { FrameDecoder } from '../../client/frames.js';
import { renderTable, tabwriter, renderInspect } from '../format/table.js';
import { bytesSize, humanDuration, statusString } from '../format/units.js';
import type { Command } from '../args.js';

interface Summary {
  Id: string;
  Names: string[];
  Image: string;
  Command: string;
  Created: number;
  CreatedAt: string;
  State: string;
  ExitCode: number;
  StartedAt: string;
  FinishedAt: string;
  Isolation: string;
  Labels: Record<string, string>;
  Mounts: string[];
}

const psHeaders: Record<string, string> = {
  ID: 'CONTAINER ID',
  Image: 'IMAGE',
  Command: 'COMMAND',
  CreatedAt: 'CREATED AT',
  RunningFor: 'CREATED',
  Status: 'STATUS',
  State: 'STATE',
  Names: 'NAMES',
  Isolation: 'ISOLATION',
  Ports: 'PORTS',
  Labels: 'LABELS',
  Mounts: 'MOUNTS',
};

function psRow(s: Summary) {
  const now = Date.now();
  const command = s.Command.length > 20 ? `${s.Command.slice(0, 19)}…` : s.Command;
  return {
    ID: s.Id.slice(0, 12),
    Image: s.Image,
    Command: JSON.stringify(command),
    CreatedAt: new Date(s.Created * 1000)
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, ' +0000 UTC'),
    RunningFor: `${humanDuration(now - s.Created * 1000)} ago`,
    Status: statusString({
      status: s.State,
      exitCode: s.ExitCode,
      startedAt: s.StartedAt,
      finishedAt: s.FinishedAt,
      now,
    }),
    State: s.State,
    Names: s.Names.map((n) => n.replace(/^\//, '')).join(','),
    Isolation: s.Isolation,
    Ports: '',
    Labels: Object.entries(s.Labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    Mounts: s.Mounts.join(','),
  };
}

export async function psCommand(flags: {
  all?: boolean;
  quiet?: boolean;
  format?: string;
  noTrunc?: boolean;
}) {
  const { client } = await connectDaemon();
  const list = await client.call<Summary[]>('GET', '/instances', { query: { all: flags.all ?? false } });
  if (flags.quiet) {
    for (const s of list) process.stdout.write(`${flags.noTrunc ? s.Id : s.Id.slice(0, 12)}\n`);
    return 0;
  }
  const rows = list.map((s) => ({ ...psRow(s), ...(flags.noTrunc ? { ID: s.Id } : {}) }));
  const defaultFormat =
    'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Isolation}}\t{{.Ports}}\t{{.Names}}';
  process.stdout.write(renderTable(flags.format ?? null, rows, psHeaders, defaultFormat));
  return 0;
}

export async function inspectCommand(refs: string[], flags: { format?: string; type?: string }) {
  const { client } = await connectDaemon();
  const found: unknown[] = [];
  let failed = false;
  for (const ref of refs) {
    try {
      if (flags.type === 'image') found.push(await client.call('GET', `/images/${encodeURIComponent(ref)}`));
      else if (flags.type === 'volume')
        found.push(await client.call('GET', `/volumes/${encodeURIComponent(ref)}`));
      else {
        try {
          found.push(await client.call('GET', `/instances/${encodeURIComponent(ref)}`));
        } catch (error) {
          if (flags.type === 'container') throw error;
          found.push(
            await client.call('GET', `/images/${encodeURIComponent(ref)}`).catch(() => Promise.reject(error)),
          );
        }
      }
    } catch (error) {
      failed = true;
      process.stderr.write(`Error: ${(error as Error).message}\n`);
    }
  }
  process.stdout.write(renderInspect(found, flags.format));
  return failed ? 1 : 0;
}

export async function logsCommand(
  ref: string,
  flags: { follow?: boolean; tail?: string; timestamps?: boolean },
): Promise<number> {
  const { client } = await connectDaemon();
  const res = await client.stream('GET', `/instances/${encodeURIComponent(ref)}/logs`, {
    query: { follow: flags.follow ?? false, tail: flags.tail, timestamps: flags.timestamps ?? false },
  });
  const decoder = new FrameDecoder((stream, payload) => {
    (stream === 2 ? process.stderr : process.stdout).write(payload);
  });
  await new Promise<void>((resolve, reject) => {
    res.on('data', (chunk: Buffer) => decoder.push(chunk));
    res.on('end', resolve);
    res.on('error', reject);
  });
  return 0;
}

export async function execCommand(
  ref: string,
  command: string[],
  flags: {
    interactive?: boolean;
    tty?: boolean;
    env?: string[];
    user?: string;
    workdir?: string;
    detach?: boolean;
  },
): Promise<number> {
  const { client } = await connectDaemon();
  const { Id } = await client.call<{ Id: string }>('POST', `/instances/${encodeURIComponent(ref)}/exec`, {
    body: {
      cmd: command,
      env: flags.env ?? [],
      user: flags.user,
      workdir: flags.workdir,
      tty: flags.tty ?? false,
      openStdin: flags.interactive ?? false,
    },
  });
  if (flags.detach) {
    await client.call('POST', `/exec/${Id}/start`);
    return 0;
  }
  const socket = await client.upgrade('POST', `/exec/${Id}/start`);
  const code = await relay(client, socket, {
    tty: flags.tty ?? false,
    stdin: flags.interactive ?? false,
    resizePath: `/exec/${Id}/resize`,
  });
  if (code !== undefined) return code;
  const info = await client.call<{ ExitCode: number | null }>('GET', `/exec/${Id}`);
  return info.ExitCode ?? 0;
}

export async function waitCommand(refs: string[]): Promise<number> {
  const { client } = await connectDaemon();
  return forEach(refs, async (ref) => {
    const result = await client.call<{ StatusCode: number }>(
      'POST',
      `/instances/${encodeURIComponent(ref)}/wait`,
    );
    return String(result.StatusCode);
  });
}

interface StatsReply {
  Id: string;
  Name: string;
  CpuPercent: number;
  MemoryUsage: number;
  MemoryLimit: number;
  Pids: number;
}

export async function statsCommand(
  refs: string[],
  flags: { noStream?: boolean; format?: string; all?: boolean },
) {
  const { client } = await connectDaemon();
  const render = async () => {
    let targets = refs;
    if (targets.length === 0) {
      const list = await client.call<Summary[]>('GET', '/instances', { query: { all: flags.all ?? false } });
      targets = list.map((s) => s.Id);
    }
    const replies = await Promise.all(
      targets.map((ref) => client.call<StatsReply>('GET', `/instances/${encodeURIComponent(ref)}/stats`)),
    );
    const rows = replies.map((s) => ({
      ID: s.Id.slice(0, 12),
      Container: s.Id.slice(0, 12),
      Name: s.Name,
      CPUPerc: `${s.CpuPercent.toFixed(2)}%`,
      MemUsage: `${bytesSize(s.MemoryUsage)} / ${bytesSize(s.MemoryLimit)}`,
      MemPerc: `${s.MemoryLimit > 0 ? ((s.MemoryUsage / s.MemoryLimit) * 100).toFixed(2) : '0.00'}%`,
      PIDs: String(s.Pids),
    }));
    const headers = {
      ID: 'CONTAINER ID',
      Container: 'CONTAINER',
      Name: 'NAME',
      CPUPerc: 'CPU %',
      MemUsage: 'MEM USAGE / LIMIT',
      MemPerc: 'MEM %',
      PIDs: 'PIDS',
    };
    return renderTable(
      flags.format ?? null,
      rows,
      headers,
      'table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.PIDs}}',
    );
  };
  if (flags.noStream) {
    process.stdout.write(await render());
    return 0;
  }
  while (true) {
    const text = await render();
    process.stdout.write(`\x1b[2J\x1b[H${text}`);
  }
}

export async function topCommand(ref: string): Promise<number> {
  const { client } = await connectDaemon();
  const top = await client.call<{ Titles: string[]; Processes: string[][] }>(
    'GET',
    `/instances/${encodeURIComponent(ref)}/top`,
  );
  process.stdout.write(tabwriter([top.Titles, ...top.Processes]));
  return 0;
}

/** ps, inspect, logs, exec, stats, top and the lifecycle verbs. */
export function registerLifecycle(program: Command, run: (work: () => Promise<number>) => void): void {
  program
    .command('ps')
    .description('List instances')
    .option('-a, --all', 'show all instances (default shows just running)')
    .option('-q, --quiet', 'only ids')
    .option('--no-trunc', 'do not truncate output')
    .option('--format <template>', 'Go template, e.g. "{{.Names}}" or "table {{.ID}}\\t{{.Status}}"')
    .addHelpText('after', '\nExamples:\n  abode ps -a\n  abode ps --format "{{.Names}} {{.Status}}"')
    .action((flags) => run(() => psCommand({ ...flags, noTrunc: flags.trunc === false })));
  program
    .command('inspect')
    .description('Show instances (or images, volumes) in detail as JSON')
    .argument('<name...>')
    .option('-f, --format <template>', 'Go template, e.g. "{{.State.ExitCode}}"')
    .option('--type <type>', 'container, image or volume')
    .addHelpText('after', '\nExample:\n  abode inspect --format "{{.State.OOMKilled}}" web')
    .action((refs: string[], flags) => run(() => inspectCommand(refs, flags)));
  program
    .command('logs')
    .description("Show an instance's output (stdout and stderr kept apart)")
    .argument('<instance>')
    .option('-f, --follow', 'follow the output')
    .option('-n, --tail <lines>', 'lines from the end ("all" for every line)')
    .option('-t, --timestamps', 'show timestamps')
    .addHelpText('after', '\nExample:\n  abode logs -f --tail 10 web')
    .action((ref: string, flags) => run(() => logsCommand(ref, flags)));
  program
    .command('exec')
    .description('Run a command in a running instance')
    .argument('<instance>')
    .argument('<command...>')
    .passThroughOptions()
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .option('-d, --detach', 'run in the background')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect)
    .option('-u, --user <user[:group]>', 'user name or uid')
    .option('-w, --workdir <dir>', 'working directory')
    .addHelpText('after', '\nExamples:\n  abode exec web ps\n  abode exec -it web sh')
    .action((ref: string, command: string[], flags) => run(() => execCommand(ref, command, flags)));
  program
    .command('stats')
    .description('Show CPU, memory and process use of instances')
    .argument('[instance...]')
    .option('-a, --all', 'all instances (default running)')
    .option('--no-stream', 'print once and exit')
    .option('--format <template>', 'Go template')
    .addHelpText('after', '\nExample:\n  abode stats --no-stream web')
    .action((refs: string[], flags) =>
      run(() => statsCommand(refs, { ...flags, noStream: flags.stream === false })),
    );
  program
    .command('top')
    .description("Show an instance's processes")
    .argument('<instance>')
    .addHelpText('after', '\nExample:\n  abode top web')
    .action((ref: string) => run(() => topCommand(ref)));

  program
    .command('stop')
    .description('Stop running instances (the stop signal, then SIGKILL after the timeout)')
    .argument('<instance...>')
    .option('-t, --time <seconds>', 'seconds to wait before killing', undefined)
    .addHelpText('after', '\nExample:\n  abode stop -t 2 web')
    .action((refs: string[], flags: { time?: string }) =>
      run(async () => {
        const { client } = await connectDaemon();
        return forEach(refs, async (ref) => {
          await client.call('POST', `/instances/${encodeURIComponent(ref)}/stop`, {
            query: { t: flags.time },
          });
        });
      }),
    );
  program
    .command('kill')
    .description('Send a signal (default SIGKILL) to running instances')
    .argument('<instance...>')
    .option('-s, --signal <signal>', 'signal to send', 'KILL')
    .addHelpText('after', '\nExample:\n  abode kill -s HUP web')
    .action((refs: string[], flags: { signal: string }) =>
      run(async () => {
        const { client } = await connectDaemon();
        return forEach(refs, async (ref) => {
          await client.call('POST', `/instances/${encodeURIComponent(ref)}/kill`, {
            query: { signal: flags.signal },
          });
        });
      }),
    );
  program
    .command('restart')
    .description('Restart instances')
    .argument('<instance...>')
    .option('-t, --time <seconds>', 'seconds to wait before killing')
    .addHelpText('after', '\nExample:\n  abode restart web')
    .action((refs: string[], flags: { time?: string }) =>
      run(async () => {
        const { client } = await connectDaemon();
        return forEach(refs, async (ref) => {
          await client.call('POST', `/instances/${encodeURIComponent(ref)}/restart`, {
            query: { t: flags.time },
          });
        });
      }),
    );
  program
    .command('rm')
    .description('Remove instances')
    .argument('<instance...>')
    .option('-f, --force', 'kill and remove a running instance')
    .option('-v, --volumes', 'remove the named volumes it used')
    .addHelpText('after', '\nExample:\n  abode rm -f web')
    .action((refs: string[], flags: { force?: boolean; volumes?: boolean }) =>
      run(async () => {
        const { client } = await connectDaemon();
        return forEach(refs, async (ref) => {
          await client.call('DELETE', `/instances/${encodeURIComponent(ref)}`, {
            query: { force: flags.force ?? false, v: flags.volumes ?? false },
          });
        });
      }),
    );
  program
    .command('rename')
    .description('Rename an instance')
    .argument('<instance>')
    .argument('<new-name>')
    .addHelpText('after', '\nExample:\n  abode rename brave_turing web')
    .action((ref: string, name: string) =>
      run(async () => {
        const { client } = await connectDaemon();
        await client.call('POST', `/instances/${encodeURIComponent(ref)}/rename`, { query: { name } });
        return 0;
      }),
    );
  program
    .command('wait')
    .description('Block until instances stop, then print their exit codes')
    .argument('<instance...>')
    .addHelpText('after', '\nExample:\n  abode wait web')
    .action((refs: string[]) => run(() => waitCommand(refs)));
  const container = program.command('container').description('Manage instances');
  container
    .command('prune')
    .addHelpText('after', '\nExample:\n  abode container prune -f')
    .description('Remove all stopped instances')
    .option('-f, --force', 'do not prompt for confirmation')
    .action(() =>
      run(async () => {
        const { client } = await connectDaemon();
        const result = await client.call<{ ContainersDeleted: string[] }>('POST', '/instances/prune');
        process.stdout.write(
          `Deleted Containers:\n${result.ContainersDeleted.map((id) => `${id}\n`).join('')}\nTotal reclaimed space: 0B\n`,
        );
        return 0;
      }),
    );
  container
    .command('ls')
    .addHelpText('after', '\nExample:\n  abode container ls -a')
    .alias('list')
    .description('List instances (as ps)')
    .option('-a, --all', 'show all instances')
    .option('-q, --quiet', 'only ids')
    .option('--format <template>', 'Go template or "table ..." or json')
    .action((flags) => run(() => psCommand(flags)));
  void collect;
}
