/**
 * Image commands: images, image (ls, inspect, history, prune, rm, tag, save, load, import), history, save,
 * load, import, rmi, tag, and system df. Archives stream through the daemon: save writes the daemon's tar to
 * a file (atomically), stdout or, for `--format oci -o DIR/`, an OCI layout directory; load sends a file,
 * stdin or a layout directory.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { Command } from '../args.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { connectDaemon } from '../context.js';
import { collect } from '../options.js';
import { renderTable, renderInspect } from '../format/table.js';
import { humanDuration, humanSize } from '../format/units.js';

type Run = (work: () => Promise<number>) => void;

interface ImageRecord {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  created: string;
  size: number;
  diffIds?: string[];
}

/** docker's intermediate images: untagged ones whose layers another, later image builds on (build steps). */
export function intermediateIds(images: ImageRecord[]): Set<string> {
  const hidden = new Set<string>();
  for (const image of images) {
    if (image.repoTags.length > 0 || !image.diffIds) continue;
    const layers = image.diffIds;
    const child = images.find(
      (other) =>
        other.id !== image.id &&
        other.diffIds !== undefined &&
        other.diffIds.length >= layers.length &&
        layers.every((d, i) => other.diffIds?.[i] === d) &&
        other.created >= image.created,
    );
    if (child) hidden.add(image.id);
  }
  return hidden;
}

interface HistoryRow {
  Id: string;
  Created: number;
  CreatedBy: string;
  Tags: string[] | null;
  Size: number;
  Comment: string;
}

function shortTag(tag: string): [string, string] {
  const familiar = tag.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
  const colon = familiar.lastIndexOf(':');
  return colon > familiar.lastIndexOf('/')
    ? [familiar.slice(0, colon), familiar.slice(colon + 1)]
    : [familiar, 'latest'];
}

const shortId = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

