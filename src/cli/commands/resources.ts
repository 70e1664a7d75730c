import { createReadStream } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { Command } from '../args.js';
import { connectDaemon, daemonEntry } from '../context.js';
import { collect } from '../options.js';
import { forEach } from './run.js';
import { renderTable } from '../format/table.js';
import { humanDuration, humanSize } from '../format/units.js';
import { parseTemplate, execute } from '../format/template.js';

interface ImageRecord {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  created: string;
  size: number;
}

interface VolumeRecord {
  name: string;
  driver: string;
  mountpoint: string;
  created: string;
  labels: Record<string, string>;
}

type Run = (work: () => Promise<number>) => void;

function shortTag(tag: string): [string, string] {
  const familiar = tag.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
  const colon = familiar.lastIndexOf(':');
  return colon > familiar.lastIndexOf('/')
    ? [familiar.slice(0, colon), familiar.slice(colon + 1)]
    : [familiar, 'latest'];
}

async function imagesCommand(flags: {
  quiet?: boolean;
  format?: string;
  digests?: boolean;
}): Promise<number> {
  const { client } = await connectDaemon();
  const images = await client.call<ImageRecord[]>('GET', '/images');
  const rows = images.flatMap((image) => {
    const tags = image.repoTags.length > 0 ? image.repoTags : ['<none>:<none>'];
    return tags.map((tag) => {
      const [repository, t] = tag === '<none>:<none>' ? ['<none>', '<none>'] : shortTag(tag);
      return {
        Repository: repository,
        Tag: t,
        ID: image.id.replace(/^sha256:/, '').slice(0, 12),
        Digest: image.repoDigests[0]?.split('@')[1] ?? '<none>',
        CreatedSince: `${humanDuration(Date.now() - Date.parse(image.created))} ago`,
        CreatedAt: image.created,
        Size: humanSize(image.size),
      };
    });
  });
  if (flags.quiet) {
    process.stdout.write([...new Set(rows.map((r) => r.ID))].map((id) => `${id}\n`).join(''));
    return 0;
  }
  const headers = {
    Repository: 'REPOSITORY',
    Tag: 'TAG',
    ID: 'IMAGE ID',
    Digest: 'DIGEST',
    CreatedSince: 'CREATED',
    CreatedAt: 'CREATED AT',
    Size: 'SIZE',
  };
  const defaultFormat = flags.digests
    ? 'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
    : 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';
  process.stdout.write(renderTable(flags.format ?? null, rows, headers, defaultFormat));
  return 0;
}

export function registerResources(program: Command, run: Run): void {
  program
    .command('images')
    .description('List images')
    .option('-q, --quiet', 'only image ids')
    .option('--digests', 'show digests')
    .option('--format <template>', 'Go template or "table ..."')
    .addHelpText('after', '\nExample:\n  abode images --format "{{.Repository}}:{{.Tag}}"')
    .action((flags) => run(() => imagesCommand(flags)));
  program
    .command('import')
    .description('Create an image from a root file system tarball (plain or gzip)')
    .argument('<file>', 'tar file, or - for stdin')
    .argument('[name]', 'repository[:tag] for the new image')
    .option(
      '-c, --change <instruction>',
      'apply a Containerfile instruction (CMD, ENTRYPOINT, ENV, ...)',
      collect,
    )
    .option('-m, --message <text>', 'commit message')
    .addHelpText('after', '\nExample:\n  abode import rootfs.tar myimage:1 --change \'CMD ["/bin/sh"]\'')
    .action((file: string, name: string | undefined, flags: { change?: string[]; message?: string }) =>
      run(async () => {
        const { client } = await connectDaemon();
        const body = file === '-' ? process.stdin : createReadStream(file);
        const opened = new Promise<void>((resolve, reject) => {
          if (file === '-') resolve();
          else body.once('open', () => resolve()).once('error', reject);
        });
        await opened;
        const image = await client.call<ImageRecord>('POST', '/images/import', {
          query: { ref: name, change: flags.change ?? [], message: flags.message },
          bodyStream: body,
        });
        process.stdout.write(`${image.id}\n`);
        return 0;
      }),
    );
  program
    .command('rmi')
    .description('Remove images')
    .argument('<image...>')
    .option('-f, --force', 'remove even when instances use it')
    .action((refs: string[], flags: { force?: boolean }) =>
      run(async () => {
        const { client } = await connectDaemon();
        let failed = false;
        for (const ref of refs) {
          try {
            const lines = await client.call<string[]>('DELETE', `/images/${encodeURIComponent(ref)}`, {
              query: { force: flags.force ?? false },
            });
            for (const line of lines) process.stdout.write(`${line}\n`);
          } catch (error) {
            failed = true;
            process.stderr.write(`Error response from daemon: ${(error as Error).message}\n`);
          }
        }
        return failed ? 1 : 0;
      }),
    );
  program
    .command('tag')
    .description('Give an image another name')
    .argument('<source>')
    .argument('<target>')
    .action((source: string, target: string) =>
      run(async () => {
        const { client } = await connectDaemon();
        await client.call('POST', `/images/${encodeURIComponent(source)}/tag`, { query: { target } });
        return 0;
      }),
    );

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
        if (flags.format) {
          const template = parseTemplate(flags.format);
          for (const v of found) process.stdout.write(`${execute(template, v)}\n`);
        } else process.stdout.write(`${JSON.stringify(found, null, 4)}\n`);
        return failed ? 1 : 0;
      }),
    );
  volume
    .command('prune')
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
    .description('Run the abode daemon in the foreground (the CLI starts it on demand otherwise)')
    .action(() => {
      const root = program.opts().root as string | undefined;
      const result = spawnSync(process.execPath, [daemonEntry(), ...(root ? ['--root', root] : [])], {
        stdio: 'inherit',
      });
      process.exit(result.status ?? 1);
    });
}
