/**
 * Registry credentials and challenges.
 *
 * Credentials live in the daemon's state root, `ROOT/auth.json`, in docker's `config.json` format
 * (`{"auths": {"host:port": {"auth": base64("user:password")}}}`, docker.io under
 * `https://index.docker.io/v1/`), written atomically with mode 0600.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import { DEFAULT_DOMAIN } from '../../core/reference.js';
import { InvalidArgumentError } from '../../core/errors.js';

export interface Credentials {
  username: string;
  password: string;
}

/** docker's key for Docker Hub in config.json. */
export const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

/** The config.json key of a registry: `host[:port]`, or docker's Hub URL. */
export function serverKey(server: string): string {
  let s = server.trim();
  s = s.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (s === '' || s === DEFAULT_DOMAIN || s === 'index.docker.io' || s === 'registry-1.docker.io')
    return DOCKER_HUB_KEY;
  if (!/^[a-zA-Z0-9.-]+(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$/.test(s))
    throw new InvalidArgumentError(`invalid registry server: ${server}`);
  return s.toLowerCase();
}

interface ConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
  [key: string]: unknown;
}

/** Stored credentials, one file, updates serialized in-process. */
export class CredentialStore {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly file: string) {}

  private async read(): Promise<ConfigFile> {
    try {
      const doc = JSON.parse(await fs.readFile(this.file, 'utf8')) as ConfigFile;
      return typeof doc === 'object' && doc !== null ? doc : {};
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
  }

  /** The credentials for a domain (`127.0.0.1:5000`, `docker.io`), if any. */
  async get(domain: string): Promise<Credentials | undefined> {
    const doc = await this.read();
    const key = serverKey(domain);
    const entry =
      doc.auths?.[key] ??
      Object.entries(doc.auths ?? {}).find(([k]) => {
        try {
          return serverKey(k) === key;
        } catch {
          return false;
        }
      })?.[1];
    if (!entry) return undefined;
    if (entry.auth) {
      const text = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = text.indexOf(':');
      if (colon < 0) return undefined;
      return { username: text.slice(0, colon), password: text.slice(colon + 1) };
    }
    if (entry.username !== undefined && entry.password !== undefined)
      return { username: entry.username, password: entry.password };
    return undefined;
  }

  /** Stores credentials for a server key. */
  set(key: string, creds: Credentials): Promise<void> {
    return this.update((doc) => {
      doc.auths ??= {};
      doc.auths[key] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
      return true;
    });
  }

  /** Removes a server key's credentials; false when there were none. */
  async remove(key: string): Promise<boolean> {
    let removed = false;
    await this.update((doc) => {
      if (doc.auths && key in doc.auths) {
        delete doc.auths[key];
        removed = true;
      }
      return removed;
    });
    return removed;
  }

  private update(fn: (doc: ConfigFile) => boolean): Promise<void> {
    const run = async () => {
      const doc = await this.read();
      if (!fn(doc)) return;
      await fs.mkdir(dirname(this.file), { recursive: true });
      const tmp = `${this.file}.${randomBytes(6).toString('hex')}.tmp`;
      const fh = await fs.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(`${JSON.stringify(doc, null, '\t')}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, this.file);
      await fs.chmod(this.file, 0o600);
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }
}

/** One parsed `WWW-Authenticate` challenge. */
export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; undefined for other schemes. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme, params };
}

/** The Basic Authorization header value. */
export function basicAuth(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
}
