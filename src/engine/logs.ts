import { open, stat } from 'node:fs/promises';

export interface LogEntry {
  stream: 'stdout' | 'stderr';
  time: string;
  text: string;
}

export interface LogOptions {
  follow: boolean;
  /** Lines from the end, or undefined for all. */
  tail?: number;
  stdout: boolean;
  stderr: boolean;
  since?: number;
}

/** Parses one CRI log line: "<RFC3339Nano> <stream> <F|P> <text>". Partial (P) lines carry no newline. */
export function parseCriLine(line: string): LogEntry | undefined {
  const first = line.indexOf(' ');
  const second = line.indexOf(' ', first + 1);
  const third = line.indexOf(' ', second + 1);
  if (first < 0 || second < 0 || third < 0) return undefined;
  const stream = line.slice(first + 1, second);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = line.slice(second + 1, third);
  const text = line.slice(third + 1) + (tag === 'P' ? '' : '\n');
  return { stream, time: line.slice(0, first), text };
}

/** Reads a CRI log file; with follow, keeps reading until isDone() says the writer has finished. */
export async function* readLog(
  path: string,
  options: LogOptions,
  isDone: () => boolean,
): AsyncGenerator<LogEntry> {
  const wanted = (entry: LogEntry) =>
    (entry.stream === 'stdout' && options.stdout) || (entry.stream === 'stderr' && options.stderr);
  let position = 0;
  let pending = '';
  let first = true;
  while (true) {
    const done = isDone();
    let size = 0;
    try {
      size = (await stat(path)).size;
    } catch {
      size = 0;
    }
    if (size > position) {
      const handle = await open(path, 'r');
      try {
        const buffer = Buffer.alloc(size - position);
        await handle.read(buffer, 0, buffer.length, position);
        position = size;
        pending += buffer.toString('utf8');
      } finally {
        await handle.close();
      }
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      let entries = lines.map(parseCriLine).filter((e): e is LogEntry => e !== undefined && wanted(e));
      if (first && options.tail !== undefined)
        entries = entries.slice(Math.max(0, entries.length - options.tail));
      first = false;
      yield* entries;
    } else if (first && options.tail !== undefined) {
      first = false;
    }
    if (!options.follow || done) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
