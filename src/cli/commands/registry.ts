/**
 * pull, push, login, logout. The daemon does the registry work and streams JSON lines of progress;
 * this side renders them as docker does: per-layer lines redrawn in place on a terminal, one line per
 * status change otherwise.
 */
import type { Command } from '../args.js';
import type { IncomingMessage } from 'node:http';
import type { Client } from '../../client/client.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { ProgressEvent } from '../../core/image.js';
import { connectDaemon } from '../context.js';
import { humanSize } from '../format/units.js';
import { readJsonLines } from '../../client/json-lines.js';

type Run = (work: () => Promise<number>) => void;

/** docker's progress text: `Downloading [=====>     ]  12.35MB/45.6MB`. */
export function progressText(e: ProgressEvent, width = 50): string {
  if (!e.progress || e.progress.total <= 0) return e.status;
  const { current, total } = e.progress;
  const filled = Math.min(width, Math.floor((current / total) * width));
  const bar = filled > 0 ? `${'='.repeat(filled - 1)}${filled < width ? '>' : '='}` : '';
  return `${e.status} [${bar.padEnd(width)}]  ${humanSize(current)}/${humanSize(total)}`;
}

/** Renders progress events: in place on a terminal, plain lines otherwise. */
export class ProgressRenderer {
  private readonly rows = new Map<string, number>();
  private readonly last = new Map<string, string>();
  private lines = 0;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly tty: boolean,
  ) {}

  render(e: ProgressEvent): void {
    const layer = e.id !== undefined && /^[a-f0-9]{12}$/.test(e.id);
    if (!layer) {
      this.out.write(`${e.id ? `${e.id}: ` : ''}${e.status}\n`);
      this.lines++;
      return;
    }
    const id = e.id!;
    if (!this.tty) {
      if (this.last.get(id) === e.status) return; // progress repeats only on a terminal
      this.last.set(id, e.status);
      this.out.write(`${id}: ${e.status}\n`);
      return;
    }
    const text = `${id}: ${progressText(e)}`;
    const row = this.rows.get(id);
    if (row === undefined) {
      this.rows.set(id, this.lines);
      this.out.write(`${text}\n`);
      this.lines++;
      return;
    }
    const up = this.lines - row;
    this.out.write(`\x1b[${up}A\r\x1b[2K${text}\x1b[${up}B\r`);
  }
}

/** Reads a JSON-lines progress stream, rendering each event; returns the result or throws the error. */
export function consumeProgress<T>(res: IncomingMessage, onEvent: (e: ProgressEvent) => void): Promise<T> {
  return readJsonLines<T>(res, (msg) => onEvent(msg as unknown as ProgressEvent));
}

export interface PullFlags {
  platform?: string;
  tlsVerify?: boolean;
  quiet?: boolean;
}

/**
 * Pulls through the daemon, rendering progress on `out` (a terminal gets in-place lines). For
 * `run`/`create` of a missing image: print `Unable to find image 'x:latest' locally` on stderr, then
 * `await pullImage(client, ref, {platform}, process.stderr)`, then create again.
 */
export async function pullImage(
  client: Client,
  ref: string,
  flags: PullFlags,
  out: NodeJS.WriteStream | NodeJS.WritableStream,
): Promise<{ id: string }> {
  const res = await client.stream('POST', '/images/pull', {
    query: {
      ref,
      platform: flags.platform,
      tlsVerify: flags.tlsVerify === false ? '0' : undefined,
    },
  });
  const renderer = new ProgressRenderer(out, Boolean((out as NodeJS.WriteStream).isTTY));
  return consumeProgress<{ id: string }>(res, (e) => {
    if (!flags.quiet) renderer.render(e);
  });
}

function parseBool(v: string | undefined): boolean {
  if (v === undefined || v === '') return true;
  if (['true', '1', 'yes'].includes(v.toLowerCase())) return true;
  if (['false', '0', 'no'].includes(v.toLowerCase())) return false;
  throw new InvalidArgumentError(`invalid boolean: ${v}`);
}

const tlsHelp = 'require HTTPS and verify certificates (--tls-verify=false for local plain-http registries)';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/** Asks on the terminal; `secret` turns echo off. */
async function prompt(question: string, secret: boolean): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new InvalidArgumentError('cannot prompt: stdin is not a terminal');
  process.stderr.write(question);
  if (!secret) {
    const { createInterface } = await import('node:readline');
    const rl = createInterface({ input: stdin });
    const answer = await new Promise<string>((resolve) => rl.once('line', resolve));
    rl.close();
    return answer;
  }
  stdin.setRawMode(true);
  stdin.resume();
  let text = '';
  try {
    for await (const chunk of stdin as AsyncIterable<Buffer>) {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return text;
        if (ch === '\u0003') throw new InvalidArgumentError('interrupted');
        if (ch === '\u007f') text = text.slice(0, -1);
        else text += ch;
      }
    }
    return text;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}

