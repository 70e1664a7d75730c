/**
 * Deterministic test layers for the image benchmarks: gzip tars of directories, files (mostly small, a
 * few large; three quarters text from a made-up vocabulary, the rest noise with runs, so the whole
 * compresses about 2:1 like real images) and a few symlinks, from a seeded generator; and an OCI image
 * layout of several of them. The same seed always gives the same bytes (for a given zlib).
 */
import { createCipheriv, createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { Header } from 'tar';

const MTIME = new Date('2024-01-01T00:00:00Z');
const MiB = 1048576;

/** mulberry32: small, fast, good enough to pick sizes and words. */
class Rng {
  constructor(private state: number) {}
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** Log-uniform in [lo, hi]. */
  logInt(lo: number, hi: number): number {
    return Math.round(Math.exp(Math.log(lo) + this.next() * (Math.log(hi) - Math.log(lo))));
  }
}

export interface GeneratedLayer {
  /** The gzip file. */
  path: string;
  /** sha256 and size of the gzip blob. */
  digest: string;
  size: number;
  /** sha256 and size of the uncompressed tar. */
  diffId: string;
  tarSize: number;
  files: number;
}

/** Writes a gzip layer of about `mib` MiB of file contents to `path`. */
export async function generateLayer(path: string, mib: number, seed: number): Promise<GeneratedLayer> {
  const rng = new Rng(seed);
  const words: Buffer[] = [];
  const alphabet = 'abcdefghijklmnopqrstuvwxyz_0123456789';
  for (let i = 0; i < 4096; i++) {
    let w = '';
    for (let n = rng.int(2, 11); n > 0; n--) w += alphabet[rng.int(0, alphabet.length - 1)];
    words.push(Buffer.from(w));
  }
  const key = createHash('sha256').update(`abode-bench-${seed}`).digest();
  const noise = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));

  const text = (size: number): Buffer => {
    const buf = Buffer.allocUnsafe(size);
    let at = 0;
    while (at < size) {
      const w = words[Math.floor(rng.next() * rng.next() * 4096)]!; // skewed: some words are common
      at += w.copy(buf, at);
      if (at < size) buf[at++] = rng.next() < 0.08 ? 0x0a : 0x20;
    }
    return buf;
  };
  const binary = (size: number): Buffer => {
    const buf = noise.update(Buffer.alloc(size));
    // Runs of one byte over half of every 256 bytes: compressible, unlike pure noise.
    for (let at = 0; at + 256 <= size; at += 256) buf.fill(buf[at]!, at + 128, at + 256);
    return buf;
  };

  const tarHash = createHash('sha256');
  const blobHash = createHash('sha256');
  const gzip = createGzip({ level: 6 });
  const tmp = `${path}.tmp`;
  const out = createWriteStream(tmp);
  let size = 0;
  let tarSize = 0;
  gzip.on('data', (c: Buffer) => {
    blobHash.update(c);
    size += c.length;
  });
  gzip.pipe(out);
  const done = once(out, 'close');
  const write = async (chunk: Buffer) => {
    tarHash.update(chunk);
    tarSize += chunk.length;
    if (!gzip.write(chunk)) await once(gzip, 'drain');
  };
  const header = async (fields: {
    path: string;
    type: 'Directory' | 'File' | 'SymbolicLink';
    mode: number;
    size?: number;
    linkpath?: string;
  }) => {
    const h = new Header({ uid: 0, gid: 0, size: 0, mtime: MTIME, uname: '', gname: '', ...fields });
    h.encode();
    await write(h.block!);
  };

  let files = 0;
  let remaining = mib * MiB;
  const top = `data${seed}`;
  await header({ path: `${top}/`, type: 'Directory', mode: 0o755 });
  for (let d = 0; remaining > 0; d++) {
    const dir = `${top}/d${String(d).padStart(4, '0')}`;
    await header({ path: `${dir}/`, type: 'Directory', mode: 0o755 });
    for (let f = 0; f < 32 && remaining > 0; f++) {
      const p = rng.next();
      const n = Math.min(
        remaining,
        p < 0.7 ? rng.logInt(256, 8192) : p < 0.95 ? rng.logInt(8192, 131072) : rng.logInt(131072, 4 * MiB),
      );
      const isText = rng.next() < 0.75;
      const data = isText ? text(n) : binary(n);
      const name = `${dir}/f${f}.${isText ? 'txt' : 'bin'}`;
      await header({ path: name, type: 'File', mode: isText ? 0o644 : 0o755, size: n });
      await write(data);
      const pad = (512 - (n % 512)) % 512;
      if (pad) await write(Buffer.alloc(pad));
      remaining -= n;
      files++;
    }
    await header({ path: `${dir}/link`, type: 'SymbolicLink', mode: 0o777, linkpath: 'f0.txt' });
  }
  await write(Buffer.alloc(1024));
  gzip.end();
  await done;
  const digest = `sha256:${blobHash.digest('hex')}`;
  await rename(tmp, path);
  return { path, digest, size, diffId: `sha256:${tarHash.digest('hex')}`, tarSize, files };
}

export interface GeneratedImage {
  /** The OCI layout directory; the image is tagged `ref` in it (`oci:DIR:REF`). */
  dir: string;
  ref: string;
  layers: GeneratedLayer[];
}

/** An OCI image layout holding one image of layers of `layerMib` MiB each (bottom first). */
export async function generateImage(dir: string, ref: string, layerMib: number[]): Promise<GeneratedImage> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  // Two at a time: the text is made on the main thread, gzip runs in the thread pool.
  const layers: GeneratedLayer[] = [];
  for (let i = 0; i < layerMib.length; i += 2) {
    const batch = layerMib.slice(i, i + 2).map(async (mib, k) => {
      const l = await generateLayer(join(blobs, `layer-${i + k}`), mib, 1000 + i + k);
      const path = join(blobs, l.digest.slice(7));
      await rename(l.path, path);
      return { ...l, path };
    });
    layers.push(...(await Promise.all(batch)));
  }
  const blob = async (value: unknown) => {
    const bytes = Buffer.from(JSON.stringify(value));
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await writeFile(join(blobs, digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const config = await blob({
    created: MTIME.toISOString(),
    architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created: MTIME.toISOString(), created_by: `abode bench layer ${i}` })),
  });
  const manifestType = 'application/vnd.oci.image.manifest.v1+json';
  const manifest = await blob({
    schemaVersion: 2,
    mediaType: manifestType,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: layers.map((l) => ({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: l.digest,
      size: l.size,
    })),
  });
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: manifestType, ...manifest, annotations: { 'org.opencontainers.image.ref.name': ref } },
      ],
    }),
  );
  return { dir, ref, layers };
}
