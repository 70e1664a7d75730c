import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command, CommandError } from './args.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function program() {
  const calls: unknown[][] = [];
  const root = new Command('abode').option('--root <dir>', 'state root').version('1.2.3');
  root
    .command('run')
    .argument('<image>')
    .argument('[command...]')
    .passThroughOptions()
    .option('-d, --detach', 'detach')
    .option('-i, --interactive', 'stdin')
    .option('-t, --tty', 'tty')
    .option('-e, --env <KEY=VALUE>', 'env', collect)
    .option('--isolation <kind>', 'kind', 'container')
    .action((...args: unknown[]) => calls.push(args.slice(0, -1)));
  root
    .command('ps')
    .option('--no-trunc', 'full ids')
    .option('--tls-verify [bool]', 'verify')
    .action((...args: unknown[]) => calls.push(args.slice(0, -1)));
  const volume = root.command('volume');
  volume
    .command('ls')
    .alias('list')
    .action((...args: unknown[]) => calls.push(['volume ls', ...args.slice(0, -1)]));
  return { root, calls };
}

test('docker-style run: combined short flags, repeatable values, options stop at the image', () => {
  const { root, calls } = program();
  root.parse([
    'node',
    'abode',
    '--root',
    '/r',
    'run',
    '-it',
    '-e',
    'A=1',
    '-eB=2',
    'busybox',
    'sh',
    '-c',
    'echo -x',
  ]);
  assert.deepEqual(calls[0], [
    'busybox',
    ['sh', '-c', 'echo -x'],
    { isolation: 'container', interactive: true, tty: true, env: ['A=1', 'B=2'] },
  ]);
  assert.equal(root.opts().root, '/r');
});

test('negated flags default to true; optional values; nested commands and aliases', () => {
  const { root, calls } = program();
  root.parse(['node', 'abode', 'ps', '--no-trunc', '--tls-verify=false']);
  assert.deepEqual(calls[0], [{ trunc: false, tlsVerify: 'false' }]);
  root.parse(['node', 'abode', 'ps']);
  assert.deepEqual(calls[1], [{ trunc: true }]);
  root.parse(['node', 'abode', 'volume', 'list']);
  assert.deepEqual(calls[2], ['volume ls', {}]);
});

test('usage errors name the problem and carry exit code 1; --help and --version exit 0', () => {
  const { root } = program();
  const stderr = process.stderr.write;
  const stdout = process.stdout.write;
  let written = '';
  process.stderr.write = process.stdout.write = ((chunk: string) => {
    written += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = (argv: string[]) => {
      try {
        root.parse(['node', 'abode', ...argv]);
        return -1;
      } catch (error) {
        assert.ok(error instanceof CommandError);
        return error.exitCode;
      }
    };
    assert.equal(code(['run']), 1);
    assert.match(written, /missing required argument 'image'/);
    assert.equal(code(['run', '--bogus', 'x']), 1);
    assert.match(written, /unknown option '--bogus'/);
    assert.equal(code(['nope']), 1);
    assert.match(written, /unknown command 'nope'/);
    assert.equal(code(['run', '-e']), 1);
    assert.match(written, /argument missing/);
    assert.equal(code(['run', '--help']), 0);
    assert.match(written, /Usage: abode run \[options\] <image> \[command\.\.\.\]/);
    assert.match(written, /-e, --env <KEY=VALUE>/);
    assert.equal(code(['--version']), 0);
    assert.match(written, /1\.2\.3/);
  } finally {
    process.stderr.write = stderr;
    process.stdout.write = stdout;
  }
});
