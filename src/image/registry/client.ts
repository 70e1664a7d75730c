/**
 * A client of one registry per the OCI distribution spec: `/v2/` ping, anonymous / basic / Docker
 * bearer-token auth, manifests, blobs (with Range), uploads (monolithic and chunked, cross-repo mount).
 *
 * Transport: https, verified. When `tlsVerify` is false, or the registry is on localhost / 127.0.0.0/8 /
 * ::1 (docker's default insecure registries), https without verification is tried first and plain
 * http after it.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { isDigest, type Digest } from '../../core/digest.js';
import { AbodeError, UnavailableError, type ErrorCode } from '../../core/errors.js';
import { DEFAULT_DOMAIN } from '../../core/reference.js';
import { basicAuth, parseChallenge, type Challenge, type Credentials } from './auth.js';
import { discard, readBody, send, TransportError, type Body } from './http.js';

export interface ClientOptions {
  credentials?: Credentials;
  /** false: accept any certificate and allow plain http. */
  tlsVerify?: boolean;
  /** Token scopes, e.g. `repository:library/busybox:pull`. */
  scopes: string[];
  /** Request idle timeout in ms (default 60 s). */
  timeoutMs?: number;
}

/** An error answer of the registry, with its HTTP status and OCI error codes. */
export class RegistryError extends AbodeError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly status: number,
    readonly registryCodes: string[] = [],
  ) {
    super(code, message, { status, registryCodes });
  }
}

/** The host that serves a registry domain (`docker.io` is served by `registry-1.docker.io`). */
export function registryHost(domain: string): string {
  return domain === DEFAULT_DOMAIN ? 'registry-1.docker.io' : domain;
}

/** docker's default insecure registries: loopback names and addresses. */
export function isLocalRegistry(host: string): boolean {
  const name = host.replace(/:\d+$/, '');
  return name === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(name) || name === '[::1]';
}

/** The transport chosen for a registry, cached per host and TLS policy. */
const endpoints = new Map<string, { base: URL; insecure: boolean; expires: number }>();

function describeBody(status: number, statusText: string, body: Buffer): { text: string; codes: string[] } {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    if (Array.isArray(doc.errors) && doc.errors.length > 0) {
      const codes = doc.errors.map((e) => String(e.code ?? ''));
      const text = doc.errors
        .map((e) => [e.code, e.message].filter(Boolean).join(': ').toLowerCase())
        .join('; ');
      return { text: text.replace(/^(\w+): \1\b/, '$1'), codes };
    }
  } catch {
    // not JSON
  }
  const first = body.toString('utf8').split('\n')[0]!.trim().slice(0, 200);
  return { text: `HTTP ${status} ${statusText}${first ? ` (${first})` : ''}`.trim(), codes: [] };
}

export class RegistryClient {
  private authorization: string | undefined;
  private challenge: Challenge | undefined;
  private readonly scopes: Set<string>;

  private constructor(
    readonly domain: string,
    readonly base: URL,
    private readonly insecure: boolean,
    private readonly opts: ClientOptions,
  ) {
    this.scopes = new Set(opts.scopes);
  }

