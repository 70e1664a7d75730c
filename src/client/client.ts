import { request, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
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

  private sendOnce(
    method: string,
    path: string,
    options: RequestOptions,
    upgrade = false,
  ): Promise<IncomingMessage | Socket> {
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
    const res = (await this.send(method, path, options)) as IncomingMessage;
    const text = await readAll(res);
    if ((res.headers['content-type'] ?? '').includes('json')) return JSON.parse(text) as T;
    return text as T;
  }

  /** A streaming response (logs). */
  async stream(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    return (await this.send(method, path, options)) as IncomingMessage;
  }

  /** An upgraded connection carrying stdcopy frames out and stdin in. */
  async upgrade(method: string, path: string, options: RequestOptions = {}): Promise<Socket> {
    return (await this.send(method, path, options, true)) as Socket;
  }
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
