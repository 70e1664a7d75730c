/**
 * The build route: the request body is the build context as a tar (the CLI has applied .dockerignore);
 * the answer streams JSON lines as the registry routes do: `{"stream": "Step 1/3 : FROM busybox\n"}`
 * for output, then `{"result": {id, tags}}` or `{"error": {code, message}}`.
 *
 *   POST /build?t=NAME&t=NAME2&dockerfile=PATH&buildarg=K=V&target=STAGE&nocache=1&platform=os/arch
 */
import type { Engine } from '../engine/engine.js';
import { Builder } from '../engine/build/builder.js';
import { AbodeError, InternalError, InvalidArgumentError } from '../core/errors.js';
import { parseNormalizedTagged } from '../core/reference.js';
import type { Router } from './router.js';

const flag = (query: URLSearchParams, key: string) => ['1', 'true', 'yes'].includes(query.get(key) ?? '');

export function registerBuildRoutes(r: Router, e: Engine): void {
  const builder = new Builder(e);
  r.on('POST', '/build', async (ctx) => {
    const q = ctx.query;
    const tags = q.getAll('t').filter(Boolean);
    for (const t of tags) {
      const parsed = parseNormalizedTagged(t); // a bad tag fails before the context is read
      if (parsed.digest) throw new InvalidArgumentError(`invalid tag ${t}: a tag cannot have a digest`);
    }
    const buildArgs: Record<string, string> = {};
    for (const a of q.getAll('buildarg')) {
      const eq = a.indexOf('=');
      if (eq <= 0) throw new InvalidArgumentError(`invalid build arg ${JSON.stringify(a)}: want KEY=VALUE`);
      buildArgs[a.slice(0, eq)] = a.slice(eq + 1);
    }
    const res = ctx.res;
    const aborter = new AbortController();
    let done = false;
    res.on('close', () => {
      if (!done) aborter.abort();
    });
    const line = (value: unknown) => {
      if (!res.destroyed && !res.writableEnded) res.write(`${JSON.stringify(value)}\n`);
    };
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
    res.flushHeaders();
    try {
      const result = await builder.build(
        ctx.req,
        {
          tags,
          ...(q.get('dockerfile') ? { dockerfile: q.get('dockerfile')! } : {}),
          buildArgs,
          ...(q.get('target') ? { target: q.get('target')! } : {}),
          noCache: flag(q, 'nocache'),
          ...(q.get('networkmode') === 'host' ? { network: 'host' as const } : {}),
          ...(q.get('platform') ? { platform: q.get('platform')! } : {}),
        },
        (text) => line({ stream: text }),
        aborter.signal,
      );
      line({ result });
    } catch (error) {
      const err =
        error instanceof AbodeError ? error : new InternalError((error as Error)?.message ?? String(error));
      line({ error: { code: err.code, message: err.message, details: err.details } });
    } finally {
      done = true;
    }
    res.end();
    return undefined;
  });
}
