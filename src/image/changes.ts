/** docker import/commit `--change` lines (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL) applied to a config. */
import { posix } from 'node:path';
import { invalidAll } from '../core/errors.js';
import type { ImageConfig } from '../core/image.js';
import { jsonForm } from '../core/build/containerfile.js';

const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** Splits words, honouring single and double quotes and backslash escapes. */
export function splitWords(s: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new Error('unterminated quote');
  if (inWord) words.push(cur);
  return words;
}

/** Key/value pairs of ENV and LABEL: `k=v k2="v 2"` or the legacy `k v w`. */
function pairs(instr: string, args: string): [string, string][] {
  const words = splitWords(args);
  if (words.length === 0) throw new Error(`${instr} requires at least one argument`);
  if (!words[0]!.includes('=')) {
    const sp = args.search(/\s/);
    if (sp === -1) throw new Error(`${instr} must have two arguments`);
    const [k] = splitWords(args.slice(0, sp));
    return [[k!, splitWords(args.slice(sp)).join(' ')]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`${instr} names can not be blank: ${w}`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

/** Returns `config` with the change lines applied; reports every bad line at once (InvalidArgumentError). */
export function applyChanges(config: ImageConfig, changes: readonly string[]): ImageConfig {
  const out: ImageConfig = structuredClone(config);
  const problems: string[] = [];
  for (const raw of changes) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)\s*([\s\S]*)$/.exec(line)!;
    const instr = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    try {
      switch (instr) {
        case 'CMD':
        case 'ENTRYPOINT': {
          const argv = jsonForm(args) ?? (args === '' ? [] : [...(out.Shell ?? DEFAULT_SHELL), args]);
          if (instr === 'CMD') out.Cmd = argv;
          else {
            out.Entrypoint = argv;
            delete out.Cmd; // docker resets CMD when ENTRYPOINT changes
          }
          break;
        }
        case 'ENV': {
          const env = [...(out.Env ?? [])];
          for (const [k, v] of pairs(instr, args)) {
            const i = env.findIndex((e) => e.split('=', 1)[0] === k);
            if (i === -1) env.push(`${k}=${v}`);
            else env[i] = `${k}=${v}`;
          }
          out.Env = env;
          break;
        }
        case 'LABEL':
          out.Labels = { ...(out.Labels ?? {}) };
          for (const [k, v] of pairs(instr, args)) out.Labels[k] = v;
          break;
        case 'WORKDIR': {
          const [dir] = splitWords(args);
          if (!dir) throw new Error('WORKDIR requires exactly one argument');
          out.WorkingDir = posix.resolve(out.WorkingDir || '/', dir);
          break;
        }
        case 'USER': {
          const [user] = splitWords(args);
          if (!user) throw new Error('USER requires exactly one argument');
          out.User = user;
          break;
        }
        case 'EXPOSE': {
          const ports = splitWords(args);
          if (ports.length === 0) throw new Error('EXPOSE requires at least one argument');
          out.ExposedPorts = { ...(out.ExposedPorts ?? {}) };
          for (const p of ports) {
            const pm = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
            if (!pm) throw new Error(`invalid containerPort: ${p}`);
            const proto = (pm[3] ?? 'tcp').toLowerCase();
            const lo = Number(pm[1]);
            const hi = pm[2] ? Number(pm[2]) : lo;
            if (lo < 1 || hi > 65535 || hi < lo) throw new Error(`invalid containerPort: ${p}`);
            for (let port = lo; port <= hi; port++) out.ExposedPorts[`${port}/${proto}`] = {};
          }
          break;
        }
        case 'VOLUME': {
          const vols = jsonForm(args) ?? splitWords(args);
          if (vols.length === 0) throw new Error('VOLUME requires at least one argument');
          out.Volumes = { ...(out.Volumes ?? {}) };
          for (const v of vols) out.Volumes[v] = {};
          break;
        }
        case 'STOPSIGNAL': {
          const [sig] = splitWords(args);
          if (!sig) throw new Error('STOPSIGNAL requires exactly one argument');
          out.StopSignal = sig;
          break;
        }
        default:
          throw new Error(`${JSON.stringify(m[1])} is not a valid change command`);
      }
    } catch (err) {
      problems.push(`${(err as Error).message} (in ${JSON.stringify(raw)})`);
    }
  }
  if (problems.length) throw invalidAll(problems);
  return out;
}
