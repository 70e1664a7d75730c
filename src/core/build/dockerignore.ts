/**
 * `.dockerignore`, as docker's moby/patternmatcher reads it: one pattern a line, `#` comments, `!`
 * exceptions, Go filepath.Match syntax (`*`, `?`, `[a-z]`, `\` escapes) plus `**` for any number of
 * directories; a pattern that matches a directory excludes everything below it; the last match wins.
 */

interface Pattern {
  exclusion: boolean;
  regex: RegExp;
  /** Number of path components of the cleaned pattern (to match parent directories). */
  dirs: number;
  text: string;
}

/** Cleans a path the way Go's filepath.Clean does, relative (no leading `/`, no `./`). */
export function cleanPath(p: string): string {
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      continue; // `..` cannot leave the context
    }
    out.push(part);
  }
  return out.join('/') || '.';
}

/** Compiles a Go filepath.Match pattern (with `**`) into an anchored RegExp. */
export function globRegExp(pattern: string, opts: { doubleStar?: boolean } = {}): RegExp {
  const doubleStar = opts.doubleStar ?? true;
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (doubleStar && pattern[i + 1] === '*') {
        i++;
        // `**/` matches zero or more directories; a trailing `**` matches everything.
        if (pattern[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, close);
      if (body.startsWith('^') || body.startsWith('!')) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\(.)/g, '\\$1').replace(/\//g, '')}]`;
      i = close;
    } else if (c === '\\' && i + 1 < pattern.length) {
      re += escapeRe(pattern[++i]!);
    } else re += escapeRe(c);
  }
  return new RegExp(`${re}$`);
}

function escapeRe(c: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(c) ? `\\${c}` : c;
}

/** Parses a .dockerignore file's text into its patterns (comments and blank lines dropped). */
export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let neg = false;
    if (line.startsWith('!')) {
      neg = true;
      line = line.slice(1).trim();
    }
    line = cleanPath(line);
    if (line === '.' && !neg) continue; // docker ignores a bare "." exclusion
    out.push(`${neg ? '!' : ''}${line}`);
  }
  return out;
}

/** Decides whether context paths are excluded. */
export class IgnoreMatcher {
  private readonly patterns: Pattern[];

  constructor(patterns: readonly string[]) {
    this.patterns = patterns.map((p) => {
      const exclusion = p.startsWith('!');
      const text = exclusion ? p.slice(1) : p;
      return { exclusion, regex: globRegExp(text), dirs: text.split('/').length, text };
    });
  }

  /** Whether any pattern is an exception (`!…`): then excluded directories must still be walked. */
  get hasExceptions(): boolean {
    return this.patterns.some((p) => p.exclusion);
  }

  /** Whether `path` (relative to the context, `/`-separated) is excluded. */
  excludes(path: string): boolean {
    const file = cleanPath(path);
    if (file === '.') return false;
    const parts = file.split('/');
    let matched = false;
    for (const p of this.patterns) {
      if (p.exclusion !== matched) continue; // only a pattern that could change the answer matters
      let match = p.regex.test(file);
      if (!match && parts.length > 1 && p.dirs <= parts.length - 1)
        match = p.regex.test(parts.slice(0, p.dirs).join('/'));
      if (match) matched = !p.exclusion;
    }
    return matched;
  }

  /** Whether a directory's contents can be skipped entirely (it is excluded and no exception can bring a child back). */
  skipsDirectory(path: string): boolean {
    if (!this.excludes(path)) return false;
    if (!this.hasExceptions) return true;
    const dir = cleanPath(path);
    // An exception pattern that could match below this directory keeps it walked.
    return !this.patterns.some(
      (p) => p.exclusion && (p.text.startsWith(`${dir}/`) || p.text.includes('*') || p.text.includes('?')),
    );
  }
}
