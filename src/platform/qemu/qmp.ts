/**
 * A small QMP client (QEMU's JSON monitor protocol on the instance's qmp.sock): connects, leaves the
 * capabilities negotiation, runs commands in order, ignores asynchronous events, and gives up after
 * a timeout (QEMU serves one QMP client at a time).
 */
import { createConnection } from 'node:net';
import { InternalError } from '../../core/errors.js';

export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

/** Runs the commands over one connection; returns their results in order (throws on a QMP error). */
export function qmpRun(socket: string, commands: QmpCommand[], timeoutMs = 2000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    const queue: QmpCommand[] = [{ execute: 'qmp_capabilities' }, ...commands];
    const results: unknown[] = [];
    let greeted = false;
    let buffer = '';
    const finish = (error?: Error) => {
      clearTimeout(timer);
      conn.destroy();
      if (error) reject(error);
      else resolve(results.slice(1));
    };
    const timer = setTimeout(
      () => finish(new InternalError(`QMP ${socket}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const next = () => {
      if (results.length === queue.length) return finish();
      conn.write(`${JSON.stringify(queue[results.length])}\n`);
    };
    conn.setEncoding('utf8');
    conn.on('error', (error) => finish(new InternalError(`QMP ${socket}: ${error.message}`)));
    conn.on('close', () => finish(new InternalError(`QMP ${socket}: closed before answering`)));
    conn.on('data', (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        let message: {
          QMP?: unknown;
          event?: string;
          return?: unknown;
          error?: { class: string; desc: string };
        };
        try {
          message = JSON.parse(line) as typeof message;
        } catch {
          return finish(new InternalError(`QMP ${socket}: not JSON: ${line.slice(0, 100)}`));
        }
        if (message.event !== undefined) continue;
        if (!greeted) {
          if (message.QMP === undefined) return finish(new InternalError(`QMP ${socket}: no greeting`));
          greeted = true;
          next();
          continue;
        }
        if (message.error)
          return finish(
            new InternalError(
              `QMP ${queue[results.length]!.execute}: ${message.error.class}: ${message.error.desc}`,
            ),
          );
        results.push(message.return);
        next();
      }
    });
  });
}

/** QEMU's run state (query-status): "running", "paused", "shutdown", "guest-panicked", "internal-error", … */
export async function qmpStatus(socket: string, timeoutMs?: number): Promise<string> {
  const [status] = await qmpRun(socket, [{ execute: 'query-status' }], timeoutMs);
  return (status as { status: string }).status;
}

/** The guest's RAM as the balloon sees it (query-balloon's `actual`), in bytes. */
export async function qmpGuestMemory(socket: string, timeoutMs?: number): Promise<number> {
  const [balloon] = await qmpRun(socket, [{ execute: 'query-balloon' }], timeoutMs);
  return (balloon as { actual: number }).actual;
}
