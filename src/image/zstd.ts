/** zstd through Debian's `zstd` binary in a pipe (Node 20 has no zstd): decompress layers, compress for tests and saves. */
import { spawn } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import { InvalidArgumentError, UnavailableError } from '../core/errors.js';

/** The zstd frame magic number (little endian 0xFD2FB528). */
export function isZstd(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528;
}

function pipeThrough(input: NodeJS.ReadableStream, args: string[], what: string): Readable {
  const out = new PassThrough();
  const child = spawn('zstd', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let failed = false;
  const fail = (err: Error) => {
    if (failed) return;
    failed = true;
    child.kill('SIGKILL');
    if (!out.destroyed) out.destroy(err);
  };
  child.on('error', (err: NodeJS.ErrnoException) =>
    fail(
      err.code === 'ENOENT'
        ? new UnavailableError('zstd not found: install the zstd package (apt-get install zstd)')
        : err,
    ),
  );
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.on('error', () => undefined); // EPIPE when zstd stops early; its exit status says why
  input.on('error', (err: Error) => fail(err));
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  let exited: number | null | undefined;
  let stdoutDone = false;
  const settle = () => {
    if (exited === undefined || !stdoutDone || failed) return;
    if (exited === 0) out.end();
    else
      fail(new InvalidArgumentError(`invalid zstd stream (${what}): ${stderr.trim() || `exit ${exited}`}`));
  };
  child.stdout.on('end', () => {
    stdoutDone = true;
    settle();
  });
  child.on('exit', (code) => {
    exited = code;
    settle();
  });
  out.on('close', () => {
    if (exited === undefined) child.kill('SIGKILL');
  });
  return out;
}

/** Decompresses a zstd stream through `zstd -dc`; a corrupt stream errors the output. */
export function zstdDecompress(input: NodeJS.ReadableStream): Readable {
  return pipeThrough(input, ['-d', '-c', '-q'], 'decompress');
}

/** Compresses a stream through `zstd -c` (level 3). */
export function zstdCompress(input: NodeJS.ReadableStream, level = 3): Readable {
  return pipeThrough(input, [`-${level}`, '-c', '-q'], 'compress');
}
