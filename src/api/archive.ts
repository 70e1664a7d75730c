/** docker cp's routes: HEAD (stat), GET (tar out) and PUT (tar in) on /instances/:id/archive. */
import { pipeline } from 'node:stream/promises';
import type { Engine } from '../engine/engine.js';
import { exportPath, importArchive, statPath, type PathStat } from '../engine/archive.js';
import { AbodeError, InvalidArgumentError } from '../core/errors.js';
import type { RequestContext, Router } from './router.js';

/** The header carrying the stat of the path, base64 JSON as docker's X-Docker-Container-Path-Stat. */
export const PATH_STAT_HEADER = 'x-abode-path-stat';

const flag = (query: URLSearchParams, key: string) => ['1', 'true', 'yes'].includes(query.get(key) ?? '');

function pathOf(ctx: RequestContext): string {
  const path = ctx.query.get('path');
  if (!path) throw new InvalidArgumentError('path is required');
  return path;
}

const encodeStat = (stat: PathStat) => Buffer.from(JSON.stringify(stat)).toString('base64');

export function registerArchiveRoutes(r: Router, e: Engine): void {
  r.on('HEAD', '/instances/:id/archive', async (ctx) => {
    let stat: PathStat;
    try {
      stat = await statPath(e, e.get(ctx.params.id), pathOf(ctx), { follow: flag(ctx.query, 'follow') });
    } catch (error) {
      // A HEAD answer has no body: the error travels in a header as well.
      if (!(error instanceof AbodeError)) throw error;
      const body = JSON.stringify({ code: error.code, message: error.message, details: error.details });
      ctx.res.writeHead(error.httpStatus, {
        'content-type': 'application/json',
        'x-abode-error': Buffer.from(body).toString('base64'),
      });
      ctx.res.end();
      return undefined;
    }
    ctx.res.writeHead(200, { [PATH_STAT_HEADER]: encodeStat(stat), 'content-type': 'application/x-tar' });
    ctx.res.end();
    return undefined;
  });
  r.on('GET', '/instances/:id/archive', async (ctx) => {
    await exportPath(
      e,
      e.get(ctx.params.id),
      pathOf(ctx),
      { follow: flag(ctx.query, 'follow') },
      async (stat, tar) => {
        ctx.res.writeHead(200, { [PATH_STAT_HEADER]: encodeStat(stat), 'content-type': 'application/x-tar' });
        await pipeline(tar, ctx.res).catch((error: unknown) => {
          // The client went away: nothing to answer.
          if (!ctx.res.destroyed) throw error;
        });
      },
    );
    return undefined;
  });
  r.on('PUT', '/instances/:id/archive', async (ctx) => {
    await importArchive(e, e.get(ctx.params.id), pathOf(ctx), ctx.req, {
      noOverwriteDirNonDir: flag(ctx.query, 'noOverwriteDirNonDir'),
      preserveOwner: flag(ctx.query, 'copyUIDGID'),
    });
    return { copied: true };
  });
}
