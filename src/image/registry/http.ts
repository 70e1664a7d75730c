/** Plain HTTP(S) requests for the registry client: keep-alive agents, optional TLS verification, timeouts. */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';

const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 16 });
const insecureAgent = new HttpsAgent({ keepAlive: true, maxSockets: 16, rejectUnauthorized: false });

/** A request body: bytes, or a factory so the body can be sent again (after a 401 or a redirect). */
export type Body = Buffer | (() => Readable);

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: Body;
  /** Accept any certificate (https only). */
  insecure?: boolean;
  /** Idle time after which the request fails (default 60 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A transport failure (no HTTP answer, or the answer broke off): worth a retry. */
export class TransportError extends Error {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/** Sends one request and resolves with the response head; the body is left to the caller. */
export function send(r: HttpRequest): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const https = r.url.protocol === 'https:';
    const headers: Record<string, string> = { 'user-agent': 'abode/0.1', ...(r.headers ?? {}) };
    if (Buffer.isBuffer(r.body)) headers['content-length'] ??= String(r.body.length);
    const options = {
      method: r.method,
      headers,
      agent: https ? (r.insecure ? insecureAgent : httpsAgent) : httpAgent,
      signal: r.signal,
    };
    const req = (https ? httpsRequest : httpRequest)(r.url, options);
    const timeout = r.timeoutMs ?? 60_000;
    req.setTimeout(timeout, () => req.destroy(new TransportError(`no answer within ${timeout / 1000}s`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.name === 'AbortError') reject(err);
      else if (err instanceof TransportError) reject(err);
      else reject(new TransportError(err.code ? `${err.code}: ${err.message}` : err.message, err));
    });
    req.on('response', (res) => {
      res.setTimeout(timeout, () =>
        res.destroy(new TransportError(`the transfer stalled for ${timeout / 1000}s`)),
      );
      resolve(res);
    });
    if (r.body === undefined) req.end();
    else if (Buffer.isBuffer(r.body)) req.end(r.body);
    else {
      const body = r.body();
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    }
  });
}

/** Reads a whole (small) response body, failing beyond `limit` bytes. */
export async function readBody(res: IncomingMessage, limit = 8 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) {
        res.destroy();
        throw new TransportError(`the response is larger than ${limit} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof TransportError) throw err;
    throw new TransportError(`the response broke off: ${(err as Error).message}`, err);
  }
  return Buffer.concat(chunks);
}

/** Drains and drops a response body so the connection can be reused. */
export function discard(res: IncomingMessage): void {
  res.resume();
  res.on('error', () => undefined);
}
