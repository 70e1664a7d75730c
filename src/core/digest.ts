/** Content digests (`sha256:<64 hex>`): parsing, validation and computing. */
import { createHash, type Hash } from 'node:crypto';
import { InvalidArgumentError } from './errors.js';

/** A validated content digest, e.g. `sha256:e3b0c442…`. */
export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
const HEX_RE = /^[a-f0-9]{64}$/;

/** True when `s` is a well-formed sha256 digest. */
export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

/** Returns `s` as a Digest or throws InvalidArgumentError. */
export function parseDigest(s: string): Digest {
  if (!isDigest(s)) {
    const algo = s.includes(':') ? s.slice(0, s.indexOf(':')) : '';
    if (algo && algo !== 'sha256' && /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$/.test(algo)) {
      throw new InvalidArgumentError(`unsupported digest algorithm: ${algo}`, { digest: s });
    }
    throw new InvalidArgumentError(`invalid digest format: ${s}`, { digest: s });
  }
  return s;
}

/** True when `s` is 64 lowercase hex characters (a digest without its algorithm). */
export function isDigestHex(s: string): boolean {
  return HEX_RE.test(s);
}

/** The hex part of a digest. */
export function digestHex(d: Digest): string {
  return d.slice('sha256:'.length);
}

/** The sha256 digest of a buffer or string (strings as UTF-8). */
export function sha256Digest(data: Buffer | Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Incremental sha256 digester: feed chunks, then read the digest once. */
export class Digester {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  private result: Digest | undefined;

  update(chunk: Buffer | Uint8Array): void {
    if (this.result) throw new Error('digester already finished');
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }
  get size(): number {
    return this.bytes;
  }
  digest(): Digest {
    this.result ??= `sha256:${this.hash.digest('hex')}`;
    return this.result;
  }
}

/** Short form of an image ID as docker shows it: the first 12 hex characters. */
export function shortId(d: string): string {
  return (d.startsWith('sha256:') ? d.slice(7) : d).slice(0, 12);
}
