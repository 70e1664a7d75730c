import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Engine, ExecOptions } from '../engine/engine.js';
import type { ImageService } from '../core/image.js';
import type { CreateOptions } from '../core/instance.js';
import { createOptions } from '../core/instance.js';
import type { ProcessTable } from '../core/runtime.js';
import { AbodeError, InternalError, InvalidArgumentError } from '../core/errors.js';
import { Router, readJson, sendError, sendJson, type RequestContext } from './router.js';
import { inspectView, summaryView } from './views.js';
import { registerArchiveRoutes } from './archive.js';
import { registerRegistryRoutes } from './registry.js';
import { registerBuildRoutes } from './build.js';
import { registerImageRoutes } from './images.js';

export interface ApiServices {
  engine: Engine;
  images: ImageService;
  info(): Promise<Record<string, unknown>>;
  version(): Record<string, unknown>;
  /** ps-style rows for host pids. */
  processTable(pids: number[]): Promise<ProcessTable>;
  /** Host CPU time in ns and CPU count, for cpu percentages. */
  hostCpu(): Promise<{ totalNs: number; onlineCpus: number }>;
  hostMemory: number;
  instanceFiles(id: string): { logPath: string; hostname: string };
}

const flag = (query: URLSearchParams, key: string) => ['1', 'true', 'yes'].includes(query.get(key) ?? '');

