import type { Command } from '../args.js';
import { connectDaemon } from '../context.js';
import { collect, toCreateOptions, type RunFlags } from '../options.js';
import { relay } from '../attach.js';
import { AbodeError } from '../../core/errors.js';
import type { Client } from '../../client/client.js';

/** The flags run and create share (docker's names). */
export function addCreateFlags(command: Command): Command {
  return command
    .option('--name <name>', 'assign a name to the instance')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect)
    .option('--env-file <file>', 'read environment variables from a file (repeatable)', collect)
    .option('-w, --workdir <dir>', 'working directory inside the instance')
    .option('-u, --user <user[:group]>', 'user name or uid, with an optional group or gid')
    .option('--entrypoint <cmd>', 'override the image entrypoint ("" resets it)')
    .option('-v, --volume <src:dst[:ro]>', 'bind a host path or named volume (repeatable)', collect)
    .option('--tmpfs <path[:opts]>', 'mount a tmpfs (repeatable)', collect)
    .option('-m, --memory <bytes>', 'memory limit (e.g. 512m, 1g)')
    .option('--memory-swap <bytes>', 'memory plus swap limit (-1 unlimited)')
    .option('--cpus <number>', 'number of CPUs (e.g. 1.5)')
    .option('-c, --cpu-shares <shares>', 'relative CPU weight')
    .option('--pids-limit <n>', 'maximum number of processes')
    .option('-h, --hostname <name>', 'instance host name')
    .option('--read-only', 'mount the root file system read-only')
    .option('--isolation <kind>', 'container (shared kernel) or vm (own kernel)', 'container')
    .option(
      '--kernel <path>',
      "with --isolation vm: boot this kernel image (bzImage or vmlinux) instead of Debian's",
    )
    .option(
      '--runtime <name>',
      "runtime for a container: container (abode's own) or oci:<binary> such as oci:runc",
    )
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .option('--privileged', 'give all capabilities and no seccomp or masked paths')
    .option('--cap-add <cap>', 'add a Linux capability (repeatable)', collect)
    .option('--cap-drop <cap>', 'drop a Linux capability (repeatable)', collect)
    .option(
      '--security-opt <opt>',
      'seccomp=unconfined|PROFILE.json, no-new-privileges[=false] (repeatable)',
      collect,
    )
    .option('--init', 'run a reaping init as PID 1 that forwards signals')
    .option('-l, --label <key=value>', 'set a label (repeatable)', collect)
    .option('--stop-signal <signal>', 'signal to stop the instance', undefined)
    .option('--stop-timeout <seconds>', 'seconds to wait before killing on stop')
    .option('--ulimit <name=soft[:hard]>', 'set a resource limit (repeatable)', collect)
    .option(
      '--network <mode>',
      "none (own namespace, loopback only; the default) or host (the host's network)",
    )
    .option('--pull <policy>', 'pull the image: missing (default), always or never', 'missing')
    .option('--platform <os/arch>', 'platform of the image to pull');
}

async function createInstance(
  client: Client,
  image: string,
  command: string[],
  flags: RunFlags,
): Promise<string> {
  const options = await toCreateOptions(image, command, flags);
  const pull = async () =>
    (await import('./registry.js')).pullImage(client, image, { platform: flags.platform }, process.stderr);
  if (flags.pull === 'always') await pull();
  try {
    return (await client.call<{ Id: string }>('POST', '/instances', { body: options })).Id;
  } catch (error) {
    // docker's behaviour: an image that is not here is pulled, then the instance is created.
    const missing =
      error instanceof AbodeError &&
      error.code === 'not_found' &&
      /^Unable to find image/.test(error.message);
    if (!missing || flags.pull === 'never' || flags.pull === 'always') throw error;
    process.stderr.write(`${error.message}\n`);
    await pull();
    return (await client.call<{ Id: string }>('POST', '/instances', { body: options })).Id;
  }
}

