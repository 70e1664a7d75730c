import type { Socket } from 'node:net';
import type { Client } from '../client/client.js';
import { FrameDecoder } from '../client/frames.js';

export interface AttachOptions {
  tty: boolean;
  stdin: boolean;
  /** Resize endpoint, e.g. /instances/ID/resize. */
  resizePath?: string;
  /** Kill endpoint for forwarding signals (docker's --sig-proxy), when not a tty. */
  killPath?: string;
}

/** Relays an attached stream to this terminal; resolves with the exit code the stream reports, if any. */
export function relay(client: Client, socket: Socket, options: AttachOptions): Promise<number | undefined> {
  return new Promise((resolveExit) => {
    let exitCode: number | undefined;
    const stdin = process.stdin;
    const rawMode = options.tty && options.stdin && stdin.isTTY;
    const decoder = new FrameDecoder((stream, payload) => {
      if (stream === 1) process.stdout.write(payload);
      else if (stream === 2) process.stderr.write(payload);
      else if (stream === 3) {
        try {
          exitCode = (JSON.parse(payload.toString('utf8')) as { exitCode: number }).exitCode;
        } catch {
          exitCode = undefined;
        }
      }
    });
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.resume();
    const resize = () => {
      if (!options.resizePath || !process.stdout.isTTY) return;
      const [cols, rows] = process.stdout.getWindowSize();
      client.call('POST', options.resizePath, { query: { h: rows, w: cols } }).catch(() => undefined);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];
    const forward = (signal: NodeJS.Signals) => {
      if (options.killPath)
        client.call('POST', options.killPath, { query: { signal } }).catch(() => undefined);
    };
    if (!options.tty) signals.forEach((s) => process.on(s, forward));
    if (options.tty) {
      resize();
      process.stdout.on('resize', resize);
    }
    if (rawMode) stdin.setRawMode(true);
    if (options.stdin) {
      stdin.on('data', (chunk) => socket.write(chunk));
      stdin.on('end', () => {
        if (!options.tty) socket.end();
      });
      stdin.resume();
    }
    const done = () => {
      if (rawMode) stdin.setRawMode(false);
      stdin.pause();
      stdin.removeAllListeners('data');
      process.stdout.off('resize', resize);
      signals.forEach((s) => process.off(s, forward));
      resolveExit(exitCode);
    };
    socket.on('end', done);
    socket.on('close', done);
    socket.on('error', done);
  });
}
