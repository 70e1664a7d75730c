/** Test fixtures for registry tests: Debian's docker-registry on 127.0.0.1, OCI layouts, skopeo, a fake registry. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { writeTar, type TarEntry } from '../../src/image/tar-write.js';

export const exec = promisify(execFile);

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RunningRegistry {
  host: string;
  dir: string;
  stop(): Promise<void>;
}

/** Starts /usr/bin/docker-registry on 127.0.0.1 with storage in a temp dir; with `auth`, htpasswd (bcrypt) auth. */
export async function startRegistry(auth?: { user: string; password: string }): Promise<RunningRegistry> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'abode-registry-'));
  const port = await freePort();
  let authYaml = '';
  if (auth) {
    await exec('htpasswd', ['-Bbc', join(dir, 'htpasswd'), auth.user, auth.password]);
    authYaml = `auth:\n  htpasswd:\n    realm: abode-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  const config = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
  secret: abode-test-secret
${authYaml}`;
  await fs.writeFile(join(dir, 'config.yml'), config);
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c) => (stderr += c));
  const host = `127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
    const ok = await fetch(`http://${host}/v2/`).then(
      () => true,
      () => false,
    );
    if (ok) break;
    if (i > 200) throw new Error(`docker-registry did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    dir,
    async stop() {
      if (child.exitCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export interface LayoutImage {
  /** Files of each layer, bottom first. */
  layers: TarEntry[][];
  architecture?: string;
  cmd?: string[];
  /** Docker schema-2 media types instead of OCI. */
  docker?: boolean;
}

export interface BuiltLayout {
  dir: string;
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
  /** Digest of the index when several platforms were written. */
  indexDigest?: string;
}

async function writeBlob(dir: string, data: Buffer | string): Promise<{ digest: string; size: number }> {
  const buf = Buffer.from(data);
  const digest = sha256(buf);
  await fs.mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await fs.writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), buf);
  return { digest, size: buf.length };
}

/** Writes an OCI image layout with one image per entry; several entries make a multi-platform index under `tag`. */
export async function makeLayout(dir: string, tag: string, images: LayoutImage[]): Promise<BuiltLayout> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const built: { desc: Record<string, unknown>; config: string; layers: string[] }[] = [];
  for (const img of images) {
    const docker = img.docker ?? false;
    const layerDescs = [];
    const diffIds = [];
    for (const files of img.layers) {
      const tar = writeTar(files);
      diffIds.push(sha256(tar));
      const blob = await writeBlob(dir, gzipSync(tar));
      layerDescs.push({
        mediaType: docker
          ? 'application/vnd.docker.image.rootfs.diff.tar.gzip'
          : 'application/vnd.oci.image.layer.v1.tar+gzip',
        ...blob,
      });
    }
    const arch = img.architecture ?? 'amd64';
    const config = await writeBlob(
      dir,
      JSON.stringify({
        created: '2024-01-01T00:00:00Z',
        architecture: arch,
        os: 'linux',
        config: { Cmd: img.cmd ?? ['/bin/sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] },
        rootfs: { type: 'layers', diff_ids: diffIds },
        history: img.layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'test' })),
      }),
    );
    const manifestType = docker
      ? 'application/vnd.docker.distribution.manifest.v2+json'
      : 'application/vnd.oci.image.manifest.v1+json';
    const manifest = await writeBlob(
      dir,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: manifestType,
        config: {
          mediaType: docker
            ? 'application/vnd.docker.container.image.v1+json'
            : 'application/vnd.oci.image.config.v1+json',
          ...config,
        },
        layers: layerDescs,
      }),
    );
    built.push({
      desc: { mediaType: manifestType, ...manifest, platform: { architecture: arch, os: 'linux' } },
      config: config.digest,
      layers: layerDescs.map((l) => l.digest),
    });
  }
  let top: Record<string, unknown>;
  let indexDigest: string | undefined;
  if (built.length === 1) {
    const { platform: _platform, ...desc } = built[0]!.desc;
    top = { ...desc, annotations: { 'org.opencontainers.image.ref.name': tag } };
  } else {
    const index = await writeBlob(
      dir,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: built.map((b) => b.desc),
      }),
    );
    indexDigest = index.digest;
    top = {
      mediaType: 'application/vnd.oci.image.index.v1+json',
      ...index,
      annotations: { 'org.opencontainers.image.ref.name': tag },
    };
  }
  await fs.writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [top],
    }),
  );
  return {
    dir,
    manifestDigest: built[0]!.desc.digest as string,
    configDigest: built[0]!.config,
    layerDigests: built[0]!.layers,
    ...(indexDigest ? { indexDigest } : {}),
  };
}

/** `skopeo copy` (plain http to 127.0.0.1: TLS verification off on both sides). */
export async function skopeoCopy(from: string, to: string, extra: string[] = []): Promise<void> {
  await exec(
    'skopeo',
    ['--insecure-policy', 'copy', '--src-tls-verify=false', '--dest-tls-verify=false', ...extra, from, to],
    { maxBuffer: 16 << 20 },
  );
}

/** A minimal registry on node:http whose answers the test scripts; unhandled paths answer 404. */
export class FakeRegistry {
  readonly requests: { method: string; url: string; headers: IncomingMessage['headers'] }[] = [];
  handler: (req: IncomingMessage, res: ServerResponse) => boolean | void = () => false;
  private server: Server | undefined;
  host = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      if (this.handler(req, res) === false) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known' }] }));
      }
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.host = `127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }
}
