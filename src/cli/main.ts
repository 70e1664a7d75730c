#!/usr/bin/env node
/** The abode CLI: a thin client of the daemon's API, with docker's commands, flags and exit codes. */
import { Command, CommanderError } from 'commander';
import { AbodeError } from '../core/errors.js';
import { setGlobalRoot } from './context.js';
import { addCreateFlags, createCommand, runCommand, startCommand } from './commands/run.js';
import {
  execCommand,
  inspectCommand,
  logsCommand,
  psCommand,
  registerLifecycle,
  statsCommand,
  topCommand,
} from './commands/instances.js';
import { registerResources } from './commands/resources.js';
import { collect, type RunFlags } from './options.js';

/** As docker: run/create exit 125/126/127 on errors, exec 126/127 when its command fails, others exit 1. */
function report(error: unknown, command: string): number {
  if (error instanceof AbodeError) {
    const runLike = command === 'run' || command === 'create';
    const execFailed = command === 'exec' && error.exitCode !== 125;
    process.stderr.write(`abode: ${runLike || execFailed ? '' : 'Error: '}${error.message}\n`);
    return runLike || execFailed ? error.exitCode : 1;
  }
  process.stderr.write(`abode: ${(error as Error)?.message ?? String(error)}\n`);
  return command === 'run' ? 125 : 1;
}

function main(argv: string[]): void {
  const program = new Command('abode');
  let commandName = '';
  program
    .description('Run OCI images as containers (shared kernel) or microVMs (own kernel).')
    .version('0.1.0', '--version')
    .option('--root <dir>', 'state root (default /var/lib/abode, or $ABODE_ROOT)')
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .hook('preAction', (_this, action) => {
      commandName = action.name();
      setGlobalRoot(program.opts().root as string | undefined);
    });
  const run = (work: () => Promise<number>) => {
    work().then(
      (code) => exit(code),
      (error) => exit(report(error, commandName)),
    );
  };

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
  registerLifecycle(program, run);
  registerResources(program, run);

  try {
    program.parse(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) exit(0);
      // Bad flags and arguments: docker exits 125 for run/create, 1 otherwise.
      const first = argv.slice(2).find((a) => !a.startsWith('-'));
      exit(first === 'run' || first === 'create' ? 125 : error.code === 'commander.unknownCommand' ? 1 : 125);
      return;
    }
    throw error;
  }
}

function exit(code: number): void {
  process.exitCode = code;
  // Let stdout drain before leaving.
  if (process.stdout.writableLength === 0) process.exit(code);
  else process.stdout.once('drain', () => process.exit(code));
}

main(process.argv);