  /** Pings `/v2/`, picks the transport and authenticates for the scopes. */
  static async open(domain: string, opts: ClientOptions): Promise<RegistryClient> {
    const host = registryHost(domain);
    const mayBeInsecure = opts.tlsVerify === false || isLocalRegistry(host);
    const key = `${host}|${mayBeInsecure}`;
    const cached = endpoints.get(key);
    const tries: { base: URL; insecure: boolean }[] =
      cached && cached.expires > Date.now()
        ? [cached]
        : [
            { base: new URL(`https://${host}/`), insecure: mayBeInsecure },
            ...(mayBeInsecure ? [{ base: new URL(`http://${host}/`), insecure: true }] : []),
          ];
    let lastError: unknown;
    for (const t of tries) {
      let res: IncomingMessage;
      try {
        res = await send({
          method: 'GET',
          url: new URL('/v2/', t.base),
          insecure: t.insecure,
          timeoutMs: Math.min(opts.timeoutMs ?? 60_000, 15_000),
        });
      } catch (err) {
        lastError = err;
        continue;
      }
      endpoints.set(key, { ...t, expires: Date.now() + 5 * 60_000 });
      const client = new RegistryClient(domain, t.base, t.insecure, opts);
      const body = await readBody(res, 1 << 20).catch(() => Buffer.alloc(0));
      if (res.statusCode === 401) {
        client.challenge = parseChallenge(res.headers['www-authenticate']);
        if (!client.challenge) {
          throw new RegistryError(
            'invalid_argument',
            `registry ${domain}: unsupported authentication challenge: ${res.headers['www-authenticate'] ?? '(none)'}`,
            401,
          );
        }
        await client.authorize();
      } else if (res.statusCode !== 200) {
        const d = describeBody(res.statusCode ?? 0, res.statusMessage ?? '', body);
        throw new RegistryError(
          (res.statusCode ?? 500) >= 500 ? 'unavailable' : 'invalid_argument',
          `registry ${domain}: ${t.base.href}v2/ is not a registry (OCI distribution) endpoint: ${d.text}`,
          res.statusCode ?? 0,
          d.codes,
        );
      }
      return client;
    }
    const reason = lastError instanceof Error ? lastError.message : String(lastError);
    throw new UnavailableError(`registry ${domain}: cannot connect: ${reason}`);
  }

  /** Whether the registry asked for credentials at all. */
  get requiresAuth(): boolean {
    return this.challenge !== undefined;
  }

