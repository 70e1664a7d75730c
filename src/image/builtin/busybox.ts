/** The built-in busybox image, built offline from Debian's busybox-static: one deterministic layer plus config. */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { InternalError } from '../../core/errors.js';
import type { ImageConfig } from '../../core/image.js';
import { downloadDebianPackage, extractDeb } from '../../platform/debian.js';
import { FIXED_MTIME, writeTar, type TarEntry } from '../tar-write.js';

const run = promisify(execFile);

/** The reference the built-in image is stored under. */
export const BUSYBOX_REF = 'docker.io/library/busybox:latest';
export const BUSYBOX_PACKAGE = 'busybox-static';

/** What the image service commits for a built-in image. */
export interface BuiltinImage {
  /** Uncompressed layer tar. */
  layer: Buffer;
  config: ImageConfig;
  created: string;
  createdBy: string;
  /** Instead of `layer`: an uncompressed layer tar on disk (large images), deleted once committed. */
  layerFile?: string;
  /** More references to point at the image (`debian:12` besides `debian:bookworm`). */
  aliases?: string[];
}

const PASSWD = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`;
const GROUP = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65534:
`;

/** The rootfs entries: /bin/busybox, one relative symlink per applet, /etc files and the usual directories. */
export function busyboxEntries(busybox: Buffer, applets: readonly string[]): TarEntry[] {
  const dirs = new Map<string, number>([
    ['bin', 0o755],
    ['dev', 0o755],
    ['etc', 0o755],
    ['home', 0o755],
    ['proc', 0o555],
    ['root', 0o700],
    ['sbin', 0o755],
    ['sys', 0o555],
    ['tmp', 0o1777],
    ['usr', 0o755],
    ['usr/bin', 0o755],
    ['usr/sbin', 0o755],
    ['var', 0o755],
    ['var/spool', 0o755],
    ['var/spool/mail', 0o755],
    ['var/www', 0o755],
  ]);
  const entries: TarEntry[] = [];
  const links = new Map<string, string>();
  for (const raw of applets) {
    const applet = posix.normalize(raw.trim()).replace(/^\/+/, '');
    if (
      !applet ||
      applet === 'bin/busybox' ||
      applet.startsWith('..') ||
      !/^(bin|sbin|usr\/bin|usr\/sbin)\/[^/]+$/.test(applet)
    ) {
      continue;
    }
    links.set(applet, posix.relative(posix.dirname(applet), 'bin/busybox'));
  }
  for (const [path, mode] of dirs) entries.push({ type: 'dir', path, mode });
  entries.push({ type: 'file', path: 'bin/busybox', mode: 0o755, data: busybox });
  for (const [path, target] of links) entries.push({ type: 'symlink', path, target });
  entries.push({ type: 'file', path: 'etc/passwd', mode: 0o644, data: PASSWD });
  entries.push({ type: 'file', path: 'etc/group', mode: 0o644, data: GROUP });
  return entries;
}

/** Builds the busybox layer and config from busybox-static, caching the .deb under cacheDir. */
export async function buildBusybox(cacheDir: string): Promise<BuiltinImage> {
  const deb = await downloadDebianPackage(BUSYBOX_PACKAGE, cacheDir);
  const work = join(cacheDir, `.busybox-${randomBytes(6).toString('hex')}`);
  try {
    await extractDeb(deb, work);
    const bin = join(work, 'bin', 'busybox');
    const busybox = await fs.readFile(bin).catch(() => {
      throw new InternalError(`${deb} has no bin/busybox`);
    });
    const { stdout } = await run(bin, ['--list-full'], { maxBuffer: 1 << 20 });
    const applets = stdout.split('\n').filter(Boolean);
    if (!applets.includes('bin/sh')) throw new InternalError(`busybox from ${deb} has no sh applet`);
    const layer = writeTar(busyboxEntries(busybox, applets));
    return {
      layer,
      created: FIXED_MTIME.toISOString(),
      createdBy: `abode: built-in busybox from Debian ${posix.basename(deb)}`,
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Cmd: ['sh'],
      },
    };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
