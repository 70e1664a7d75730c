/**
 * Registry routes: pull and push stream their progress as JSON lines (`application/x-ndjson`), one
 * ProgressEvent per line, then `{"result": …}` or `{"error": {"code", "message"}}` (the status is
 * already 200 by then, as docker's API does); login and logout are plain JSON calls.
 *
 *   POST /images/pull?ref=NAME[:TAG|@DIGEST]&platform=os/arch&tlsVerify=0   → lines, result: ImageRecord
 *   POST /images/push?ref=NAME[:TAG]&tlsVerify=0                            → lines, result: {tag, digest, size}
 *   POST /auth         {server, username, password, tlsVerify?}              → {Status: "Login Succeeded", Server}
 *   POST /auth/logout  {server}                                               → {Status, Server}
 */
import type { ImageService, ProgressEvent } from '../core/image.js';
import { AbodeError, InternalError, InvalidArgumentError } from '../core/errors.js';
import { parseNormalizedTagged } from '../core/reference.js';
import type { RequestContext, Router } from './router.js';

/** tlsVerify: absent means verify; `0`, `false`, `no` turn it off. */
function tlsVerify(query: URLSearchParams): boolean | undefined {
  const v = query.get('tlsVerify');
  if (v === null || v === '') return undefined;
  return !['0', 'false', 'no'].includes(v.toLowerCase());
}

/** Streams progress lines, then the result or the error, as JSON lines. */
async function streamLines<T>(
  ctx: RequestContext,
  work: (progress: (e: ProgressEvent) => void) => Promise<T>,
): Promise<undefined> {
  const res = ctx.res;
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
  res.flushHeaders();
  const line = (value: unknown) => {
    if (!res.destroyed && !res.writableEnded) res.write(`${JSON.stringify(value)}\n`);
  };
  try {
    line({ result: await work(line) });
  } catch (error) {
    const e =
      error instanceof AbodeError ? error : new InternalError((error as Error)?.message ?? String(error));
    line({ error: { code: e.code, message: e.message, details: e.details } });
  }
  res.end();
  return undefined;
}

function refOf(ctx: RequestContext): string {
  const ref = ctx.query.get('ref');
  if (!ref) throw new InvalidArgumentError('ref is required');
  parseNormalizedTagged(ref); // a malformed reference fails before the stream starts
  return ref;
}

export function registerRegistryRoutes(r: Router, images: ImageService): void {
  r.on('POST', '/images/pull', async (ctx) => {
    const ref = refOf(ctx);
    const platform = ctx.query.get('platform') || undefined;
    return streamLines(ctx, (progress) =>
      images.pull(ref, { ...(platform ? { platform } : {}), tlsVerify: tlsVerify(ctx.query) }, progress),
    );
  });
  r.on('POST', '/images/push', async (ctx) => {
    const ref = refOf(ctx);
    return streamLines(ctx, (progress) => images.push(ref, { tlsVerify: tlsVerify(ctx.query) }, progress));
  });
  r.on('POST', '/auth', async (ctx) => {
    const body = (await ctx.body()) as {
      server?: string;
      username?: string;
      password?: string;
      tlsVerify?: boolean;
    };
    const server = await images.login(body.server ?? '', {
      username: body.username ?? '',
      password: body.password ?? '',
      ...(body.tlsVerify !== undefined ? { tlsVerify: body.tlsVerify } : {}),
    });
    return { Status: 'Login Succeeded', Server: server };
  });
  r.on('POST', '/auth/logout', async (ctx) => {
    const body = (await ctx.body()) as { server?: string };
    const server = await images.logout(body.server ?? '');
    return { Status: `Removing login credentials for ${server}`, Server: server };
  });
}
