import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AbodeError, InternalError, InvalidArgumentError } from '../core/errors.js';

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The parsed JSON body (empty object when there is none). */
  body: () => Promise<unknown>;
  /** For Upgrade requests: the raw socket, after the 101 answer is sent by `upgrade()`. */
  upgrade?: () => Duplex;
}

export type Handler = (ctx: RequestContext) => Promise<unknown> | unknown;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
}

/** A small router: paths like /instances/:id/start, JSON in and out, errors with stable codes. */
export class Router {
  private routes: Route[] = [];

  on(method: string, path: string, handler: Handler): this {
    const keys: string[] = [];
    const pattern = new RegExp(
      '^' +
        path.replace(/:([a-zA-Z]+)/g, (_, key: string) => {
          keys.push(key);
          return '([^/]+)';
        }) +
        '$',
    );
    this.routes.push({ method, pattern, keys, handler });
    return this;
  }

  match(method: string, pathname: string): { handler: Handler; params: Record<string, string> } | undefined {
    for (const route of this.routes) {
      if (route.method !== method) continue;
      const found = route.pattern.exec(pathname);
      if (!found) continue;
      const params: Record<string, string> = {};
      route.keys.forEach((key, i) => (params[key] = decodeURIComponent(found[i + 1])));
      return { handler: route.handler, params };
    }
    return undefined;
  }
}

export function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new InvalidArgumentError('the request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

/** Writes an error as {code, message} with the status its category maps to. */
export function sendError(res: ServerResponse, error: unknown): void {
  const abode =
    error instanceof AbodeError ? error : new InternalError((error as Error)?.message ?? String(error));
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(abode.httpStatus, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ code: abode.code, message: abode.message, details: abode.details }));
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
