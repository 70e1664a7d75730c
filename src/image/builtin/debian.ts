/**
 * The built-in `debian:bookworm`: a `debootstrap --variant=minbase` root file system from the Debian
 * mirror the host's apt is configured with (never a hard-coded one), committed as one layer. Built on
 * first use (about half a minute with a near mirror) and then kept as a normal image.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { UnavailableError } from '../../core/errors.js';
import type { ProgressEvent } from '../../core/image.js';
import type { BuiltinImage } from './busybox.js';

const run = promisify(execFile);

export const DEBIAN_SUITE = 'bookworm';
/** The references the built-in debian answers to (all point at one image). */
export const DEBIAN_REFS = [
  'docker.io/library/debian:bookworm',
  'docker.io/library/debian:latest',
  'docker.io/library/debian:12',
];

/** One `deb` source of apt. */
export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

/** Parses apt's one-line format (`deb [opts] URI SUITE COMPONENT…`). */
export function parseSourcesList(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line.startsWith('deb ') && !line.startsWith('deb\t')) continue;
    const rest = line
      .slice(3)
      .trim()
      .replace(/^\[[^\]]*\]\s*/, '');
    const [uri, suite, ...components] = rest.split(/\s+/);
    if (uri && suite) out.push({ uri, suites: [suite], components });
  }
  return out;
}

/** Parses apt's deb822 format (`.sources`: stanzas of `Types:`, `URIs:`, `Suites:`, `Components:`, `Enabled:`). */
export function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    let last: string | undefined;
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && last) {
        fields[last] += ` ${raw.trim()}`;
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(raw);
      if (!m) continue;
      last = m[1]!.toLowerCase();
      fields[last] = m[2]!.trim();
    }
    if (!(fields.types ?? '').split(/\s+/).includes('deb')) continue;
    if ((fields.enabled ?? 'yes').toLowerCase() === 'no') continue;
    const suites = (fields.suites ?? '').split(/\s+/).filter(Boolean);
    for (const uri of (fields.uris ?? '').split(/\s+/).filter(Boolean))
      out.push({ uri, suites, components: (fields.components ?? '').split(/\s+/).filter(Boolean) });
  }
  return out;
}

/** The mirror to debootstrap `suite` from: the first source that carries the suite itself (not -updates/-security). */
export function pickMirror(sources: readonly AptSource[], suite = DEBIAN_SUITE): string | undefined {
  const plain = sources.find((s) => s.suites.includes(suite) && !/security/.test(s.uri));
  if (plain) return plain.uri.replace(/\/+$/, '');
  const any = sources.find((s) => s.suites.some((x) => /^(bookworm|stable|trixie|bullseye|sid)$/.test(x)));
  return any?.uri.replace(/\/+$/, '');
}

/** The host's apt sources: /etc/apt/sources.list and sources.list.d/*.list and *.sources. */
export function hostAptSources(etc = '/etc/apt'): AptSource[] {
  const out: AptSource[] = [];
  try {
    out.push(...parseSourcesList(readFileSync(join(etc, 'sources.list'), 'utf8')));
  } catch {
    // none
  }
  let names: string[] = [];
  try {
    names = readdirSync(join(etc, 'sources.list.d')).sort();
  } catch {
    // none
  }
  for (const n of names) {
    const file = join(etc, 'sources.list.d', n);
    try {
      if (n.endsWith('.list')) out.push(...parseSourcesList(readFileSync(file, 'utf8')));
      else if (n.endsWith('.sources')) out.push(...parseDeb822(readFileSync(file, 'utf8')));
    } catch {
      // unreadable: skip
    }
  }
  return out;
}

function debArch(): string {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    ia32: 'i386',
    ppc64: 'ppc64el',
    s390x: 's390x',
  };
  return arch[process.arch] ?? process.arch;
}

