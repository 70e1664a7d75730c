import { open, stat } from 'node:fs/promises';
import { parseCriLine, type LogEntry } from '../core/cri-log.js';

export { parseCriLine, type LogEntry };

export interface LogOptions {
  follow: boolean;
  /** Lines from the end, or undefined for all. */
  tail?: number;
  stdout: boolean;
  stderr: boolean;
  since?: number;
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
