/** The CRI log format that monitors write (container.log, an exec's log): parsing, shared by engine and runtimes. */

export interface LogEntry {
  stream: 'stdout' | 'stderr';
  time: string;
  text: string;
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

/** The text of one stream of a CRI log, lines and partial lines joined back. */
export function criLogText(log: string, stream: 'stdout' | 'stderr'): string {
  return log
    .split('\n')
    .map(parseCriLine)
    .filter((e): e is LogEntry => e !== undefined && e.stream === stream)
    .map((e) => e.text)
    .join('');
}
