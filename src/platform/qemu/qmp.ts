/**
 * A small QMP client (QEMU's JSON monitor protocol on the instance's qmp.sock): connects, leaves the
 * capabilities negotiation, runs commands in order, ignores asynchronous events, and gives up after
 * a timeout (QEMU serves one QMP client at a time).
 */
import { existsSync } from 'node:fs';
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

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The machine's device state saved to `statePath`, its RAM left in its shared memory file (x-ignore-shared).
 * QEMU says "completed" before its writer has finished: the state is written under another name and
 * renamed when whole, and this returns once it is there.
 */
export async function qmpSnapshot(socket: string, statePath: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const partial = shellQuote(`${statePath}.partial`);
  await qmpRun(socket, [
    { execute: 'migrate-set-capabilities', arguments: { capabilities: [IGNORE_SHARED] } },
    {
      execute: 'migrate',
      arguments: { uri: `exec:cat > ${partial} && mv ${partial} ${shellQuote(statePath)}` },
    },
  ]);
  for (;;) {
    const [info] = await qmpRun(socket, [{ execute: 'query-migrate' }]);
    const { status, 'error-desc': why } = info as { status?: string; 'error-desc'?: string };
    if (status === 'completed' && existsSync(statePath)) return;
    if (status === 'failed' || status === 'cancelled')
      throw new InternalError(`QMP ${socket}: the snapshot ${status}${why ? `: ${why}` : ''}`);
    if (Date.now() > deadline)
      throw new InternalError(`QMP ${socket}: the snapshot took over ${timeoutMs} ms`);
    await pause(5);
  }
}

/**
 * Loads a snapshot's device state into a QEMU started with -incoming defer (its RAM maps the template's
 * memory file) and lets it run. Waits for QMP's socket, which QEMU makes as it starts.
 */
export async function qmpRestore(
  socket: string,
  statePath: string,
  opts: { timeoutMs?: number; giveUp?: () => boolean } = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  const stop = () => {
    if (opts.giveUp?.()) throw new InternalError(`QMP ${socket}: QEMU ended before its restore`);
  };
  const restore: QmpCommand[] = [
    { execute: 'migrate-set-capabilities', arguments: { capabilities: [IGNORE_SHARED] } },
    { execute: 'migrate-incoming', arguments: { uri: `exec:cat ${shellQuote(statePath)}` } },
  ];
  for (;;) {
    try {
      await qmpRun(socket, restore, Math.max(100, deadline - Date.now()));
      break;
    } catch (error) {
      const notYet = /ENOENT|ECONNREFUSED/.test((error as Error).message);
      if (!notYet || Date.now() > deadline) throw error;
      stop();
      await pause(2);
    }
  }
  for (;;) {
    stop();
    const status = await qmpStatus(socket);
    if (status === 'paused') await qmpRun(socket, [{ execute: 'cont' }]);
    if (status === 'running' || status === 'paused') return;
    if (status !== 'inmigrate') throw new InternalError(`QMP ${socket}: the restore ended ${status}`);
    if (Date.now() > deadline)
      throw new InternalError(`QMP ${socket}: the restore took over ${timeoutMs} ms`);
    await pause(2);
  }
}

const IGNORE_SHARED = { capability: 'x-ignore-shared', state: true };

function shellQuote(path: string): string {
  return `'${path.replace(/'/g, `'\\''`)}'`;
}