async function imagesCommand(
  filter: string | undefined,
  flags: { quiet?: boolean; format?: string; digests?: boolean; trunc?: boolean; all?: boolean },
): Promise<number> {
  const { client } = await connectDaemon();
  const everything = await client.call<ImageRecord[]>('GET', '/images');
  const hidden = flags.all ? new Set<string>() : intermediateIds(everything);
  const images = everything.filter((image) => !hidden.has(image.id));
  // docker images [REPOSITORY[:TAG]]: the repository as shown, and the tag when one is given
  const [wantRepo, wantTag] = filter ? shortTag(filter) : [undefined, undefined];
  const explicitTag = filter !== undefined && /:[^/]+$/.test(filter);
  const rows = images.flatMap((image) => {
    const tags = image.repoTags.length > 0 ? image.repoTags : ['<none>:<none>'];
    return tags.flatMap((tag) => {
      const [repository, t] = tag === '<none>:<none>' ? ['<none>', '<none>'] : shortTag(tag);
      if (wantRepo !== undefined && (repository !== wantRepo || (explicitTag && t !== wantTag))) return [];
      // As docker: a row shows its own repository's digest; an untagged row, the image's first.
      const digest =
        repository === '<none>'
          ? image.repoDigests[0]
          : image.repoDigests.find((d) => shortTag(d.split('@')[0]!)[0] === repository);
      return [
        {
          Repository: repository,
          Tag: t,
          ID: flags.trunc === false ? image.id : shortId(image.id),
          Digest: digest?.split('@')[1] ?? '<none>',
          CreatedSince: `${humanDuration(Date.now() - Date.parse(image.created))} ago`,
          CreatedAt: image.created,
          Size: humanSize(image.size),
        },
      ];
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

async function inspectCommand(refs: string[], flags: { format?: string }): Promise<number> {
  const { client } = await connectDaemon();
  const found: unknown[] = [];
  let failed = false;
  for (const ref of refs) {
    try {
      found.push(await client.call('GET', `/images/${encodeURIComponent(ref)}/json`));
    } catch (error) {
      failed = true;
      process.stderr.write(`Error: ${(error as Error).message}\n`);
    }
  }
  process.stdout.write(renderInspect(found, flags.format));
  return failed ? 1 : 0;
}

async function historyCommand(
  ref: string,
  flags: { noTrunc?: boolean; quiet?: boolean; format?: string; human?: boolean },
): Promise<number> {
  const { client } = await connectDaemon();
  const rows = await client.call<HistoryRow[]>('GET', `/images/${encodeURIComponent(ref)}/history`);
  if (flags.quiet) {
    process.stdout.write(
      rows.map((r) => `${flags.noTrunc ? r.Id : r.Id === '<missing>' ? r.Id : shortId(r.Id)}\n`).join(''),
    );
    return 0;
  }
  const human = flags.human !== false;
  const view = rows.map((r) => {
    const by = r.CreatedBy.replace(/\s+/g, ' ');
    return {
      ID: flags.noTrunc || r.Id === '<missing>' ? r.Id : shortId(r.Id),
      CreatedSince: human
        ? `${humanDuration(Date.now() - r.Created * 1000)} ago`
        : new Date(r.Created * 1000).toISOString(),
      CreatedAt: new Date(r.Created * 1000).toISOString(),
      CreatedBy: !flags.noTrunc && by.length > 45 ? `${by.slice(0, 44)}…` : by,
      Size: human ? humanSize(r.Size) : String(r.Size),
      Comment: r.Comment,
    };
  });
  const headers = {
    ID: 'IMAGE',
    CreatedSince: 'CREATED',
    CreatedAt: 'CREATED AT',
    CreatedBy: 'CREATED BY',
    Size: 'SIZE',
    Comment: 'COMMENT',
  };
  process.stdout.write(
    renderTable(
      flags.format ?? null,
      view,
      headers,
      'table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}',
    ),
  );
  return 0;
}

async function isDirectoryTarget(path: string): Promise<boolean> {
  if (path.endsWith('/')) return true;
  return (await fs.stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

async function saveCommand(refs: string[], flags: { output?: string; format?: string }): Promise<number> {
  const format = flags.format ?? 'docker';
  if (format !== 'docker' && format !== 'oci' && format !== 'docker-archive' && format !== 'oci-archive')
    throw new InvalidArgumentError(`unknown format ${JSON.stringify(format)}: use docker or oci`);
  const apiFormat = format.startsWith('oci') ? 'oci' : 'docker';
  if (!flags.output && process.stdout.isTTY)
    throw new InvalidArgumentError('cowardly refusing to save to a terminal. Use the -o flag or redirect');
  const { client } = await connectDaemon();
  const res = await client.stream('GET', '/images/get', { query: { names: refs, format: apiFormat } });
  let complete = false;
  res.on('end', () => (complete = res.complete));
  const checkComplete = () => {
    if (!complete && !res.complete) throw new InvalidArgumentError('the daemon stopped sending the archive');
  };
  if (!flags.output) {
    await pipeline(res, process.stdout as unknown as NodeJS.WritableStream, { end: false });
    checkComplete();
    return 0;
  }
  const out = flags.output;
  if (await isDirectoryTarget(out)) {
    if (apiFormat !== 'oci') throw new InvalidArgumentError('a directory output needs --format oci');
    await fs.mkdir(out, { recursive: true });
    const tar = await import('tar');
    await pipeline(res, tar.x({ cwd: out, strict: true }) as unknown as NodeJS.WritableStream);
    checkComplete();
    return 0;
  }
  const tmp = join(dirname(out), `.${randomBytes(6).toString('hex')}.abode-save`);
  try {
    await pipeline(res, createWriteStream(tmp, { mode: 0o644 }));
    checkComplete();
    await fs.rename(tmp, out);
  } catch (error) {
    await fs.rm(tmp, { force: true });
    if ((error as Error).message === 'aborted')
      throw new InvalidArgumentError(
        'the daemon stopped sending the archive (see its log); nothing was written',
      );
    throw error;
  }
  return 0;
}

async function loadCommand(flags: { input?: string; quiet?: boolean }): Promise<number> {
  let body: Readable;
  if (!flags.input || flags.input === '-') {
    if (process.stdin.isTTY)
      throw new InvalidArgumentError('requested load from stdin, but stdin is empty (use -i FILE)');
    body = process.stdin;
  } else if ((await fs.stat(flags.input)).isDirectory()) {
    const tar = await import('tar');
    body = tar.c({ cwd: flags.input, portable: true }, ['.']) as unknown as Readable;
  } else {
    const file = createReadStream(flags.input);
    await new Promise<void>((resolve, reject) => file.once('open', () => resolve()).once('error', reject));
    body = file;
  }
  const { client } = await connectDaemon();
  const result = await client.call<{ lines: string[] }>('POST', '/images/load', { bodyStream: body });
  if (!flags.quiet) for (const line of result.lines) process.stdout.write(`${line}\n`);
  return 0;
}

async function pruneCommand(flags: { all?: boolean; force?: boolean }): Promise<number> {
  if (!flags.force && process.stdin.isTTY) {
    process.stderr.write(
      flags.all
        ? 'WARNING! This will remove all images without at least one container associated to them.\n'
        : 'WARNING! This will remove all dangling images.\n',
    );
    process.stderr.write('Are you sure you want to continue? [y/N] ');
    const answer = await new Promise<string>((resolve) =>
      process.stdin.once('data', (d: Buffer) => resolve(d.toString().trim())),
    );
    process.stdin.pause();
    if (!/^y(es)?$/i.test(answer)) return 0;
  }
  const { client } = await connectDaemon();
  const result = await client.call<{
    ImagesDeleted: { Untagged?: string; Deleted?: string }[];
    SpaceReclaimed: number;
  }>('POST', '/images/prune', { query: { all: flags.all ?? false } });
  if (result.ImagesDeleted.length > 0) {
    process.stdout.write('Deleted Images:\n');
    for (const d of result.ImagesDeleted)
      process.stdout.write(d.Untagged ? `untagged: ${d.Untagged}\n` : `deleted: ${d.Deleted}\n`);
    process.stdout.write('\n');
  }
  process.stdout.write(`Total reclaimed space: ${humanSize(result.SpaceReclaimed)}\n`);
  return 0;
}

interface DiskUsage {
  LayersSize: number;
  Images: {
    Id: string;
    RepoTags: string[];
    Created: number;
    Size: number;
    SharedSize: number;
    Containers: number;
  }[];
  Containers: {
    Id: string;
    Names: string[];
    Image: string;
    State: string;
    SizeRw: number;
    Created: number;
  }[];
  Volumes: { Name: string; UsageData: { Size: number; RefCount: number } }[];
}

async function dfCommand(flags: { verbose?: boolean; format?: string }): Promise<number> {
  const { client } = await connectDaemon();
  const df = await client.call<DiskUsage>('GET', '/system/df');
  const pct = (part: number, total: number) => (total > 0 ? ` (${Math.round((part / total) * 100)}%)` : '');
  const imagesActive = df.Images.filter((i) => i.Containers > 0);
  const imagesSize = df.LayersSize;
  const unusedImages = df.Images.filter((i) => i.Containers === 0).reduce(
    (n, i) => n + i.Size - i.SharedSize,
    0,
  );
  const containersSize = df.Containers.reduce((n, c) => n + c.SizeRw, 0);
  const stopped = df.Containers.filter((c) => c.State !== 'running').reduce((n, c) => n + c.SizeRw, 0);
  const volumesSize = df.Volumes.reduce((n, v) => n + v.UsageData.Size, 0);
  const unusedVolumes = df.Volumes.filter((v) => v.UsageData.RefCount === 0).reduce(
    (n, v) => n + v.UsageData.Size,
    0,
  );
  const rows = [
    {
      Type: 'Images',
      TotalCount: String(df.Images.length),
      Active: String(imagesActive.length),
      Size: humanSize(imagesSize),
      Reclaimable: `${humanSize(unusedImages)}${pct(unusedImages, imagesSize)}`,
    },
    {
      Type: 'Containers',
      TotalCount: String(df.Containers.length),
      Active: String(df.Containers.filter((c) => c.State === 'running').length),
      Size: humanSize(containersSize),
      Reclaimable: `${humanSize(stopped)}${pct(stopped, containersSize)}`,
    },
    {
      Type: 'Local Volumes',
      TotalCount: String(df.Volumes.length),
      Active: String(df.Volumes.filter((v) => v.UsageData.RefCount > 0).length),
      Size: humanSize(volumesSize),
      Reclaimable: `${humanSize(unusedVolumes)}${pct(unusedVolumes, volumesSize)}`,
    },
    { Type: 'Build Cache', TotalCount: '0', Active: '0', Size: '0B', Reclaimable: '0B' },
  ];
  if (flags.format && !flags.verbose) {
    process.stdout.write(
      renderTable(flags.format, rows, {
        Type: 'TYPE',
        TotalCount: 'TOTAL',
        Active: 'ACTIVE',
        Size: 'SIZE',
        Reclaimable: 'RECLAIMABLE',
      }),
    );
    return 0;
  }
  if (!flags.verbose) {
    process.stdout.write(
      renderTable(
        null,
        rows,
        { Type: 'TYPE', TotalCount: 'TOTAL', Active: 'ACTIVE', Size: 'SIZE', Reclaimable: 'RECLAIMABLE' },
        'table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}',
      ),
    );
    return 0;
  }
  const images = df.Images.flatMap((i) =>
    (i.RepoTags.length ? i.RepoTags : ['<none>:<none>']).map((t) => {
      const [repo, tag] = t === '<none>:<none>' ? ['<none>', '<none>'] : shortTag(t);
      return {
        Repository: repo,
        Tag: tag,
        ID: shortId(i.Id),
        Created: `${humanDuration(Date.now() - i.Created * 1000)} ago`,
        Size: humanSize(i.Size),
        Shared: humanSize(i.SharedSize),
        Unique: humanSize(i.Size - i.SharedSize),
        Containers: String(i.Containers),
      };
    }),
  );
  process.stdout.write('Images space usage:\n\n');
  process.stdout.write(
    renderTable(
      null,
      images,
      {
        Repository: 'REPOSITORY',
        Tag: 'TAG',
        ID: 'IMAGE ID',
        Created: 'CREATED',
        Size: 'SIZE',
        Shared: 'SHARED SIZE',
        Unique: 'UNIQUE SIZE',
        Containers: 'CONTAINERS',
      },
      'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Created}}\t{{.Size}}\t{{.Shared}}\t{{.Unique}}\t{{.Containers}}',
    ),
  );
  process.stdout.write('\nContainers space usage:\n\n');
  process.stdout.write(
    renderTable(
      null,
      df.Containers.map((c) => ({
        ID: c.Id.slice(0, 12),
        Image: c.Image,
        Created: `${humanDuration(Date.now() - c.Created * 1000)} ago`,
        Status: c.State,
        Size: humanSize(c.SizeRw),
        Names: c.Names.map((n) => n.replace(/^\//, '')).join(','),
      })),
      {
        ID: 'CONTAINER ID',
        Image: 'IMAGE',
        Created: 'CREATED',
        Status: 'STATUS',
        Size: 'SIZE',
        Names: 'NAMES',
      },
      'table {{.ID}}\t{{.Image}}\t{{.Created}}\t{{.Status}}\t{{.Size}}\t{{.Names}}',
    ),
  );
  process.stdout.write('\nLocal Volumes space usage:\n\n');
  process.stdout.write(
    renderTable(
      null,
      df.Volumes.map((v) => ({
        Name: v.Name,
        Links: String(v.UsageData.RefCount),
        Size: humanSize(v.UsageData.Size),
      })),
      { Name: 'VOLUME NAME', Links: 'LINKS', Size: 'SIZE' },
      'table {{.Name}}\t{{.Links}}\t{{.Size}}',
    ),
  );
  return 0;
}

async function rmiCommand(refs: string[], flags: { force?: boolean }): Promise<number> {
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
}

async function tagCommand(source: string, target: string): Promise<number> {
  const { client } = await connectDaemon();
  await client.call('POST', `/images/${encodeURIComponent(source)}/tag`, { query: { target } });
  return 0;
}

async function importCommand(
  file: string,
  name: string | undefined,
  flags: { change?: string[]; message?: string },
): Promise<number> {
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
}

/** The subcommands shared by `abode X` and `abode image X`. */
function define(parent: Command, run: Run, top: boolean): void {
  const images = parent.command(top ? 'images' : 'ls');
  if (!top) images.alias('list');
  images
    .description('List images')
    .option('-q, --quiet', 'only image ids')
    .option('-a, --all', 'show intermediate images (the untagged steps of builds) too')
    .argument('[repository]', 'only this repository[:tag]')
    .option('--digests', 'show digests')
    .option('--no-trunc', 'full image IDs')
    .option('--format <template>', 'Go template or "table ..."')
    .addHelpText(
      'after',
      '\nExample:\n  abode images --digests --format "{{.Repository}}:{{.Tag}} {{.Digest}}"',
    )
    .action(
      (
        filter: string | undefined,
        flags: { quiet?: boolean; format?: string; digests?: boolean; trunc?: boolean },
      ) => run(() => imagesCommand(filter, flags)),
    );
  parent
    .command('history')
    .description('Show the history of an image')
    .argument('<image>')
    .option('--no-trunc', 'do not truncate output')
    .option('-q, --quiet', 'only image ids')
    .option('-H, --human [bool]', 'sizes and dates in human-readable form', (v: string) => v !== 'false')
    .option('--format <template>', 'Go template or "table ..."')
    .addHelpText('after', '\nExample:\n  abode history busybox')
    .action((ref: string, flags: { trunc?: boolean; quiet?: boolean; format?: string; human?: boolean }) =>
      run(() => historyCommand(ref, { ...flags, noTrunc: flags.trunc === false })),
    );
  parent
    .command('save')
    .description('Save images to a tar archive (docker-archive, or an OCI image layout with --format oci)')
    .argument('<image...>')
    .option('-o, --output <path>', 'write to a file (or, with --format oci, a directory when it ends in /)')
    .option('--format <format>', 'docker (docker save, default) or oci (OCI image layout)')
    .addHelpText(
      'after',
      '\nExamples:\n  abode save -o busybox.tar busybox\n  abode save --format oci -o layout/ busybox:latest\n  abode save busybox | gzip > busybox.tar.gz',
    )
    .action((refs: string[], flags: { output?: string; format?: string }) =>
      run(() => saveCommand(refs, flags)),
    );
  parent
    .command('load')
    .description('Load images from a docker-archive or OCI layout (tar, gzip or zstd; a layout directory)')
    .option('-i, --input <path>', 'read from a file or an OCI layout directory instead of stdin')
    .option('-q, --quiet', 'print nothing')
    .addHelpText('after', '\nExamples:\n  abode load -i busybox.tar\n  abode load < busybox.tar')
    .action((flags: { input?: string; quiet?: boolean }) => run(() => loadCommand(flags)));
  parent
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
      run(() => importCommand(file, name, flags)),
    );
  parent
    .command(top ? 'rmi' : 'rm')
    .addHelpText('after', '\nExample:\n  abode rmi -f mybox:1')
    .description('Remove images')
    .argument('<image...>')
    .option('-f, --force', 'untag even when instances use it (an image in use is never deleted)')
    .action((refs: string[], flags: { force?: boolean }) => run(() => rmiCommand(refs, flags)));
  parent
    .command('tag')
    .addHelpText('after', '\nExample:\n  abode tag busybox:latest mybox:1')
    .description('Give an image another name')
    .argument('<source>')
    .argument('<target>')
    .action((source: string, target: string) => run(() => tagCommand(source, target)));
}

export function registerImages(program: Command, run: Run): void {
  define(program, run, true);
  const image = program.command('image').description('Manage images');
  define(image, run, false);
  image
    .command('inspect')
    .description('Show images in detail (docker image inspect)')
    .argument('<image...>')
    .option('-f, --format <template>', 'Go template')
    .addHelpText('after', '\nExample:\n  abode image inspect --format "{{.Id}} {{.RootFS.Layers}}" busybox')
    .action((refs: string[], flags: { format?: string }) => run(() => inspectCommand(refs, flags)));
  image
    .command('prune')
    .addHelpText('after', '\nExample:\n  abode image prune -a -f')
    .description(
      'Remove dangling images (all unused with -a) and free the disk of unreferenced blobs and layers',
    )
    .option('-a, --all', 'remove every image no instance uses, not only dangling ones')
    .option('-f, --force', 'do not prompt')
    .action((flags: { all?: boolean; force?: boolean }) => run(() => pruneCommand(flags)));
  const system = program.command('system').description('Manage abode');
  system
    .command('df')
    .addHelpText('after', '\nExample:\n  abode system df -v')
    .description('Show disk usage of images, instances and volumes')
    .option('-v, --verbose', 'show each image, instance and volume')
    .option('--format <template>', 'Go template or "table ..."')
    .action((flags: { verbose?: boolean; format?: string }) => run(() => dfCommand(flags)));
}