/** Frames one chunk in docker's stdcopy format (stream 1 stdout, 2 stderr). */
export function frame(stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/** Builds the routes: each handler only translates HTTP into one engine call. */
export function buildRouter(s: ApiServices): Router {
  const r = new Router();
  const e = s.engine;
  r.on('GET', '/_ping', () => 'OK');
  r.on('GET', '/version', () => s.version());
  r.on('GET', '/info', () => s.info());
  registerArchiveRoutes(r, e);
  registerRegistryRoutes(r, s.images);
  registerBuildRoutes(r, e);
  registerImageRoutes(r, s.images, e);

  r.on('POST', '/instances', async (ctx) => {
    const body = (await ctx.body()) as Partial<CreateOptions>;
    if (typeof body.image !== 'string' || body.image === '')
      throw new InvalidArgumentError('image is required');
    const record = await e.create(createOptions({ ...body, image: body.image }));
    return { Id: record.id, Name: record.name };
  });
  r.on('GET', '/instances', (ctx) => e.list(flag(ctx.query, 'all')).map(summaryView));
  r.on('POST', '/instances/prune', async () => ({ ContainersDeleted: await e.prune() }));
  r.on('GET', '/instances/:id', (ctx) => {
    const record = e.get(ctx.params.id);
    return inspectView(record, s.instanceFiles(record.id));
  });
  r.on('POST', '/instances/:id/start', async (ctx) => {
    if (!ctx.upgrade) {
      await e.start(ctx.params.id);
      return { started: true };
    }
    // Attached start: attach to the prepared process before it runs, so no output is missed.
    let stream: Duplex | undefined;
    await e.start(ctx.params.id, async (record) => {
      stream = await e.attach(record.id, { stdin: flag(ctx.query, 'stdin') });
    });
    if (!stream) throw new InternalError('attach failed');
    const id = ctx.params.id;
    splice(ctx.upgrade(), stream, () => settled(e, id));
    return undefined;
  });
  r.on('POST', '/instances/:id/attach', async (ctx) => {
    if (!ctx.upgrade) throw new InvalidArgumentError('attach needs an Upgrade request');
    const stream = await e.attach(ctx.params.id, { stdin: flag(ctx.query, 'stdin') });
    const id = ctx.params.id;
    splice(ctx.upgrade(), stream, () => settled(e, id));
    return undefined;
  });
  r.on('POST', '/instances/:id/stop', async (ctx) => {
    const t = ctx.query.get('t');
    await e.stop(ctx.params.id, t !== null ? Number(t) : undefined);
    return { stopped: true };
  });
  r.on('POST', '/instances/:id/restart', async (ctx) => {
    const t = ctx.query.get('t');
    await e.restart(ctx.params.id, t !== null ? Number(t) : undefined);
    return { restarted: true };
  });
  r.on('POST', '/instances/:id/kill', async (ctx) => {
    await e.kill(ctx.params.id, ctx.query.get('signal') ?? 'KILL');
    return { killed: true };
  });
  r.on('DELETE', '/instances/:id', async (ctx) => ({
    Id: await e.remove(ctx.params.id, { force: flag(ctx.query, 'force'), volumes: flag(ctx.query, 'v') }),
  }));
  r.on('POST', '/instances/:id/wait', async (ctx) => {
    const record = await e.wait(ctx.params.id);
    return {
      StatusCode: record.state.exitCode,
      OOMKilled: record.state.oomKilled,
      Error: record.state.error,
    };
  });
  r.on('POST', '/instances/:id/rename', (ctx) => {
    e.rename(ctx.params.id, ctx.query.get('name') ?? '');
    return { renamed: true };
  });
  r.on('POST', '/instances/:id/resize', async (ctx) => {
    await e.resize(ctx.params.id, Number(ctx.query.get('h')), Number(ctx.query.get('w')));
    return { resized: true };
  });
  r.on('GET', '/instances/:id/logs', async (ctx) => {
    const q = ctx.query;
    const tail = q.get('tail');
    const entries = e.logs(ctx.params.id, {
      follow: flag(q, 'follow'),
      tail: tail === null || tail === 'all' ? undefined : Number(tail),
      stdout: q.get('stdout') !== '0',
      stderr: q.get('stderr') !== '0',
    });
    const timestamps = flag(q, 'timestamps');
    ctx.res.writeHead(200, { 'content-type': 'application/vnd.docker.multiplexed-stream' });
    ctx.res.on('close', () => void entries.return(undefined));
    for await (const entry of entries) {
      const text = timestamps ? `${entry.time} ${entry.text}` : entry.text;
      if (!ctx.res.write(frame(entry.stream === 'stdout' ? 1 : 2, Buffer.from(text)))) {
        await new Promise((resolve) => ctx.res.once('drain', resolve));
      }
      if (ctx.res.destroyed) break;
    }
    ctx.res.end();
    return undefined;
  });
  r.on('GET', '/instances/:id/stats', async (ctx) => {
    const first = await e.stats(ctx.params.id);
    const cpu1 = await s.hostCpu();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const second = await e.stats(ctx.params.id);
    const cpu2 = await s.hostCpu();
    const record = second.record;
    const stats = second.stats;
    const used = stats && first.stats ? stats.cpu.usageNs - first.stats.cpu.usageNs : 0;
    const total = cpu2.totalNs - cpu1.totalNs;
    return {
      Id: record.id,
      Name: record.name,
      Running: stats !== undefined,
      CpuPercent: total > 0 ? (used / total) * cpu2.onlineCpus * 100 : 0,
      MemoryUsage: stats?.memory.usage ?? 0,
      MemoryLimit: stats?.memory.limit ?? s.hostMemory,
      Pids: stats?.pids.current ?? 0,
      PidsLimit: stats?.pids.limit ?? null,
    };
  });
  r.on(
    'GET',
    '/instances/:id/top',
    async (ctx) => (await e.top(ctx.params.id)) ?? s.processTable(await e.pids(ctx.params.id)),
  );

  r.on('POST', '/instances/:id/exec', async (ctx) => {
    const body = (await ctx.body()) as Partial<ExecOptions>;
    const id = await e.execCreate(ctx.params.id, {
      cmd: body.cmd ?? [],
      env: body.env ?? [],
      user: body.user,
      workdir: body.workdir,
      tty: body.tty ?? false,
      openStdin: body.openStdin ?? false,
    });
    return { Id: id };
  });
  r.on('POST', '/exec/:id/start', async (ctx) => {
    const session = e.exec(ctx.params.id);
    if (!ctx.upgrade) {
      await e.execStart(session.id);
      return { started: true };
    }
    const stream = await session.handle.attach({ stdin: session.options.openStdin });
    await e.execStart(session.id);
    splice(ctx.upgrade(), stream);
    return undefined;
  });
  r.on('POST', '/exec/:id/resize', async (ctx) => {
    await e.exec(ctx.params.id).handle.resize(Number(ctx.query.get('h')), Number(ctx.query.get('w')));
    return { resized: true };
  });
  r.on('GET', '/exec/:id', (ctx) => {
    const session = e.exec(ctx.params.id);
    return { Id: session.id, Running: session.running, ExitCode: session.exitCode ?? null };
  });

  r.on('GET', '/images', async () => s.images.list());
  r.on('GET', '/images/:ref', async (ctx) => s.images.resolve(ctx.params.ref));
  r.on('POST', '/images/import', async (ctx) => {
    const ref = ctx.query.get('ref') || undefined;
    const changes = ctx.query.getAll('change');
    const message = ctx.query.get('message') ?? undefined;
    return s.images.importRootfs(ctx.req, ref, { changes, ...(message ? { message } : {}) });
  });
  r.on('POST', '/images/:ref/tag', async (ctx) => {
    await s.images.tag(ctx.params.ref, ctx.query.get('target') ?? '');
    return { tagged: true };
  });
  r.on('DELETE', '/images/:ref', async (ctx) => {
    const used = new Set(e.list(true).map((i) => i.imageId));
    return s.images.remove(ctx.params.ref, { force: flag(ctx.query, 'force'), inUse: (id) => used.has(id) });
  });

  r.on('GET', '/volumes', () => e.volumes.list());
  r.on('POST', '/volumes', async (ctx) => {
    const body = (await ctx.body()) as { Name?: string; Labels?: Record<string, string> };
    const name = body.Name || randomVolumeName();
    return e.volumes.create(name, body.Labels ?? {});
  });
  r.on('POST', '/volumes/prune', async () => ({ VolumesDeleted: await e.volumes.prune() }));
  r.on('GET', '/volumes/:name', (ctx) => e.volumes.get(ctx.params.name));
  r.on('DELETE', '/volumes/:name', async (ctx) => {
    await e.volumes.remove(ctx.params.name, flag(ctx.query, 'force'));
    return { removed: true };
  });
  return r;
}

function randomVolumeName(): string {
  return [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Resolves once the engine has recorded the instance's exit (and removed it, with --rm). */
async function settled(e: Engine, id: string): Promise<void> {
  try {
    await e.wait(id);
  } catch {
    // already removed
  }
}

/**
 * Joins a client connection and an instance stream both ways, passing half-closes on. With `beforeEnd`, the
 * client's stream ends only once it resolves, so a client that saw the exit frame needs no wait call.
 */
function splice(client: Duplex, stream: Duplex, beforeEnd?: () => Promise<void>): void {
  client.pipe(stream);
  if (beforeEnd) {
    stream.pipe(client, { end: false });
    stream.once('end', () => void beforeEnd().finally(() => client.end()));
  } else stream.pipe(client);
  const close = () => {
    client.destroy();
    stream.destroy();
  };
  client.on('error', close);
  stream.on('error', close);
  client.on('close', () => stream.destroy());
}

/** Serves the API on a unix socket (or any listen target). */
export function createApiServer(services: ApiServices, onError: (error: unknown) => void): Server {
  const router = buildRouter(services);
  const handle = async (
    req: IncomingMessage,
    res: ServerResponse | undefined,
    socket?: Duplex,
    head?: Buffer,
  ) => {
    const url = new URL(req.url ?? '/', 'http://abode');
    const pathname = url.pathname.replace(/^\/v[\d.]+\//, '/');
    const found = router.match(req.method ?? 'GET', pathname);
    const fail = (error: unknown) => {
      if (!(error instanceof AbodeError)) onError(error);
      if (res) return sendError(res, error);
      const abode =
        error instanceof AbodeError ? error : new InternalError(String((error as Error)?.message));
      const body = JSON.stringify({ code: abode.code, message: abode.message, details: abode.details });
      socket?.end(
        `HTTP/1.1 ${abode.httpStatus} Error\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    };
    if (!found) {
      return fail(new AbodeError('not_found', `page not found: ${req.method} ${url.pathname}`));
    }
    const ctx: RequestContext = {
      req,
      res: res as ServerResponse,
      params: found.params,
      query: url.searchParams,
      body: () => readJson(req),
      ...(socket
        ? {
            upgrade: () => {
              socket.write(
                'HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n',
              );
              if (head && head.length > 0) socket.unshift(head);
              return socket;
            },
          }
        : {}),
    };
    try {
      const result = await found.handler(ctx);
      if (res && !res.headersSent && result !== undefined) {
        if (typeof result === 'string') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(result);
        } else sendJson(res, 200, result);
      }
    } catch (error) {
      fail(error);
    }
  };
  const server = createServer((req, res) => void handle(req, res));
  server.on('upgrade', (req, socket, head) => void handle(req, undefined, socket, head));
  return server;
}