/** docker run: create, attach (unless -d), start; the exit code is the process's. */
export async function runCommand(image: string, command: string[], flags: RunFlags): Promise<number> {
  const { client } = await connectDaemon();
  const id = await createInstance(client, image, command, flags);
  if (flags.detach) {
    try {
      await client.call('POST', `/instances/${id}/start`);
    } catch (error) {
      await client.call('DELETE', `/instances/${id}`, { query: { force: true } }).catch(() => undefined);
      throw error;
    }
    process.stdout.write(`${id}\n`);
    return 0;
  }
  let socket;
  try {
    socket = await client.upgrade('POST', `/instances/${id}/start`, {
      query: { attach: true, stdin: flags.interactive ?? false },
    });
  } catch (error) {
    // A run that could not start leaves nothing behind.
    await client.call('DELETE', `/instances/${id}`, { query: { force: true } }).catch(() => undefined);
    throw error;
  }
  const streamed = await relay(client, socket, {
    tty: flags.tty ?? false,
    stdin: flags.interactive ?? false,
    resizePath: `/instances/${id}/resize`,
    killPath: `/instances/${id}/kill`,
  });
  // The daemon ends the stream only once the exit is recorded (and the instance removed, with --rm).
  if (streamed !== undefined) return streamed;
  const waited = await client
    .call<{ StatusCode: number }>('POST', `/instances/${id}/wait`)
    .then((r) => r.StatusCode)
    .catch((error: unknown) => {
      if (error instanceof AbodeError && error.code === 'not_found') return undefined;
      throw error;
    });
  return waited ?? 0;
}

export async function createCommand(image: string, command: string[], flags: RunFlags): Promise<number> {
  const { client } = await connectDaemon();
  process.stdout.write(`${await createInstance(client, image, command, flags)}\n`);
  return 0;
}

/** docker start [-a] [-i]: several instances; attached only for one. */
export async function startCommand(
  refs: string[],
  flags: { attach?: boolean; interactive?: boolean },
): Promise<number> {
  const { client } = await connectDaemon();
  if (flags.attach || flags.interactive) {
    const info = await client.call<{ Id: string; Config: { Tty: boolean } }>('GET', `/instances/${refs[0]}`);
    const socket = await client.upgrade('POST', `/instances/${info.Id}/start`, {
      query: { attach: true, stdin: flags.interactive ?? false },
    });
    const code = await relay(client, socket, {
      tty: info.Config.Tty,
      stdin: flags.interactive ?? false,
      resizePath: `/instances/${info.Id}/resize`,
      killPath: `/instances/${info.Id}/kill`,
    });
    if (code !== undefined) return code;
    return (await client.call<{ StatusCode: number }>('POST', `/instances/${info.Id}/wait`)).StatusCode;
  }
  return forEach(refs, async (ref) => {
    await client.call('POST', `/instances/${ref}/start`);
  });
}

/** Runs one call per reference as docker does: print each ref that worked, each error on stderr, exit 1 if any failed. */
export async function forEach(
  refs: string[],
  work: (ref: string) => Promise<string | void>,
): Promise<number> {
  let failed = false;
  for (const ref of refs) {
    try {
      const out = await work(ref);
      process.stdout.write(`${out ?? ref}\n`);
    } catch (error) {
      failed = true;
      process.stderr.write(`Error response from daemon: ${(error as Error).message}\n`);
    }
  }
  return failed ? 1 : 0;
}

type Run = (work: () => Promise<number>) => void;

/** run, create and start. */
export function registerRun(program: Command, run: Run): void {
  addCreateFlags(
    program
      .command('run')
      .description('Create and start an instance from an image')
      .argument('<image>')
      .argument('[command...]')
      .passThroughOptions()
      .option('-d, --detach', 'run in the background and print the id')
      .option('--rm', 'remove the instance when it exits'),
  )
    .addHelpText(
      'after',
      '\nExamples:\n  abode run --rm busybox echo hello\n  abode run -it busybox sh\n  abode run -d --name web --memory 64m busybox httpd -f\n  abode run --rm --isolation vm busybox uname -r',
    )
    .action((image: string, command: string[], flags: RunFlags) =>
      run(() => runCommand(image, command, flags)),
    );
  addCreateFlags(
    program
      .command('create')
      .description('Create an instance without starting it')
      .argument('<image>')
      .argument('[command...]')
      .passThroughOptions()
      .option('--rm', 'remove the instance when it exits'),
  )
    .addHelpText('after', '\nExample:\n  abode create --name job busybox echo hi && abode start -a job')
    .action((image: string, command: string[], flags: RunFlags) =>
      run(() => createCommand(image, command, flags)),
    );
  program
    .command('start')
    .description('Start created or stopped instances')
    .argument('<instance...>')
    .option('-a, --attach', 'attach stdout/stderr and forward signals')
    .option('-i, --interactive', 'attach stdin')
    .addHelpText('after', '\nExample:\n  abode start -a job')
    .action((refs: string[], flags) => run(() => startCommand(refs, flags)));
}
