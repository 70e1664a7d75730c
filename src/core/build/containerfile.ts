/**
 * The Containerfile (Dockerfile) language, pure: parser directives (`# escape=`), comments, line
 * continuations, instructions with their `--flags`, JSON (exec) vs shell forms, and the variable
 * substitution docker applies to ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR.
 *
 * It lives in core/ because the CLI (to find the file), the engine (to run it) and tests all read it.
 */
import { InvalidArgumentError } from '../errors.js';

/** Every instruction the builder knows. ONBUILD, HEALTHCHECK and STOPSIGNAL are parsed and recorded. */
export const INSTRUCTIONS = [
  'FROM',
  'RUN',
  'COPY',
  'ADD',
  'ENV',
  'ARG',
  'WORKDIR',
  'USER',
  'ENTRYPOINT',
  'CMD',
  'EXPOSE',
  'LABEL',
  'VOLUME',
  'SHELL',
  'STOPSIGNAL',
  'MAINTAINER',
  'ONBUILD',
  'HEALTHCHECK',
] as const;
export type InstructionName = (typeof INSTRUCTIONS)[number];

/** One instruction as written: its keyword, `--name=value` flags and the rest of the line. */
export interface Instruction {
  name: InstructionName;
  /** 1-based line where the instruction starts. */
  line: number;
  /** `--from=build` → { from: 'build' } (a flag without `=` has the value ''). */
  flags: Record<string, string>;
  /** The arguments after the flags, continuations joined, trimmed. */
  args: string;
  /** The exec (JSON) form when the arguments are a JSON array of strings. */
  json?: string[];
  /** The instruction as docker prints it in `Step n/m : …` (continuations joined). */
  original: string;
}

/** A parsed Containerfile: instructions, and the escape character in effect. */
export interface Containerfile {
  escape: '\\' | '`';
  instructions: Instruction[];
}

/** Instructions whose arguments may be a JSON array. */
const JSON_FORMS = new Set(['RUN', 'CMD', 'ENTRYPOINT', 'SHELL', 'COPY', 'ADD', 'VOLUME']);
/** Instructions that take `--flags` before their arguments. */
const FLAGGED = new Set(['FROM', 'RUN', 'COPY', 'ADD', 'HEALTHCHECK']);

export class ContainerfileError extends InvalidArgumentError {}

function parseError(file: string, line: number, message: string): ContainerfileError {
  return new ContainerfileError(`${file} parse error line ${line}: ${message}`, { line });
}

/** The JSON array form, or undefined for the shell form (docker falls back to shell form on bad JSON). */
export function jsonForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  try {
    const v: unknown = JSON.parse(args);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // shell form
  }
  return undefined;
}

