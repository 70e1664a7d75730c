/** Debian packages as a local source of binaries: download with apt, unpack with dpkg-deb. */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UnavailableError } from '../core/errors.js';

const run = promisify(execFile);
const APT_ARCHIVES = '/var/cache/apt/archives';
const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+$/;

async function findDeb(dir: string, name: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return undefined;
  }
  const debs = names.filter((n) => n.startsWith(`${name}_`) && n.endsWith('.deb')).sort();
  return debs.length ? join(dir, debs[debs.length - 1]!) : undefined;
}

function stderrOf(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr || e.message || String(err)).trim().split('\n').slice(-3).join(' ');
}

/** Returns the path of NAME's .deb in destDir: reuses one there or in apt's cache, else `apt-get download` (running `apt-get update` once on failure). */
export async function downloadDebianPackage(name: string, destDir: string): Promise<string> {
  if (!PACKAGE_RE.test(name)) throw new UnavailableError(`invalid Debian package name: ${name}`);
  await fs.mkdir(destDir, { recursive: true });
  const cached = await findDeb(destDir, name);
  if (cached) return cached;
  const archived = await findDeb(APT_ARCHIVES, name);
  if (archived) {
    const dest = join(destDir, archived.slice(APT_ARCHIVES.length + 1));
    await fs.copyFile(archived, `${dest}.tmp`);
    await fs.rename(`${dest}.tmp`, dest);
    return dest;
  }
  const download = () => run('apt-get', ['download', '-q', name], { cwd: destDir, maxBuffer: 16 << 20 });
  try {
    await download();
  } catch {
    try {
      await run('apt-get', ['update', '-q'], { maxBuffer: 64 << 20 });
      await download();
    } catch (err) {
      throw new UnavailableError(
        `cannot download Debian package ${name}: ${stderrOf(err)}; ` +
          `check network access to the Debian mirrors, run 'apt-get update', or place ${name}_*.deb in ${destDir}`,
        { package: name },
      );
    }
  }
  const deb = await findDeb(destDir, name);
  if (!deb)
    throw new UnavailableError(`apt-get download ${name} produced no .deb in ${destDir}`, { package: name });
  return deb;
}

/** Extracts a .deb's files into dir (`dpkg-deb -x`). */
export async function extractDeb(debPath: string, dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  try {
    await run('dpkg-deb', ['-x', debPath, dir], { maxBuffer: 16 << 20 });
  } catch (err) {
    throw new UnavailableError(`cannot extract ${debPath}: ${stderrOf(err)}; is dpkg installed?`, {
      path: debPath,
    });
  }
}