/** Mount points below `dir`, deepest first. */
async function mountsBelow(dir: string): Promise<string[]> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Runs debootstrap, reporting its `I:` lines as progress. */
async function debootstrap(
  target: string,
  mirror: string,
  onProgress: (e: ProgressEvent) => void,
): Promise<void> {
  const args = ['--variant=minbase', `--arch=${debArch()}`, DEBIAN_SUITE, target, mirror];
  const child = spawn('debootstrap', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const read = (stream: NodeJS.ReadableStream) =>
    createInterface({ input: stream }).on('line', (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      if (
        /^I: (Retrieving|Validating|Unpacking|Configuring|Extracting|Installing|Base|Resolving|Checking|Found|Chosen)/.test(
          line,
        ) &&
        !/^I: (Validating|Retrieving) [a-z0-9]/.test(line)
      )
        onProgress({ status: line.slice(3) });
    });
  read(child.stdout);
  read(child.stderr);
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new UnavailableError(
              'debootstrap not found: install the debootstrap package (apt-get install debootstrap)',
            )
          : err,
      ),
    );
    child.on('close', (c) => resolve(c ?? 1));
  });
  if (code !== 0)
    throw new UnavailableError(
      `debootstrap ${args.join(' ')} failed (exit ${code}): ${tail.slice(-5).join(' | ')}`,
      { mirror },
    );
}

/** Builds debian:bookworm (minbase) into an uncompressed layer tar under cacheDir. */
export async function buildDebian(
  cacheDir: string,
  onProgress: (e: ProgressEvent) => void = () => undefined,
): Promise<BuiltinImage> {
  const mirror = pickMirror(hostAptSources());
  if (!mirror)
    throw new UnavailableError(
      `cannot build debian:${DEBIAN_SUITE}: no Debian mirror with suite ${DEBIAN_SUITE} in /etc/apt/sources.list or /etc/apt/sources.list.d`,
    );
  await fs.mkdir(cacheDir, { recursive: true });
  const work = join(cacheDir, `.debian-${randomBytes(6).toString('hex')}`);
  const target = join(work, 'rootfs');
  const layerFile = join(cacheDir, `debian-${DEBIAN_SUITE}-${randomBytes(6).toString('hex')}.tar`);
  await fs.mkdir(target, { recursive: true });
  try {
    onProgress({ status: `debootstrap --variant=minbase ${DEBIAN_SUITE} from ${mirror}` });
    await debootstrap(target, mirror, onProgress);
    // As docker's debian image: no package cache, no lists, no device nodes, no host files.
    for (const p of ['var/cache/apt/archives', 'var/lib/apt/lists', 'dev']) {
      for (const n of await fs.readdir(join(target, p)).catch(() => [] as string[]))
        if (n !== 'partial' && n !== 'lock')
          await fs.rm(join(target, p, n), { recursive: true, force: true });
    }
    for (const f of ['etc/hostname', 'etc/resolv.conf', 'etc/machine-id'])
      await fs.rm(join(target, f), { force: true });
    await fs.writeFile(join(target, 'etc/machine-id'), '');
    onProgress({ status: 'Packing the root file system' });
    await run(
      'tar',
      ['--numeric-owner', '--format=pax', '--sort=name', '-cf', layerFile, '-C', target, '.'],
      {
        maxBuffer: 16 << 20,
      },
    );
    return {
      layer: Buffer.alloc(0),
      layerFile,
      aliases: DEBIAN_REFS,
      created: new Date().toISOString(),
      createdBy: `abode: debootstrap --variant=minbase ${DEBIAN_SUITE} ${mirror}`,
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Cmd: ['bash'],
      },
    };
  } catch (err) {
    await fs.rm(layerFile, { force: true });
    throw err;
  } finally {
    // Never delete through a mount (debootstrap mounts /proc and /sys in the target while it runs).
    for (const m of await mountsBelow(target).catch(() => []))
      await run('umount', ['-l', m]).catch(() => undefined);
    const left = await mountsBelow(target).catch(() => ['?']);
    if (left.length === 0) await fs.rm(work, { recursive: true, force: true });
  }
}
