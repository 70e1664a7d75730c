#!/usr/bin/env node
/** The abode CLI: a thin client of the daemon's API, with docker's commands, flags and exit codes. */
import { Command, CommandError } from './args.js';
import { AbodeError } from '../core/errors.js';
import { setGlobalRoot } from './context.js';

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

async function main(argv: string[]): Promise<void> {
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

  for (const register of await commandModules(argv)) register(program, run);

  try {
    program.parse(argv);
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    // Usage errors: docker exits 125 for run/create, 1 otherwise; --help and --version exit 0.
    const first = argv.slice(2).find((a) => !a.startsWith('-'));
    exit(error.exitCode === 0 ? 0 : first === 'run' || first === 'create' ? 125 : 1);
  }
}

function exit(code: number): void {
  process.exitCode = code;
  // Let stdout drain before leaving.
  if (process.stdout.writableLength === 0) process.exit(code);
  else process.stdout.once('drain', () => process.exit(code));
}

type Register = (program: Command, run: (work: () => Promise<number>) => void) => void;

/** Which module defines each command: only the one a command needs is loaded, for a fast start. */
const COMMANDS: [string[], () => Promise<Register>][] = [
  [['run', 'create', 'start'], async () => (await import('./commands/run.js')).registerRun],
  [
    [
      'ps',
      'inspect',
      'logs',
      'exec',
      'stats',
      'top',
      'stop',
      'kill',
      'restart',
      'rm',
      'rename',
      'wait',
      'container',
    ],
    async () => (await import('./commands/instances.js')).registerLifecycle,
  ],
  [
    ['volume', 'info', 'version', 'daemon'],
    async () => (await import('./commands/resources.js')).registerResources,
  ],
  [
    ['images', 'image', 'history', 'save', 'load', 'import', 'rmi', 'tag', 'system'],
    async () => (await import('./commands/images.js')).registerImages,
  ],
  [
    ['pull', 'push', 'login', 'logout'],
    async () => (await import('./commands/registry.js')).registerRegistry,
  ],
  [['cp'], async () => (await import('./commands/cp.js')).registerCp],
  [['build'], async () => (await import('./commands/build.js')).registerBuild],
];

/** The modules for the command in argv (all of them for help or an unknown command). */
async function commandModules(argv: string[]): Promise<Register[]> {
  let word: string | undefined;
  for (let i = 2; i < argv.length; i++) {
    if (argv[i] === '--root') i++;
    else if (!argv[i].startsWith('-')) {
      word = argv[i];
      break;
    }
  }
  const wanted = COMMANDS.filter(([names]) => word !== undefined && names.includes(word));
  return Promise.all((wanted.length > 0 ? wanted : COMMANDS).map(([, load]) => load()));
}

void main(process.argv);