  /** Builds the Authorization header for the challenge: basic credentials, or a bearer token from the token service. */
  private async authorize(): Promise<void> {
    const c = this.challenge;
    if (!c) return;
    const creds = this.opts.credentials;
    if (c.scheme === 'basic') {
      this.authorization = creds ? basicAuth(creds) : undefined;
      return;
    }
    const realm = c.params.realm;
    if (!realm)
      throw new RegistryError(
        'invalid_argument',
        `registry ${this.domain}: bearer challenge without realm`,
        401,
      );
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError(
        'invalid_argument',
        `registry ${this.domain}: invalid token realm ${realm}`,
        401,
      );
    }
    if (c.params.service) url.searchParams.set('service', c.params.service);
    for (const s of this.scopes) url.searchParams.append('scope', s);
    let res: IncomingMessage;
    try {
      res = await send({
        method: 'GET',
        url,
        headers: creds ? { authorization: basicAuth(creds) } : {},
        insecure: this.insecure,
        timeoutMs: this.opts.timeoutMs,
      });
    } catch (err) {
      throw new UnavailableError(
        `registry ${this.domain}: token service ${url.origin}${url.pathname}: ${(err as Error).message}`,
      );
    }
    const body = await readBody(res, 1 << 20);
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new RegistryError(
        'invalid_argument',
        `registry ${this.domain}: unauthorized: ${creds ? 'incorrect username or password' : 'authentication required'}`,
        res.statusCode,
      );
    }
    if (res.statusCode !== 200) {
      const d = describeBody(res.statusCode ?? 0, res.statusMessage ?? '', body);
      throw new RegistryError(
        'unavailable',
        `registry ${this.domain}: token service ${url.origin}${url.pathname}: ${d.text}`,
        res.statusCode ?? 0,
      );
    }
    let token: string | undefined;
    try {
      const doc = JSON.parse(body.toString('utf8')) as { token?: string; access_token?: string };
      token = doc.token || doc.access_token;
    } catch {
      // fall through
    }
    if (!token)
      throw new RegistryError('unavailable', `registry ${this.domain}: the token service sent no token`, 0);
    this.authorization = `Bearer ${token}`;
  }

  /** Checks the credentials: a request that needs them must succeed (for login). */
  async verifyLogin(): Promise<void> {
    if (!this.challenge) return; // an open registry accepts anything, as docker says "Login Succeeded"
    if (!this.authorization) {
      throw new RegistryError(
        'invalid_argument',
        `registry ${this.domain}: unauthorized: authentication required`,
        401,
      );
    }
    const res = await send({
      method: 'GET',
      url: new URL('/v2/', this.base),
      headers: { authorization: this.authorization },
      insecure: this.insecure,
      timeoutMs: this.opts.timeoutMs,
    });
    discard(res);
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new RegistryError(
        'invalid_argument',
        `registry ${this.domain}: unauthorized: incorrect username or password`,
        res.statusCode,
      );
    }
    if (res.statusCode !== 200) {
      throw new RegistryError(
        'unavailable',
        `registry ${this.domain}: /v2/ answered ${res.statusCode}`,
        res.statusCode ?? 0,
      );
    }
  }

  private resolveUrl(target: string | URL): URL {
    return target instanceof URL ? target : new URL(target, this.base);
  }

  /**
   * Sends a request, answering one 401 by re-authenticating and following redirects (without the
   * Authorization header when they leave the registry); a status outside `ok` becomes a RegistryError
   * whose message starts with `what`.
   */
  async request(
    method: string,
    target: string | URL,
    o: { what: string; ok: number[]; headers?: Record<string, string>; body?: Body; signal?: AbortSignal },
  ): Promise<IncomingMessage> {
    let url = this.resolveUrl(target);
    let retried = false;
    for (let hop = 0; hop < 8; hop++) {
      const sameOrigin = url.origin === this.base.origin;
      const headers = { ...(o.headers ?? {}) };
      if (sameOrigin && this.authorization) headers.authorization = this.authorization;
      let res: IncomingMessage;
      try {
        res = await send({
          method,
          url,
          headers,
          body: o.body,
          insecure: this.insecure,
          signal: o.signal,
          timeoutMs: this.opts.timeoutMs,
        });
      } catch (err) {
        if (err instanceof TransportError) {
          throw new TransportError(`${o.what}: ${err.message}`, err.cause);
        }
        throw err;
      }
      const status = res.statusCode ?? 0;
      if (status === 401 && sameOrigin && !retried) {
        retried = true;
        const challenge = parseChallenge(res.headers['www-authenticate']);
        discard(res);
        if (challenge) {
          this.challenge = challenge;
          if (challenge.params.scope) for (const s of challenge.params.scope.split(' ')) this.scopes.add(s);
          await this.authorize();
          continue;
        }
        throw this.fail(o.what, res, Buffer.alloc(0));
      }
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location && !o.ok.includes(status)) {
        discard(res);
        url = new URL(res.headers.location, url);
        if (status === 303) method = 'GET';
        continue;
      }
      if (o.ok.includes(status)) return res;
      const body = await readBody(res, 1 << 20).catch(() => Buffer.alloc(0));
      throw this.fail(o.what, res, body);
    }
    throw new RegistryError('unavailable', `${o.what}: too many redirects`, 0);
  }

  private fail(what: string, res: IncomingMessage, body: Buffer): RegistryError {
    const status = res.statusCode ?? 0;
    const d = describeBody(status, res.statusMessage ?? '', body);
    if (status === 401 || status === 403) {
      const creds = this.opts.credentials;
      const why =
        status === 401 ? (creds ? 'unauthorized' : 'unauthorized: authentication required') : 'denied';
      return new RegistryError('invalid_argument', `${what}: ${why} (${d.text})`, status, d.codes);
    }
    if (status === 404)
      return new RegistryError('not_found', `${what}: not found (${d.text})`, status, d.codes);
    if (status >= 500)
      return new RegistryError(
        'unavailable',
        `${what}: the registry answered ${status} ${res.statusMessage ?? ''}`.trimEnd() +
          (d.codes.length ? ` (${d.text})` : ''),
        status,
        d.codes,
      );
    return new RegistryError('invalid_argument', `${what}: ${d.text}`, status, d.codes);
  }

  // ---- manifests ----

  /** GETs a manifest or index by tag or digest; a digest reference is verified by the caller. */
  async getManifest(
    repo: string,
    reference: string,
    accept: string[],
    what: string,
  ): Promise<{ bytes: Buffer; mediaType: string | undefined }> {
    const res = await this.request('GET', `/v2/${repo}/manifests/${reference}`, {
      what,
      ok: [200],
      headers: { accept: accept.join(', ') },
    });
    let bytes: Buffer;
    try {
      bytes = await readBody(res, 4 << 20);
    } catch (err) {
      throw new TransportError(`${what}: ${(err as Error).message}`, err);
    }
    const ct = res.headers['content-type']?.split(';')[0]?.trim();
    return { bytes, mediaType: ct || undefined };
  }

  /** PUTs a manifest under a tag or digest; returns the registry's digest header if it sent one. */
  async putManifest(
    repo: string,
    reference: string,
    bytes: Buffer,
    mediaType: string,
    what: string,
  ): Promise<string | undefined> {
    const res = await this.request('PUT', `/v2/${repo}/manifests/${reference}`, {
      what,
      ok: [200, 201, 202],
      headers: { 'content-type': mediaType },
      body: bytes,
    });
    discard(res);
    const d = res.headers['docker-content-digest'];
    return typeof d === 'string' ? d : undefined;
  }

  // ---- blobs ----

  /** The size of a blob in a repository, or undefined when the registry does not have it there. */
  async headBlob(repo: string, digest: Digest, what: string): Promise<number | undefined> {
    const res = await this.request('HEAD', `/v2/${repo}/blobs/${digest}`, { what, ok: [200, 404] });
    discard(res);
    if (res.statusCode === 404) return undefined;
    return Number(res.headers['content-length'] ?? -1);
  }

  /** GETs a blob from `offset` on (Range); the answer is 200 (whole blob) or 206 (the rest). */
  async getBlob(
    repo: string,
    digest: Digest,
    offset: number,
    what: string,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    return this.request('GET', `/v2/${repo}/blobs/${digest}`, {
      what,
      ok: offset > 0 ? [200, 206] : [200],
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      signal,
    });
  }

  private location(res: IncomingMessage, what: string): URL {
    const loc = res.headers.location;
    if (!loc) throw new RegistryError('unavailable', `${what}: the registry sent no upload location`, 0);
    return new URL(loc, this.base);
  }

  /** Starts an upload, or mounts `mount.digest` from repository `mount.from`; `{mounted: true}` when the mount worked. */
  async startUpload(
    repo: string,
    what: string,
    mount?: { digest: Digest; from: string },
  ): Promise<{ mounted: true } | { mounted: false; location: URL }> {
    const q = mount
      ? `?mount=${encodeURIComponent(mount.digest)}&from=${encodeURIComponent(mount.from)}`
      : '';
    const res = await this.request('POST', `/v2/${repo}/blobs/uploads/${q}`, {
      what,
      ok: [201, 202],
      headers: { 'content-length': '0' },
    });
    discard(res);
    if (res.statusCode === 201) return { mounted: true };
    return { mounted: false, location: this.location(res, what) };
  }

  /** Sends one chunk (bytes start..end inclusive) of an upload; returns the next location. */
  async patchChunk(location: URL, chunk: Buffer, start: number, what: string): Promise<URL> {
    const res = await this.request('PATCH', location, {
      what,
      ok: [202, 204],
      headers: {
        'content-type': 'application/octet-stream',
        'content-range': `${start}-${start + chunk.length - 1}`,
        'content-length': String(chunk.length),
      },
      body: chunk,
    });
    discard(res);
    return this.location(res, what);
  }

  /** Finishes an upload with `?digest=`, sending the whole blob (monolithic) or nothing (after chunks). */
  async finishUpload(
    location: URL,
    digest: Digest,
    what: string,
    body?: { size: number; open: () => Readable },
  ): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const res = await this.request('PUT', url, {
      what,
      ok: [201, 204],
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(body?.size ?? 0),
      },
      body: body ? body.open : Buffer.alloc(0),
    });
    discard(res);
  }
}

/** Verifies that a string the registry sent is a sha256 digest. */
export function checkedDigest(s: string | undefined): Digest | undefined {
  return s && isDigest(s) ? s : undefined;
}
