import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { AbodeError, UnavailableError, errorFromCode } from '../core/errors.js';

export interface RequestOptions {
  query?: Record<string, string | number | boolean | string[] | undefined>;
  body?: unknown;
  /** A raw body (e.g. a tar for import) instead of JSON. */
  bodyStream?: Readable;
}

function queryString(query: RequestOptions['query']): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === false) continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, v));
    else params.set(key, value === true ? '1' : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** The daemon did not answer on its socket (not running, or the socket is stale). */
export class DaemonUnreachableError extends UnavailableError {}

/** A typed client of abode's REST API over the daemon's unix socket. */
export class Client {
  /** startDaemon: called once when nothing answers on the socket, before the request is tried again. */
  constructor(
    readonly socketPath: string,
    private readonly startDaemon?: () => Promise<void>,
  ) {}

  private async send(
    method: string,
    path: string,
    options: RequestOptions,
    upgrade = false,
  ): Promise<IncomingMessage | Socket> {
    try {
      return await this.sendOnce(method, path, options, upgrade);
    } catch (error) {
      // Only a refused connection is safe to retry: the daemon never saw the request.
      const refused = error instanceof DaemonUnreachableError && error.details?.errno !== 'ECONNRESET';
      if (!refused || !this.startDaemon || options.bodyStream) throw error;
      await this.startDaemon();
      return this.sendOnce(method, path, options, upgrade);
    }
  }

  private async sendOnce(
    method: string,
    path: string,
    options: RequestOptions,
    upgrade = false,
  ): Promise<IncomingMessage | Socket> {
    // node:http is loaded only for streamed bodies and responses; JSON calls and upgrades go over raw sockets.
    const { request } = await import('node:http');
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      let payload: string | undefined;
      if (options.body !== undefined) {
        payload = JSON.stringify(options.body);
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(payload));
      }
      if (upgrade) Object.assign(headers, { connection: 'Upgrade', upgrade: 'tcp' });
      const req = request({
        socketPath: this.socketPath,
        method,
        path: path + queryString(options.query),
        headers,
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (['ENOENT', 'ECONNREFUSED', 'ECONNRESET'].includes(error.code ?? '')) {
          reject(
            new DaemonUnreachableError(
              `cannot connect to the abode daemon at ${this.socketPath}: ${error.code}`,
              { errno: error.code },
            ),
          );
        } else reject(error);
      });
      req.on('upgrade', (_res, socket, head) => {
        if (head.length > 0) socket.unshift(head);
        resolve(socket);
      });
      req.on('response', (res) => {
        if ((res.statusCode ?? 500) >= 400) {
          readAll(res).then((text) => reject(toError(res.statusCode ?? 500, text)), reject);
        } else resolve(res);
      });
      if (options.bodyStream) options.bodyStream.pipe(req);
      else req.end(payload);
    });
  }

  /** A JSON call; API errors come back as AbodeError with their stable code. */
  async call<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    if (options.bodyStream) {
      const res = (await this.send(method, path, options)) as IncomingMessage;
      const text = await readAll(res);
      if ((res.headers['content-type'] ?? '').includes('json')) return JSON.parse(text) as T;
      return text as T;
    }
    const { head, body } = await this.retrying(() => this.exchange(method, path, options, false));
    const text = decodeBody(head, body).toString('utf8');
    if (head.status >= 400) throw toError(head.status, text);
    if ((head.headers['content-type'] ?? '').includes('json')) return JSON.parse(text) as T;
    return text as T;
  }

  /** Retries once after starting the daemon when the connection was refused. */
  private async retrying<R>(attempt: () => Promise<R>): Promise<R> {
    try {
      return await attempt();
    } catch (error) {
      const refused = error instanceof DaemonUnreachableError && error.details?.errno !== 'ECONNRESET';
      if (!refused || !this.startDaemon) throw error;
      await this.startDaemon();
      return attempt();
    }
  }

  /**
   * One HTTP/1.1 exchange on a fresh connection. For a JSON call it reads the whole response; for an
   * upgrade it resolves with the socket once the 101 answer is read.
   */
  private exchange(
    method: string,
    path: string,
    options: RequestOptions,
    upgrade: boolean,
  ): Promise<{ head: ResponseHead; body: Buffer; socket: Socket }> {
    return new Promise((resolve, reject) => {
      const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
      const lines = [
        `${method} ${path}${queryString(options.query)} HTTP/1.1`,
        'Host: abode',
        upgrade ? 'Connection: Upgrade' : 'Connection: close',
        ...(upgrade ? ['Upgrade: tcp'] : []),
        ...(payload ? ['Content-Type: application/json'] : []),
        `Content-Length: ${payload?.length ?? 0}`,
      ];
      const socket = connect(this.socketPath);
      let received = Buffer.alloc(0);
      let head: ResponseHead | undefined;
      let settled = false;
      const finish = (error?: Error) => {
        if (settled) return;
        settled = true;
        socket.removeAllListeners('data');
        if (error) {
          socket.destroy();
          reject(error);
        } else resolve({ head: head as ResponseHead, body: received, socket });
      };
      socket.on('connect', () => {
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
        if (payload) socket.write(payload);
      });
      socket.on('data', (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        if (head) return;
        const end = received.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = parseHead(received.subarray(0, end).toString('latin1'));
        received = received.subarray(end + 4);
        if (upgrade && head.status === 101) {
          // Hand the stream over paused, with what came after the head put back: its reader resumes it.
          socket.removeAllListeners('data');
          socket.pause();
          if (received.length > 0) socket.unshift(received);
          received = Buffer.alloc(0);
          finish();
        }
      });
      socket.on('end', () => {
        if (!head)
          return finish(
            new DaemonUnreachableError('the abode daemon closed the connection', { errno: 'ECONNRESET' }),
          );
        if (upgrade && head.status !== 101) {
          const text = decodeBody(head, received).toString('utf8');
          return finish(toError(head.status, text));
        }
        finish();
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (['ENOENT', 'ECONNREFUSED', 'ECONNRESET'].includes(error.code ?? '')) {
          finish(
            new DaemonUnreachableError(
              `cannot connect to the abode daemon at ${this.socketPath}: ${error.code}`,
              {
                errno: error.code,
              },
            ),
          );
        } else finish(error);
      });
    });
  }

  /** A streaming response (logs). */
  async stream(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    return (await this.send(method, path, options)) as IncomingMessage;
  }

  /** An upgraded connection carrying stdcopy frames out and stdin in; paused until its reader resumes it. */
  async upgrade(method: string, path: string, options: RequestOptions = {}): Promise<Socket> {
    return (await this.retrying(() => this.exchange(method, path, options, true))).socket;
  }
}

interface ResponseHead {
  status: number;
  headers: Record<string, string>;
}

function parseHead(text: string): ResponseHead {
  const [statusLine, ...lines] = text.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers };
}

/** The body of a complete response: as sent, or de-chunked. */
function decodeBody(head: ResponseHead, body: Buffer): Buffer {
  if (!/chunked/i.test(head.headers['transfer-encoding'] ?? '')) {
    const length = Number(head.headers['content-length']);
    return Number.isFinite(length) ? body.subarray(0, length) : body;
  }
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset < body.length) {
    const lineEnd = body.indexOf('\r\n', offset);
    if (lineEnd < 0) break;
    const size = parseInt(body.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!size) break;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

function toError(status: number, text: string): AbodeError {
  try {
    const body = JSON.parse(text) as { code: string; message: string; details?: Record<string, unknown> };
    return errorFromCode(body.code, body.message, body.details);
  } catch {
    return errorFromCode(status === 404 ? 'not_found' : 'internal', text || `HTTP ${status}`);
  }
}
