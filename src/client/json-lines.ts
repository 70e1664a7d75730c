import type { IncomingMessage } from 'node:http';
import { InvalidArgumentError, errorFromCode } from '../core/errors.js';

/**
 * Reads one of the daemon's JSON-lines answers (pull, push, build): every line but the last goes to
 * `onLine`; a `{result}` line is the value returned, an `{error}` line is thrown as the AbodeError it names.
 */
export async function readJsonLines<T>(
  res: IncomingMessage,
  onLine: (message: Record<string, unknown>) => void,
): Promise<T> {
  let buffer = '';
  let result: { value: T } | undefined;
  const handle = (line: string) => {
    if (line.trim() === '') return;
    const msg = JSON.parse(line) as Record<string, unknown> & {
      result?: T;
      error?: { code: string; message: string; details?: Record<string, unknown> };
    };
    if (msg.error) throw errorFromCode(msg.error.code, msg.error.message, msg.error.details);
    if (msg.result !== undefined) result = { value: msg.result };
    else onLine(msg);
  };
  for await (const chunk of res as AsyncIterable<Buffer>) {
    buffer += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      handle(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
  }
  handle(buffer);
  if (!result) throw new InvalidArgumentError('the daemon ended the stream without a result');
  return result.value;
}
