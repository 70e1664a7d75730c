import { spawnSync } from 'node:child_process';
import type { Command } from '../args.js';
import { connectDaemon, daemonEntry } from '../context.js';
import { collect } from '../options.js';
import { forEach } from './run.js';
import { renderTable, renderInspect } from '../format/table.js';
import { humanSize } from '../format/units.js';
import { parseTemplate, execute } from '../format/template.js';

interface VolumeRecord {
  name: string;
  driver: string;
  mountpoint: string;
  created: string;
  labels: Record<string, string>;
}

type Run = (work: () => Promise<number>) => void;

export function registerResources(program: Command, run: Run): void {
  const volume = program.command('volume').description('Manage named volumes');
  volume
    .command('create')
    .description('Create a named volume')
    .argument('[name]')
    .option('-l, --label <key=value>', 'set a label (repeatable)', collect)
    .addHelpText('after', '\nExample:\n  abode volume create data')
    .action((name: string | undefined, flags: { label?: string[] }) =>
      run(async () => {
        const { client } = await connectDaemon();
        const labels = Object.fromEntries(
          (flags.label ?? []).map((l) => [l.split('=')[0], l.split('=').slice(1).join('=')]),
        );
        const created = await client.call<VolumeRecord>('POST', '/volumes', {
          body: { Name: name, Labels: labels },
        });
        process.stdout.write(`${created.name}\n`);
        return 0;
      }),
    );
  volume
    .command('ls')
    .addHelpText('after', '\nExample:\n  abode volume ls --format "{{.Name}}"')
    .alias('list')
    .description('List volumes')
    .option('-q, --quiet', 'only names')
    .option('--format <template>', 'Go template or "table ..."')
    .action((flags: { quiet?: boolean; format?: string }) =>
      run(async () => {
        const { client } = await connectDaemon();
        const volumes = await client.call<VolumeRecord[]>('GET', '/volumes');
        if (flags.quiet) {
          process.stdout.write(volumes.map((v) => `${v.name}\n`).join(''));
          return 0;
        }
        const rows = volumes.map((v) => ({ Driver: v.driver, Name: v.name, Mountpoint: v.mountpoint }));
        process.stdout.write(
          renderTable(
            flags.format ?? null,
            rows,
            { Driver: 'DRIVER', Name: 'VOLUME NAME', Mountpoint: 'MOUNTPOINT' },
            'table {{.Driver}}\t{{.Name}}',
          ),
        );
        return 0;
      }),
    );
  volume
    .command('rm')
    .addHelpText('after', '\nExample:\n  abode volume rm data')
    .description('Remove volumes')
    .argument('<name...>')
    .option('-f, --force', 'remove even when in use')
    .action((names: string[], flags: { force?: boolean }) =>
      run(async () => {
        const { client } = await connectDaemon();
        return forEach(names, async (name) => {
          await client.call('DELETE', `/volumes/${encodeURIComponent(name)}`, {
            query: { force: flags.force ?? false },
          });
        });
      }),
    );
  volume
    .command('inspect')
    .addHelpText('after', '\nExample:\n  abode volume inspect --format "{{.Mountpoint}}" data')
    .description('Show volumes in detail')
    .argument('<name...>')
    .option('-f, --format <template>', 'Go template')
    .action((names: string[], flags: { format?: string }) =>
      run(async () => {
        const { client } = await connectDaemon();
        const found: unknown[] = [];
        let failed = false;
        for (const name of names) {
          try {
            const v = await client.call<VolumeRecord>('GET', `/volumes/${encodeURIComponent(name)}`);
            found.push({
              CreatedAt: v.created,
              Driver: v.driver,
              Labels: v.labels,
              Mountpoint: v.mountpoint,
              Name: v.name,
              Scope: 'local',
            });
          } catch (error) {
            failed = true;
            process.stderr.write(`Error: ${(error as Error).message}\n`);
          }
        }
        process.stdout.write(renderInspect(found, flags.format));
        return failed ? 1 : 0;
      }),
    );
  volume
    .command('prune')
    .addHelpText('after', '\nExample:\n  abode volume prune -f')
    .description('Remove volumes no instance uses')
    .option('-f, --force', 'do not prompt')
    .action(() =>
      run(async () => {
        const { client } = await connectDaemon();
        const result = await client.call<{ VolumesDeleted: string[] }>('POST', '/volumes/prune');
        process.stdout.write(`Deleted Volumes:\n${result.VolumesDeleted.map((n) => `${n}\n`).join('')}`);
        return 0;
      }),
    );

  program
    .command('info')
    .addHelpText('after', '\nExample:\n  abode info --format "{{.KernelVersion}}"')
    .description('Show the host: kernel, cgroups, storage, accelerator')
    .option('-f, --format <template>', 'Go template')
    .action((flags: { format?: string }) =>
      run(async () => {
        const { client } = await connectDaemon();
        const info = await client.call<Record<string, unknown>>('GET', '/info');
        if (flags.format) {
          process.stdout.write(`${execute(parseTemplate(flags.format), info)}\n`);
          return 0;
        }
        const cgroup = info.Cgroup as Record<string, unknown>;
        const accel = info.Accelerator as { name: string; reason: string };
        const lines = [
          `Server Version: ${info.ServerVersion}`,
          `Kernel Version: ${info.KernelVersion}`,
          `Containers: ${info.Containers} (running ${info.ContainersRunning}, stopped ${info.ContainersStopped})`,
          `Images: ${info.Images}`,
          `Storage Driver: ${info.Driver}`,
          `Cgroup Version: ${cgroup.mode}`,
          `Runtimes: ${(info.Runtimes as string[]).join(' ')}`,
          `VM Accelerator: ${accel.name} (${accel.reason})`,
          `VM Templates: ${templatesLine(info.VmTemplates as TemplatesInfo | undefined)}`,
          `CPUs: ${info.NCPU}`,
          `Total Memory: ${humanSize(info.MemTotal as number)}`,
          `Root Dir: ${info.RootDir}`,
          `Run Root: ${info.RunRoot}`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
        return 0;
      }),
    );
  program
    .command('version')
    .addHelpText('after', '\nExample:\n  abode version --format "{{.Server.Version}}"')
    .description('Show client and daemon versions')
    .option('-f, --format <template>', 'Go template')
    .action((flags: { format?: string }) =>
      run(async () => {
        const { client } = await connectDaemon();
        const server = await client.call<Record<string, unknown>>('GET', '/version');
        const data = { Client: { Version: '0.1.0', NodeVersion: process.version }, Server: server };
        if (flags.format) process.stdout.write(`${execute(parseTemplate(flags.format), data)}\n`);
        else
          process.stdout.write(
            `Client:\n Version:    0.1.0\n Node:       ${process.version}\n\nServer:\n Version:    ${server.Version}\n Kernel:     ${server.KernelVersion}\n`,
          );
        return 0;
      }),
    );
  program
    .command('daemon')
    .addHelpText('after', '\nExample:\n  abode --root /tmp/abode-test daemon')
    .description('Run the abode daemon in the foreground (the CLI starts it on demand otherwise)')
    .action(() => {
      const root = program.opts().root as string | undefined;
      const result = spawnSync(process.execPath, [daemonEntry(), ...(root ? ['--root', root] : [])], {
        stdio: 'inherit',
      });
      process.exit(result.status ?? 1);
    });
}

interface TemplatesInfo {
  Enabled: boolean;
  Ready: { MemoryMiB: number; Cpus: number; HeldBytes: number }[];
}

/** "on (1 ready: 256 MiB × 2 vCPUs, holding 63 MiB)", or off and how to turn them on. */
function templatesLine(t: TemplatesInfo | undefined): string {
  if (!t?.Enabled) return 'off (every VM boots; the daemon was started with ABODE_VM_TEMPLATES=0)';
  const ready = t.Ready.map((r) => `${r.MemoryMiB} MiB × ${r.Cpus} vCPUs, holding ${humanSize(r.HeldBytes)}`);
  return `on (${t.Ready.length} ready${ready.length ? `: ${ready.join('; ')}` : ', built after the first boot of a machine'})`;
}