/** Parses a Containerfile's text; `file` names it in errors (`Containerfile parse error line 3: …`). */
export function parseContainerfile(text: string, file = 'Containerfile'): Containerfile {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let escape: '\\' | '`' = '\\';
  // Parser directives: `# key=value` lines at the very top, before any comment, blank line or instruction.
  let i = 0;
  const seen = new Set<string>();
  for (; i < lines.length; i++) {
    const m = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$/.exec(lines[i]!);
    if (!m) break;
    const key = m[1]!.toLowerCase();
    if (seen.has(key)) throw parseError(file, i + 1, `only one ${key} parser directive can be used`);
    seen.add(key);
    if (key === 'escape') {
      if (m[2] !== '\\' && m[2] !== '`')
        throw parseError(file, i + 1, `invalid escape token '${m[2]}' does not match ` + '` or \\');
      escape = m[2];
    }
    // `syntax` and unknown directives are ignored, as docker does.
  }
  const instructions: Instruction[] = [];
  const continuation = new RegExp(`${escape === '\\' ? '\\\\' : '`'}[ \\t]*$`);
  while (i < lines.length) {
    const raw = lines[i]!;
    const start = i + 1;
    i++;
    if (/^\s*$/.test(raw) || /^\s*#/.test(raw)) continue;
    let text = raw.trimStart();
    // Join continuation lines; comment lines and empty lines inside a continuation are dropped.
    while (continuation.test(text) && i <= lines.length) {
      text = text.replace(continuation, '');
      let next: string | undefined;
      while (i < lines.length) {
        const candidate = lines[i]!;
        i++;
        if (/^\s*#/.test(candidate) || /^\s*$/.test(candidate)) continue;
        next = candidate;
        break;
      }
      if (next === undefined) break;
      text += next;
    }
    text = text.trim();
    const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(text)!;
    const keyword = m[1]!.toUpperCase();
    if (!(INSTRUCTIONS as readonly string[]).includes(keyword))
      throw parseError(file, start, `unknown instruction: ${m[1]!.toUpperCase()}`);
    const name = keyword as InstructionName;
    let rest = (m[2] ?? '').trim();
    const flags: Record<string, string> = {};
    if (FLAGGED.has(name)) {
      for (;;) {
        const f = /^--([a-zA-Z][a-zA-Z0-9-]*)(?:=("(?:[^"\\]|\\.)*"|\S*))?(?:\s+|$)/.exec(rest);
        if (!f) break;
        let value = f[2] ?? '';
        if (value.startsWith('"')) value = JSON.parse(value) as string;
        flags[f[1]!.toLowerCase()] = value;
        rest = rest.slice(f[0].length);
      }
    }
    const json = JSON_FORMS.has(name) ? jsonForm(rest) : undefined;
    if (rest === '') throw parseError(file, start, `${name} requires at least one argument`);
    instructions.push({
      name,
      line: start,
      flags,
      args: rest,
      ...(json ? { json } : {}),
      original: `${name} ${Object.entries(flags)
        .map(([k, v]) => `--${k}${v === '' ? '' : `=${v}`} `)
        .join('')}${rest}`,
    });
  }
  return { escape, instructions };
}

/** A lookup of variables: ENV of the stage over ARG values. */
export type Vars = (name: string) => string | undefined;

/**
 * docker's shell-like word processing for one argument string: `$VAR`, `${VAR}`, `${VAR:-default}`,
 * `${VAR:+alternative}`, quotes (removed) and the escape character. Returns the words, split on
 * unquoted whitespace (`split: false` keeps one word with the spaces).
 */
export function processWords(
  input: string,
  vars: Vars,
  opts: { escape?: string; split?: boolean } = {},
): string[] {
  const esc = opts.escape ?? '\\';
  const split = opts.split ?? true;
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  let i = 0;
  const readVar = (): string => {
    // at input[i] === '$'
    i++;
    if (input[i] === '{') {
      const close = findClose(input, i + 1);
      if (close < 0) throw new InvalidArgumentError(`missing '}' in ${JSON.stringify(input)}`);
      const body = input.slice(i + 1, close);
      i = close + 1;
      const m = /^([a-zA-Z_][a-zA-Z0-9_]*)(?::([-+])([\s\S]*))?$/.exec(body);
      if (!m) throw new InvalidArgumentError(`bad substitution: \${${body}} in ${JSON.stringify(input)}`);
      const value = vars(m[1]!);
      if (m[2] === '-')
        return value !== undefined && value !== ''
          ? value
          : processWords(m[3]!, vars, { escape: esc, split: false }).join('');
      if (m[2] === '+')
        return value !== undefined && value !== ''
          ? processWords(m[3]!, vars, { escape: esc, split: false }).join('')
          : '';
      return value ?? '';
    }
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(input.slice(i));
    if (!m) return '$';
    i += m[0].length;
    return vars(m[0]) ?? '';
  };
  while (i < input.length) {
    const c = input[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else cur += c;
      i++;
      continue;
    }
    if (c === esc && i + 1 < input.length) {
      const n = input[i + 1]!;
      // Inside double quotes, the escape only escapes `"`, `$` and itself (as in sh).
      if (quote === '"' && n !== '"' && n !== '$' && n !== esc) cur += c;
      cur += n;
      inWord = true;
      i += 2;
      continue;
    }
    if (c === '$') {
      cur += readVar();
      inWord = true;
      continue;
    }
    if (quote === '"') {
      if (c === '"') quote = undefined;
      else cur += c;
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
      i++;
      continue;
    }
    if (split && /\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      i++;
      continue;
    }
    cur += c;
    inWord = true;
    i++;
  }
  if (quote)
    throw new InvalidArgumentError(`unexpected end of statement while looking for matching ${quote}`);
  if (inWord || !split) words.push(cur);
  return words;
}

function findClose(s: string, from: number): number {
  let depth = 1;
  for (let j = from; j < s.length; j++) {
    if (s[j] === '{') depth++;
    else if (s[j] === '}' && --depth === 0) return j;
  }
  return -1;
}

/** Substitutes variables in one value, keeping quotes and spacing as written except the quotes themselves. */
export function expandValue(input: string, vars: Vars, escape = '\\'): string {
  return processWords(input, vars, { escape, split: false })[0] ?? '';
}

/**
 * `KEY=VALUE KEY2="v 2"` pairs (ENV, LABEL, ARG) with substitution; the legacy `ENV KEY value with spaces`
 * form when the first word has no `=`.
 */
export function keyValuePairs(
  instr: string,
  args: string,
  vars: Vars,
  escape = '\\',
): [string, string | undefined][] {
  const words = processWords(args, vars, { escape });
  if (words.length === 0) throw new InvalidArgumentError(`${instr} requires at least one argument`);
  if (!words[0]!.includes('=')) {
    if (instr === 'ARG') return words.map((w) => [w, undefined]);
    const sp = args.search(/\s/);
    if (sp === -1) throw new InvalidArgumentError(`${instr} must have two arguments`);
    const key = processWords(args.slice(0, sp), vars, { escape })[0]!;
    return [[key, processWords(args.slice(sp).trim(), vars, { escape, split: false })[0] ?? '']];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq === 0) throw new InvalidArgumentError(`${instr} names can not be blank`);
    if (eq < 0) {
      if (instr === 'ARG') return [w, undefined];
      throw new InvalidArgumentError(
        `${instr}: syntax error - can't find = in "${w}". Must be of the form: name=value`,
      );
    }
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

/** One stage of a multi-stage build: its FROM and the instructions up to the next FROM. */
export interface Stage {
  /** Position among the stages (0-based). */
  index: number;
  /** The `AS name`, lowercased, if any. */
  name?: string;
  /** The base as written in FROM (before ARG substitution). */
  base: string;
  from: Instruction;
  instructions: Instruction[];
}

/** Splits instructions into the global ARGs (before the first FROM) and stages. */
export function splitStages(
  file: Containerfile,
  fileName = 'Containerfile',
): { globalArgs: Instruction[]; stages: Stage[] } {
  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  for (const ins of file.instructions) {
    if (ins.name === 'FROM') {
      const words = ins.args.split(/\s+/);
      let name: string | undefined;
      if (words.length === 3 && words[1]!.toUpperCase() === 'AS') name = words[2]!.toLowerCase();
      else if (words.length !== 1)
        throw parseError(fileName, ins.line, `FROM requires either one or three arguments`);
      if (name !== undefined && !/^[a-z][a-z0-9-_.]*$/.test(name))
        throw parseError(
          fileName,
          ins.line,
          `invalid name for build stage: "${name}", name can't start with a number or contain symbols`,
        );
      if (name !== undefined && stages.some((s) => s.name === name))
        throw parseError(fileName, ins.line, `duplicate name ${name}`);
      stages.push({
        index: stages.length,
        ...(name ? { name } : {}),
        base: words[0]!,
        from: ins,
        instructions: [],
      });
    } else if (stages.length === 0) {
      if (ins.name !== 'ARG')
        throw parseError(fileName, ins.line, `no build stage in current context (${ins.name} before FROM)`);
      globalArgs.push(ins);
    } else stages[stages.length - 1]!.instructions.push(ins);
  }
  if (stages.length === 0) throw new InvalidArgumentError(`${fileName} has no FROM instruction`);
  return { globalArgs, stages };
}