export function registerRegistry(program: Command, run: Run): void {
  program
    .command('pull')
    .description('Download an image from a registry')
    .argument('<image>', 'NAME[:TAG|@DIGEST]')
    .option('--platform <os/arch>', 'platform to pick from a multi-platform image (default linux/amd64)')
    .option('--tls-verify [bool]', tlsHelp, parseBool)
    .option('-q, --quiet', 'print only the image reference')
    .addHelpText(
      'after',
      '\nExamples:\n  abode pull busybox\n  abode pull --platform linux/arm64 127.0.0.1:5000/app:1\n  abode pull --tls-verify=false myhost:5000/app@sha256:…',
    )
    .action((ref: string, flags: PullFlags) =>
      run(async () => {
        const { client } = await connectDaemon();
        await pullImage(client, ref, flags, process.stdout);
        if (flags.quiet) process.stdout.write(`${ref}\n`);
        return 0;
      }),
    );
  program
    .command('push')
    .description('Upload an image to a registry')
    .argument('<image>', 'NAME[:TAG]')
    .option('--tls-verify [bool]', tlsHelp, parseBool)
    .option('-q, --quiet', 'print nothing but errors')
    .addHelpText(
      'after',
      '\nExample:\n  abode tag busybox 127.0.0.1:5000/busybox:1 && abode push 127.0.0.1:5000/busybox:1',
    )
    .action((ref: string, flags: { tlsVerify?: boolean; quiet?: boolean }) =>
      run(async () => {
        const { client } = await connectDaemon();
        const res = await client.stream('POST', '/images/push', {
          query: { ref, tlsVerify: flags.tlsVerify === false ? '0' : undefined },
        });
        const renderer = new ProgressRenderer(process.stdout, Boolean(process.stdout.isTTY));
        await consumeProgress(res, (e) => {
          if (!flags.quiet) renderer.render(e);
        });
        return 0;
      }),
    );
  program
    .command('login')
    .description('Log in to a registry (credentials are kept in the state root, ROOT/auth.json, mode 0600)')
    .argument('[server]', 'host[:port] (default docker.io)')
    .option('-u, --username <user>', 'user name')
    .option('-p, --password <password>', 'password (prefer --password-stdin)')
    .option('--password-stdin', 'read the password from stdin')
    .option('--tls-verify [bool]', tlsHelp, parseBool)
    .addHelpText('after', '\nExample:\n  echo "$PASS" | abode login -u me --password-stdin 127.0.0.1:5000')
    .action(
      (
        server: string | undefined,
        flags: { username?: string; password?: string; passwordStdin?: boolean; tlsVerify?: boolean },
      ) =>
        run(async () => {
          let password = flags.password;
          if (password !== undefined && flags.passwordStdin)
            throw new InvalidArgumentError('--password and --password-stdin are mutually exclusive');
          if (password !== undefined)
            process.stderr.write(
              'WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n',
            );
          if (flags.passwordStdin) {
            if (!flags.username)
              throw new InvalidArgumentError('Must provide --username with --password-stdin');
            password = (await readStdin()).replace(/\r?\n$/, '');
          }
          const username = flags.username ?? (await prompt('Username: ', false));
          password ??= await prompt('Password: ', true);
          const { client } = await connectDaemon();
          const answer = await client.call<{ Status: string }>('POST', '/auth', {
            body: { server: server ?? '', username, password, tlsVerify: flags.tlsVerify },
          });
          process.stdout.write(`${answer.Status}\n`);
          return 0;
        }),
    );
  program
    .command('logout')
    .addHelpText('after', '\nExample:\n  abode logout 127.0.0.1:5000')
    .description('Forget the credentials of a registry')
    .argument('[server]', 'host[:port] (default docker.io)')
    .action((server: string | undefined) =>
      run(async () => {
        const { client } = await connectDaemon();
        const answer = await client.call<{ Status: string }>('POST', '/auth/logout', {
          body: { server: server ?? '' },
        });
        process.stdout.write(`${answer.Status}\n`);
        return 0;
      }),
    );
}
