// A Go text/template interpreter for docker's --format: lexer, parser and executor follow Go's
// text/template (parse/lex.go, parse/parse.go, exec.go, funcs.go), plus docker's template functions.
import {
  formatValue,
  goJSON,
  goTypeName,
  kindOf,
  sortedEntries,
  sprint,
  sprintf,
  sprintln,
} from './gofmt.js';

/** A template function: gets evaluated arguments, returns a value, throws to fail the execution. */
export type TemplateFunc = (...args: unknown[]) => unknown;

/** Named template functions, as Go's template.FuncMap. */
export type FuncMap = Record<string, TemplateFunc>;

/** Options for parsing: extra functions callable from the template. */
export interface ParseOptions {
  funcs?: FuncMap;
}

/** Error from parsing or executing a template, worded like Go's ("template: :1: ..."). */
export class TemplateError extends Error {
  override name = 'TemplateError';
}

/** An object holding this symbol as a method resolves every field chain on it: `(fields) => value`. */
export const fieldResolver: unique symbol = Symbol('abode.format.fieldResolver');

/** A value whose `[fieldResolver]` answers `.A.B` chains as a whole (used for table headers). */
export interface FieldResolver {
  [fieldResolver](fields: readonly string[]): unknown;
}

// ---------------------------------------------------------------- lexer

type TokType =
  | 'text'
  | 'ldelim'
  | 'rdelim'
  | 'space'
  | 'ident'
  | 'field'
  | 'var'
  | 'dot'
  | 'string'
  | 'rawstring'
  | 'charconst'
  | 'number'
  | 'bool'
  | 'nil'
  | 'pipe'
  | 'lparen'
  | 'rparen'
  | 'declare'
  | 'assign'
  | 'char'
  | 'keyword'
  | 'eof'
  | 'error';

interface Tok {
  t: TokType;
  v: string;
  pos: number;
}

const keywords = new Set([
  'block',
  'break',
  'continue',
  'define',
  'else',
  'end',
  'if',
  'range',
  'template',
  'with',
]);
const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\r' || c === '\n';
const alnum = /^[\p{L}\p{Nd}_]$/u;
const isAlnum = (c: string | undefined): boolean => c !== undefined && alnum.test(c);

function charDesc(c: string): string {
  const cp = c.codePointAt(0)!;
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')} '${c}'`;
}

function lex(src: string): Tok[] {
  const toks: Tok[] = [];
  let pos = 0;
  const emit = (t: TokType, start: number, end: number): void => {
    toks.push({ t, v: src.slice(start, end), pos: start });
  };
  const fail = (msg: string, at: number): Tok[] => {
    toks.push({ t: 'error', v: msg, pos: at });
    return toks;
  };
  // Is there a right delimiter at p? Returns its length (2, or 4 with a " -" trim marker), 0 if none.
  const rightDelimAt = (p: number): [number, boolean] => {
    if (isSpace(src[p]) && src[p + 1] === '-' && src.startsWith('}}', p + 2)) return [4, true];
    if (src.startsWith('}}', p)) return [2, false];
    return [0, false];
  };
  const skipSpaceAfter = (p: number): number => {
    while (isSpace(src[p])) p++;
    return p;
  };
  const atTerminator = (p: number): boolean => {
    const c = src[p];
    // Like Go, the first rune of the right delimiter ends a word, so "{{.X}" fails on the "}".
    return c === undefined || isSpace(c) || '.,|:()}'.includes(c);
  };

  while (pos < src.length) {
    const x = src.indexOf('{{', pos);
    if (x < 0) {
      emit('text', pos, src.length);
      break;
    }
    const trimLeft = src[x + 2] === '-' && isSpace(src[x + 3]);
    let end = x;
    if (trimLeft) while (end > pos && isSpace(src[end - 1])) end--;
    if (end > pos) emit('text', pos, end);
    let p = x + 2 + (trimLeft ? 2 : 0);
    if (src.startsWith('/*', p)) {
      const close = src.indexOf('*/', p + 2);
      if (close < 0) return fail('unclosed comment', x);
      p = close + 2;
      const [dl, trim] = rightDelimAt(p);
      if (dl === 0) return fail('comment ends before closing delimiter', x);
      p += dl;
      pos = trim ? skipSpaceAfter(p) : p;
      continue;
    }
    emit('ldelim', x, x + 2);
    let depth = 0;
    for (;;) {
      const [dl, trim] = rightDelimAt(p);
      if (dl > 0) {
        if (depth > 0) return fail('unclosed left paren', p);
        emit('rdelim', p, p + dl);
        p += dl;
        if (trim) p = skipSpaceAfter(p);
        break;
      }
      const c = src[p];
      if (c === undefined) return fail('unclosed action', p);
      const start = p;
      if (isSpace(c)) {
        while (isSpace(src[p]) && rightDelimAt(p)[0] !== 4) p++;
        if (p > start) emit('space', start, p);
        continue;
      }
      p++;
      switch (c) {
        case '=':
          emit('assign', start, p);
          continue;
        case ':':
          if (src[p] !== '=') return fail('expected :=', start);
          emit('declare', start, ++p);
          continue;
        case '|':
          emit('pipe', start, p);
          continue;
        case '(':
          depth++;
          emit('lparen', start, p);
          continue;
        case ')':
          if (--depth < 0) return fail('unexpected right paren', start);
          emit('rparen', start, p);
          continue;
        case '"':
        case "'": {
          for (;;) {
            const d = src[p++];
            if (d === '\\' && src[p] !== undefined && src[p] !== '\n') p++;
            else if (d === undefined || d === '\n')
              return fail(
                c === '"' ? 'unterminated quoted string' : 'unterminated character constant',
                start,
              );
            else if (d === c) break;
          }
          emit(c === '"' ? 'string' : 'charconst', start, p);
          continue;
        }
        case '`': {
          const close = src.indexOf('`', p);
          if (close < 0) return fail('unterminated raw quoted string', start);
          p = close + 1;
          emit('rawstring', start, p);
          continue;
        }
      }
      if (c === '$' || (c === '.' && !(src[p]! >= '0' && src[p]! <= '9'))) {
        if (atTerminator(p)) {
          emit(c === '$' ? 'var' : 'dot', start, p);
          continue;
        }
        while (isAlnum(src[p])) p++;
        if (!atTerminator(p)) return fail(`bad character ${charDesc(src[p]!)}`, p);
        emit(c === '$' ? 'var' : 'field', start, p);
        continue;
      }
      if (c === '.' || c === '+' || c === '-' || (c >= '0' && c <= '9')) {
        p = scanNumber(src, start);
        if (isAlnum(src[p])) return fail(`bad number syntax: "${src.slice(start, p + 1)}"`, start);
        emit('number', start, p);
        continue;
      }
      if (isAlnum(c)) {
        while (isAlnum(src[p])) p++;
        if (!atTerminator(p)) return fail(`bad character ${charDesc(src[p]!)}`, p);
        const word = src.slice(start, p);
        if (keywords.has(word)) emit('keyword', start, p);
        else if (word === 'true' || word === 'false') emit('bool', start, p);
        else if (word === 'nil') emit('nil', start, p);
        else emit('ident', start, p);
        continue;
      }
      if (c.charCodeAt(0) < 0x7f && c.charCodeAt(0) >= 0x20) {
        emit('char', start, p);
        continue;
      }
      return fail(
        `unrecognized character in action: ${charDesc(String.fromCodePoint(src.codePointAt(start)!))}`,
        start,
      );
    }
    pos = p;
  }
  toks.push({ t: 'eof', v: '', pos: src.length });
  return toks;
}

function scanNumber(src: string, p: number): number {
  const acceptRun = (set: string): void => {
    while (src[p] !== undefined && set.includes(src[p]!)) p++;
  };
  const accept = (set: string): boolean => {
    if (src[p] !== undefined && set.includes(src[p]!)) {
      p++;
      return true;
    }
    return false;
  };
  accept('+-');
  let digits = '0123456789_';
  if (accept('0')) {
    if (accept('xX')) digits = '0123456789abcdefABCDEF_';
    else if (accept('oO')) digits = '01234567_';
    else if (accept('bB')) digits = '01_';
  }
  acceptRun(digits);
  if (accept('.')) acceptRun(digits);
  if (digits.length === 11 && accept('eE')) {
    accept('+-');
    acceptRun('0123456789_');
  }
  return p;
}

// ---------------------------------------------------------------- nodes

interface FieldNode {
  k: 'field';
  pos: number;
  idents: string[];
}
interface VarNode {
  k: 'var';
  pos: number;
  idents: string[]; // idents[0] is the variable name with its $
}
interface ChainNode {
  k: 'chain';
  pos: number;
  node: ArgNode;
  fields: string[];
}
interface IdentNode {
  k: 'ident';
  pos: number;
  name: string;
}
interface LitNode {
  k: 'dot' | 'nil' | 'bool' | 'number' | 'string';
  pos: number;
  text: string;
  value: unknown;
}
type ArgNode = FieldNode | VarNode | ChainNode | IdentNode | LitNode | PipeNode;
interface CmdNode {
  k: 'cmd';
  pos: number;
  args: ArgNode[];
}
interface PipeNode {
  k: 'pipe';
  pos: number;
  isAssign: boolean;
  decl: VarNode[];
  cmds: CmdNode[];
}
interface ControlNode {
  k: 'if' | 'with' | 'range';
  pos: number;
  pipe: PipeNode;
  list: Node[];
  elseList: Node[] | null;
}
type Node =
  | { k: 'text'; pos: number; text: string }
  | { k: 'action'; pos: number; pipe: PipeNode }
  | ControlNode
  | { k: 'template'; pos: number; name: string; pipe: PipeNode | null }
  | { k: 'break' | 'continue'; pos: number };
type ListEnd = { k: 'end' | 'else'; pos: number };
const isListEnd = (n: Node | ListEnd): n is ListEnd => n.k === 'end' || n.k === 'else';

function nodeString(n: ArgNode | CmdNode | Node): string {
  switch (n.k) {
    case 'field':
      return '.' + n.idents.join('.');
    case 'var':
      return n.idents.join('.');
    case 'chain': {
      const inner = n.node.k === 'pipe' ? '(' + nodeString(n.node) + ')' : nodeString(n.node);
      return inner + '.' + n.fields.join('.');
    }
    case 'ident':
      return n.name;
    case 'dot':
    case 'nil':
    case 'bool':
    case 'number':
    case 'string':
      return n.text;
    case 'cmd':
      return n.args.map((a) => (a.k === 'pipe' ? '(' + nodeString(a) + ')' : nodeString(a))).join(' ');
    case 'pipe': {
      const decl = n.decl.length ? n.decl.map(nodeString).join(', ') + (n.isAssign ? ' = ' : ' := ') : '';
      return decl + n.cmds.map(nodeString).join(' | ');
    }
    case 'text':
      return JSON.stringify(n.text);
    case 'action':
      return '{{' + nodeString(n.pipe) + '}}';
    case 'if':
    case 'with':
    case 'range':
      return `{{${n.k} ${nodeString(n.pipe)}}}`;
    case 'template':
      return `{{template ${JSON.stringify(n.name)}${n.pipe ? ' ' + nodeString(n.pipe) : ''}}}`;
    case 'break':
    case 'continue':
      return `{{${n.k}}}`;
  }
}

// ---------------------------------------------------------------- parser

/** A parsed template: run it with execute(). */
export interface Template {
  readonly source: string;
  readonly root: readonly Node[];
  readonly defs: ReadonlyMap<string, readonly Node[]>;
  readonly funcs: FuncMap;
}

function unquote(text: string): string {
  const q = text[0];
  if (q === '`') return text.slice(1, -1).replace(/\r/g, '');
  const body = text.slice(1, -1);
  let out = '';
  let bytes: number[] = [];
  const flush = (): void => {
    if (bytes.length) out += Buffer.from(bytes).toString('utf8');
    bytes = [];
  };
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      flush();
      if (c === q) throw new Error('invalid syntax');
      out += c;
      continue;
    }
    const e = body[++i];
    const simple: Record<string, string> = {
      a: '\x07',
      b: '\b',
      f: '\f',
      n: '\n',
      r: '\r',
      t: '\t',
      v: '\v',
      '\\': '\\',
    };
    if (e !== undefined && e in simple) {
      flush();
      out += simple[e];
    } else if (e === q) {
      flush();
      out += q;
    } else if (e === 'x') {
      const h = body.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(h)) throw new Error('invalid syntax');
      bytes.push(parseInt(h, 16));
      i += 2;
    } else if (e !== undefined && e >= '0' && e <= '7') {
      const o = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(o) || parseInt(o, 8) > 255) throw new Error('invalid syntax');
      bytes.push(parseInt(o, 8));
      i += 2;
    } else if (e === 'u' || e === 'U') {
      const len = e === 'u' ? 4 : 8;
      const h = body.slice(i + 1, i + 1 + len);
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(h)) throw new Error('invalid syntax');
      const cp = parseInt(h, 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new Error('invalid syntax');
      flush();
      out += String.fromCodePoint(cp);
      i += len;
    } else throw new Error('invalid syntax');
  }
  flush();
  return out;
}

function parseNumber(text: string, isChar: boolean): number | undefined {
  if (isChar) {
    const s = unquote(text);
    const cps = [...s];
    return cps.length === 1 ? cps[0]!.codePointAt(0) : undefined;
  }
  let t = text;
  let sign = 1;
  if (t[0] === '+' || t[0] === '-') {
    if (t[0] === '-') sign = -1;
    t = t.slice(1);
  }
  if (/^0[xXoObB]/.test(t)) {
    const clean = t.replace(/_/g, '');
    const n = Number(clean);
    return Number.isNaN(n) || /_$|_[^0-9a-fA-F]|[^xXoObB0-9a-fA-F_]/.test(t) ? undefined : sign * n;
  }
  if (/^0[0-7_]+$/.test(t)) return sign * parseInt(t.replace(/_/g, ''), 8);
  if (/^(\d+(_\d+)*)?(\.\d*)?([eE][+-]?\d+)?$/.test(t) && /\d/.test(t)) {
    if (t.includes('_') && !/^\d+(_\d+)*$/.test(t)) return undefined;
    return sign * Number(t.replace(/_/g, ''));
  }
  return undefined;
}

class Parser {
  private i = 0;
  private vars: string[] = ['$'];
  private rangeDepth = 0;
  private actionStart = -1;
  readonly defs = new Map<string, Node[]>();

  constructor(
    private readonly src: string,
    private readonly toks: Tok[],
    private readonly funcs: FuncMap,
  ) {}

  private lineOf(pos: number): number {
    let n = 1;
    for (let i = 0; i < pos && i < this.src.length; i++) if (this.src.charCodeAt(i) === 10) n++;
    return n;
  }

  private fail(msg: string, tok: Tok = this.toks[Math.max(0, this.i - 1)]!): never {
    throw new TemplateError(`template: :${this.lineOf(tok.pos)}: ${msg}`);
  }

  private next(): Tok {
    const tok = this.toks[Math.min(this.i, this.toks.length - 1)]!;
    this.i++;
    if (tok.t === 'error') {
      let extra = '';
      const line = this.lineOf(tok.pos);
      if (this.actionStart >= 0 && this.lineOf(this.actionStart) !== line) {
        extra = `${tok.v.endsWith(' action') ? '' : ' in action'} started at :${this.lineOf(this.actionStart)}`;
      }
      this.fail(tok.v + extra, tok);
    }
    return tok;
  }
  private backup(n = 1): void {
    this.i -= n;
  }
  private peek(): Tok {
    const t = this.next();
    this.backup();
    return t;
  }
  private nextNonSpace(): Tok {
    let t = this.next();
    while (t.t === 'space') t = this.next();
    return t;
  }
  private peekNonSpace(): Tok {
    const t = this.nextNonSpace();
    this.backup();
    return t;
  }

  private describe(tok: Tok): string {
    switch (tok.t) {
      case 'eof':
        return 'EOF';
      case 'keyword':
        return `<${tok.v}>`;
      case 'space':
        return 'space';
      default:
        return tok.v.length > 10 ? JSON.stringify(tok.v.slice(0, 10)) + '...' : JSON.stringify(tok.v);
    }
  }
  private unexpected(tok: Tok, context: string): never {
    this.fail(`unexpected ${this.describe(tok)} in ${context}`, tok);
  }
  private expect(t: TokType, context: string): Tok {
    const tok = this.nextNonSpace();
    if (tok.t !== t) this.unexpected(tok, context);
    return tok;
  }

  parse(): Node[] {
    const root: Node[] = [];
    while (this.peek().t !== 'eof') {
      if (this.peek().t === 'ldelim') {
        const save = this.i;
        this.next();
        const kw = this.nextNonSpace();
        if (kw.t === 'keyword' && kw.v === 'define') {
          this.parseDefinition();
          continue;
        }
        this.i = save;
      }
      const n = this.textOrAction();
      if (isListEnd(n)) this.fail(`unexpected {{${n.k}}}`);
      else root.push(n);
    }
    return root;
  }

  private parseDefinition(): void {
    const tok = this.nextNonSpace();
    const name = this.templateName(tok, 'define clause');
    this.expect('rdelim', 'define clause');
    const saved = this.vars;
    this.vars = ['$'];
    const [list, end] = this.itemList();
    if (end.k !== 'end') this.fail('unexpected {{else}} in define clause');
    this.vars = saved;
    this.defs.set(name, list);
  }

  private templateName(tok: Tok, context: string): string {
    if (tok.t !== 'string' && tok.t !== 'rawstring') this.unexpected(tok, context);
    try {
      return unquote(tok.v);
    } catch (e) {
      return this.fail((e as Error).message, tok);
    }
  }

  private itemList(): [Node[], ListEnd] {
    const list: Node[] = [];
    while (this.peekNonSpace().t !== 'eof') {
      const n = this.textOrAction();
      if (isListEnd(n)) return [list, n];
      else list.push(n);
    }
    return this.fail('unexpected EOF');
  }

  private textOrAction(): Node | ListEnd {
    const tok = this.nextNonSpace();
    if (tok.t === 'text') return { k: 'text', pos: tok.pos, text: tok.v };
    if (tok.t === 'ldelim') {
      const saved = this.actionStart;
      this.actionStart = tok.pos;
      try {
        return this.action();
      } finally {
        this.actionStart = saved;
      }
    }
    return this.unexpected(tok, 'input');
  }

  private action(): Node | ListEnd {
    const tok = this.nextNonSpace();
    if (tok.t === 'keyword') {
      switch (tok.v) {
        case 'block':
          return this.blockControl();
        case 'break':
        case 'continue': {
          const t = this.nextNonSpace();
          if (t.t !== 'rdelim') this.unexpected(t, `{{${tok.v}}}`);
          if (this.rangeDepth === 0) this.fail(`{{${tok.v}}} outside {{range}}`, tok);
          return { k: tok.v, pos: tok.pos };
        }
        case 'else': {
          const peek = this.peekNonSpace();
          if (peek.t === 'keyword' && (peek.v === 'if' || peek.v === 'with'))
            return { k: 'else', pos: peek.pos };
          return { k: 'else', pos: this.expect('rdelim', 'else').pos };
        }
        case 'end':
          return { k: 'end', pos: this.expect('rdelim', 'end').pos };
        case 'if':
        case 'with':
        case 'range':
          return this.control(tok.v, tok.pos);
        case 'template':
          return this.templateControl();
        case 'define':
          this.fail('unexpected <define> in command', tok);
      }
    }
    this.backup();
    return { k: 'action', pos: tok.pos, pipe: this.pipeline('command', 'rdelim') };
  }

  private control(kind: 'if' | 'with' | 'range', pos: number): Node {
    const mark = this.vars.length;
    try {
      const pipe = this.pipeline(kind, 'rdelim');
      if (kind === 'range') this.rangeDepth++;
      const [list, next] = this.itemList();
      if (kind === 'range') this.rangeDepth--;
      let elseList: Node[] | null = null;
      if (next.k === 'else') {
        const peek = this.peek();
        if ((kind === 'if' || kind === 'with') && peek.t === 'keyword' && peek.v === kind) {
          const t = this.next();
          elseList = [this.control(kind, t.pos)];
        } else {
          const [els, end] = this.itemList();
          if (end.k !== 'end') this.fail('expected end; found {{else}}');
          elseList = els;
        }
      }
      return { k: kind, pos, pipe, list, elseList };
    } finally {
      this.vars.length = mark;
    }
  }

  private templateControl(): Node {
    const tok = this.nextNonSpace();
    const name = this.templateName(tok, 'template clause');
    let pipe: PipeNode | null = null;
    if (this.nextNonSpace().t !== 'rdelim') {
      this.backup();
      pipe = this.pipeline('template clause', 'rdelim');
    }
    return { k: 'template', pos: tok.pos, name, pipe };
  }

  private blockControl(): Node {
    const tok = this.nextNonSpace();
    const name = this.templateName(tok, 'block clause');
    const pipe = this.pipeline('block clause', 'rdelim');
    const saved = this.vars;
    const savedDepth = this.rangeDepth;
    this.vars = ['$'];
    this.rangeDepth = 0;
    const [list, end] = this.itemList();
    if (end.k !== 'end') this.fail('unexpected {{else}} in block clause');
    this.vars = saved;
    this.rangeDepth = savedDepth;
    this.defs.set(name, list);
    return { k: 'template', pos: tok.pos, name, pipe };
  }

  private pipeline(context: string, end: 'rdelim' | 'rparen'): PipeNode {
    const pipe: PipeNode = { k: 'pipe', pos: this.peekNonSpace().pos, isAssign: false, decl: [], cmds: [] };
    for (;;) {
      const v = this.peekNonSpace();
      if (v.t !== 'var') break;
      const save = this.i;
      this.nextNonSpace();
      const next = this.peekNonSpace();
      if (next.t === 'assign' || next.t === 'declare') {
        pipe.isAssign = next.t === 'assign';
        this.nextNonSpace();
        pipe.decl.push({ k: 'var', pos: v.pos, idents: [v.v] });
        this.vars.push(v.v);
        break;
      }
      if (next.t === 'char' && next.v === ',') {
        this.nextNonSpace();
        pipe.decl.push({ k: 'var', pos: v.pos, idents: [v.v] });
        this.vars.push(v.v);
        if (context === 'range' && pipe.decl.length < 2) {
          const p = this.peekNonSpace();
          if (p.t === 'var' || p.t === 'rdelim' || p.t === 'rparen') continue;
          this.fail('range can only initialize variables', p);
        }
        this.fail(`too many declarations in ${context}`, next);
      }
      this.i = save;
      break;
    }
    for (;;) {
      const tok = this.nextNonSpace();
      if (tok.t === end) {
        if (pipe.cmds.length === 0) this.fail(`missing value for ${context}`, tok);
        pipe.cmds.slice(1).forEach((c, i) => {
          const k = c.args[0]!.k;
          if (k === 'bool' || k === 'dot' || k === 'nil' || k === 'number' || k === 'string')
            this.fail(`non executable command in pipeline stage ${i + 2}`, tok);
        });
        return pipe;
      }
      switch (tok.t) {
        case 'bool':
        case 'charconst':
        case 'dot':
        case 'field':
        case 'ident':
        case 'number':
        case 'nil':
        case 'rawstring':
        case 'string':
        case 'var':
        case 'lparen':
          this.backup();
          pipe.cmds.push(this.command());
          break;
        default:
          this.unexpected(tok, context);
      }
    }
  }

  private command(): CmdNode {
    const cmd: CmdNode = { k: 'cmd', pos: this.peekNonSpace().pos, args: [] };
    for (;;) {
      this.peekNonSpace();
      const operand = this.operand();
      if (operand) cmd.args.push(operand);
      const tok = this.next();
      if (tok.t === 'space') continue;
      if (tok.t === 'rdelim' || tok.t === 'rparen') this.backup();
      else if (tok.t !== 'pipe') this.unexpected(tok, 'operand');
      break;
    }
    if (cmd.args.length === 0) this.fail('empty command');
    return cmd;
  }

  private operand(): ArgNode | null {
    const node = this.term();
    if (!node) return null;
    if (this.peek().t !== 'field') return node;
    const pos = this.peek().pos;
    const fields: string[] = [];
    while (this.peek().t === 'field') fields.push(this.next().v.slice(1));
    switch (node.k) {
      case 'field':
        return { k: 'field', pos: node.pos, idents: [...node.idents, ...fields] };
      case 'var':
        return { k: 'var', pos: node.pos, idents: [...node.idents, ...fields] };
      case 'bool':
      case 'string':
      case 'number':
      case 'nil':
      case 'dot':
        return this.fail(`unexpected . after term ${JSON.stringify(nodeString(node))}`);
      default:
        return { k: 'chain', pos, node, fields };
    }
  }

  private term(): ArgNode | null {
    const tok = this.nextNonSpace();
    switch (tok.t) {
      case 'ident':
        if (!(tok.v in this.funcs)) this.fail(`function ${JSON.stringify(tok.v)} not defined`, tok);
        return { k: 'ident', pos: tok.pos, name: tok.v };
      case 'dot':
        return { k: 'dot', pos: tok.pos, text: '.', value: undefined };
      case 'nil':
        return { k: 'nil', pos: tok.pos, text: 'nil', value: undefined };
      case 'var':
        if (!this.vars.includes(tok.v)) this.fail(`undefined variable ${JSON.stringify(tok.v)}`, tok);
        return { k: 'var', pos: tok.pos, idents: [tok.v] };
      case 'field':
        return { k: 'field', pos: tok.pos, idents: [tok.v.slice(1)] };
      case 'bool':
        return { k: 'bool', pos: tok.pos, text: tok.v, value: tok.v === 'true' };
      case 'number':
      case 'charconst': {
        let value: number | undefined;
        try {
          value = parseNumber(tok.v, tok.t === 'charconst');
        } catch {
          value = undefined;
        }
        if (value === undefined) {
          this.fail(
            tok.t === 'charconst'
              ? `malformed character constant: ${tok.v}`
              : `illegal number syntax: ${JSON.stringify(tok.v)}`,
            tok,
          );
        }
        return { k: 'number', pos: tok.pos, text: tok.v, value };
      }
      case 'lparen':
        return this.pipeline('parenthesized pipeline', 'rparen');
      case 'string':
      case 'rawstring': {
        let value: string;
        try {
          value = unquote(tok.v);
        } catch (e) {
          return this.fail((e as Error).message, tok);
        }
        return { k: 'string', pos: tok.pos, text: tok.v, value };
      }
    }
    this.backup();
    return null;
  }
}

/** Parses Go template source with docker's functions (plus opts.funcs); throws TemplateError on bad syntax. */
export function parseTemplate(src: string, opts: ParseOptions = {}): Template {
  const funcs: FuncMap = { ...builtinFuncs, ...dockerFuncs, ...opts.funcs };
  const parser = new Parser(src, lex(src), funcs);
  const root = parser.parse();
  return { source: src, root, defs: parser.defs, funcs };
}

// ---------------------------------------------------------------- executor

const MISSING = Symbol('missing');
type Final = unknown | typeof MISSING;

class BreakSignal {}
class ContinueSignal {}
const breakSignal = new BreakSignal();
const continueSignal = new ContinueSignal();

/** Returns Go's truth of a value: false, 0, "", nil and empty arrays or maps are false. */
export function isTrue(v: unknown): boolean {
  switch (kindOf(v)) {
    case 'nil':
      return false;
    case 'bool':
      return v as boolean;
    case 'int':
    case 'float':
      return typeof v === 'bigint' ? v !== 0n : v !== 0;
    case 'string':
      return (v as string).length > 0;
    case 'slice':
      return (v as ArrayLike<unknown>).length > 0;
    case 'map':
      return v instanceof Map ? v.size > 0 : Object.keys(v as object).length > 0;
    default:
      return true;
  }
}

function isResolver(v: unknown): v is FieldResolver {
  return typeof v === 'object' && v !== null && fieldResolver in v;
}

// Finds a property on a struct-like object, ignoring what every object inherits from Object.prototype.
function structMember(obj: object, name: string): { found: boolean; value: unknown } {
  for (
    let p: object | null = obj;
    p && p !== Object.prototype;
    p = Object.getPrototypeOf(p) as object | null
  ) {
    if (Object.prototype.hasOwnProperty.call(p, name)) {
      return { found: true, value: (obj as Record<string, unknown>)[name] };
    }
  }
  return { found: false, value: undefined };
}

type ParamType = 'any' | 'string' | 'int' | 'strings';

interface Builtin {
  params: ParamType[];
  variadic?: ParamType;
}

class State {
  private vars: { name: string; value: unknown }[];
  private node: ArgNode | CmdNode | Node | null = null;
  private depth = 0;

  constructor(
    private readonly tmpl: Template,
    private readonly funcs: FuncMap,
    readonly out: string[],
    data: unknown,
  ) {
    this.vars = [{ name: '$', value: data }];
  }

  private fail(msg: string): never {
    let where = ':';
    let ctx = '';
    if (this.node) {
      const before = this.tmpl.source.slice(0, this.node.pos);
      const line = 1 + (before.match(/\n/g)?.length ?? 0);
      const col = this.node.pos - (before.lastIndexOf('\n') + 1);
      where = `:${line}:${col}`;
      ctx = nodeString(this.node);
      if (ctx.length > 20) ctx = ctx.slice(0, 20) + '...';
    }
    throw new TemplateError(`template: ${where}: executing "" at <${ctx}>: ${msg}`);
  }

  walkList(dot: unknown, list: readonly Node[]): void {
    for (const n of list) this.walk(dot, n);
  }

  private walk(dot: unknown, node: Node): void {
    this.node = node;
    switch (node.k) {
      case 'text':
        this.out.push(node.text);
        return;
      case 'action': {
        const val = this.evalPipeline(dot, node.pipe);
        if (node.pipe.decl.length === 0) this.printValue(node, val);
        return;
      }
      case 'if':
      case 'with': {
        const mark = this.vars.length;
        const val = this.evalPipeline(dot, node.pipe);
        if (isTrue(val)) this.walkList(node.k === 'with' ? val : dot, node.list);
        else if (node.elseList) this.walkList(dot, node.elseList);
        this.vars.length = mark;
        return;
      }
      case 'range':
        return this.walkRange(dot, node);
      case 'template': {
        const def = this.tmpl.defs.get(node.name);
        if (!def) this.fail(`no such template ${JSON.stringify(node.name)}`);
        const newDot = node.pipe ? this.evalPipeline(dot, node.pipe) : undefined;
        if (++this.depth > 1000) this.fail('exceeded maximum template depth (1000)');
        const sub = new State(this.tmpl, this.funcs, this.out, newDot);
        sub.depth = this.depth;
        sub.walkList(newDot, def);
        this.depth--;
        return;
      }
      case 'break':
        throw breakSignal;
      case 'continue':
        throw continueSignal;
    }
  }

  private walkRange(dot: unknown, node: ControlNode): void {
    const mark = this.vars.length;
    const val = this.evalPipeline(dot, node.pipe);
    const decl = node.pipe.decl;
    const iterMark = this.vars.length;
    const one = (index: unknown, elem: unknown): boolean => {
      if (decl.length > 0) {
        if (node.pipe.isAssign) {
          if (decl.length > 1) {
            this.setVar(decl[0]!.idents[0]!, index);
            this.setVar(decl[1]!.idents[0]!, elem);
          } else this.setVar(decl[0]!.idents[0]!, elem);
        } else {
          this.vars[this.vars.length - 1]!.value = elem;
          if (decl.length > 1) this.vars[this.vars.length - 2]!.value = index;
        }
      }
      try {
        this.walkList(elem, node.list);
      } catch (e) {
        if (e === breakSignal) return false;
        if (e !== continueSignal) throw e;
      } finally {
        this.vars.length = iterMark;
      }
      return true;
    };
    let count = 0;
    const kind = kindOf(val);
    this.node = node;
    if (kind === 'slice') {
      const arr = val as ArrayLike<unknown>;
      for (let i = 0; i < arr.length; i++) {
        count++;
        if (!one(i, arr[i])) break;
      }
    } else if (kind === 'map') {
      for (const [k, v] of sortedEntries(val as object)) {
        count++;
        if (!one(k, v)) break;
      }
    } else if (kind === 'int') {
      if (decl.length > 1) this.fail(`can't use ${formatValue(val)} to iterate over more than one variable`);
      const n = Number(val);
      for (let i = 0; i < n; i++) {
        count++;
        if (!one(i, i)) break;
      }
    } else if (kind !== 'nil') {
      this.fail(`range can't iterate over ${formatValue(val)}`);
    }
    if (count === 0 && node.elseList) this.walkList(dot, node.elseList);
    this.vars.length = mark;
  }

  private printValue(node: Node, v: unknown): void {
    this.node = node;
    if (typeof v === 'function') this.fail(`can't print ${nodeString(node)} of type func`);
    this.out.push(v === undefined || v === null ? '<no value>' : formatValue(v));
  }

  private setVar(name: string, value: unknown): void {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      if (this.vars[i]!.name === name) {
        this.vars[i]!.value = value;
        return;
      }
    }
    this.fail(`undefined variable: ${name}`);
  }

  private varValue(name: string): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--)
      if (this.vars[i]!.name === name) return this.vars[i]!.value;
    return this.fail(`undefined variable: ${name}`);
  }

  private evalPipeline(dot: unknown, pipe: PipeNode): unknown {
    this.node = pipe;
    let value: Final = MISSING;
    for (const cmd of pipe.cmds) value = this.evalCommand(dot, cmd, value);
    for (const v of pipe.decl) {
      if (pipe.isAssign) this.setVar(v.idents[0]!, value);
      else this.vars.push({ name: v.idents[0]!, value });
    }
    return value;
  }

  private notAFunction(args: ArgNode[], final: Final): void {
    if (args.length > 1 || final !== MISSING)
      this.fail(`can't give argument to non-function ${nodeString(args[0]!)}`);
  }

  private evalCommand(dot: unknown, cmd: CmdNode, final: Final): unknown {
    const first = cmd.args[0]!;
    switch (first.k) {
      case 'field':
        this.node = first;
        return this.evalFieldChain(dot, dot, first.idents, cmd.args, final);
      case 'chain':
        return this.evalChain(dot, first, cmd.args, final);
      case 'ident':
        return this.evalFunction(dot, first, cmd, cmd.args, final);
      case 'pipe':
        this.node = first;
        this.notAFunction(cmd.args, final);
        return this.evalPipeline(dot, first);
      case 'var':
        return this.evalVariable(dot, first, cmd.args, final);
    }
    this.node = first;
    this.notAFunction(cmd.args, final);
    if (first.k === 'nil') this.fail('nil is not a command');
    return first.k === 'dot' ? dot : first.value;
  }

  private evalChain(dot: unknown, chain: ChainNode, args: ArgNode[], final: Final): unknown {
    this.node = chain;
    if (chain.node.k === 'nil') this.fail(`indirection through explicit nil in ${nodeString(chain)}`);
    const recv = this.evalArg(dot, chain.node);
    this.node = chain;
    return this.evalFieldChain(dot, recv, chain.fields, args, final);
  }

  private evalVariable(dot: unknown, v: VarNode, args: ArgNode[], final: Final): unknown {
    this.node = v;
    const value = this.varValue(v.idents[0]!);
    if (v.idents.length === 1) {
      this.notAFunction(args, final);
      return value;
    }
    return this.evalFieldChain(dot, value, v.idents.slice(1), args, final);
  }

  private evalFieldChain(
    dot: unknown,
    recv: unknown,
    idents: string[],
    args: ArgNode[],
    final: Final,
  ): unknown {
    if (isResolver(recv)) {
      if (args.length > 1 || final !== MISSING)
        this.fail(`${idents.at(-1)} is not a method but has arguments`);
      return recv[fieldResolver](idents);
    }
    const n = idents.length;
    for (let i = 0; i < n - 1; i++) recv = this.evalField(dot, idents[i]!, [], MISSING, recv);
    return this.evalField(dot, idents[n - 1]!, args, final, recv);
  }

  private evalField(dot: unknown, name: string, args: ArgNode[], final: Final, recv: unknown): unknown {
    if (recv === undefined || recv === null) return undefined;
    const hasArgs = args.length > 1 || final !== MISSING;
    const kind = kindOf(recv);
    let found = false;
    let value: unknown;
    if (kind === 'map') {
      if (recv instanceof Map) {
        found = recv.has(name);
        value = recv.get(name);
      } else if (Object.prototype.hasOwnProperty.call(recv, name)) {
        found = true;
        value = (recv as Record<string, unknown>)[name];
      }
      if (typeof value !== 'function') {
        if (hasArgs) this.fail(`${name} is not a method but has arguments`);
        return found ? value : undefined;
      }
    } else if (kind === 'struct') {
      ({ found, value } = structMember(recv as object, name));
      if (!found) this.fail(`can't evaluate field ${name} in type ${goTypeName(recv)}`);
      if (typeof value !== 'function') {
        if (hasArgs) this.fail(`${name} has arguments but cannot be invoked as function`);
        return value;
      }
    } else {
      this.fail(`can't evaluate field ${name} in type ${goTypeName(recv)}`);
    }
    // A function-valued member is a method: call it with the arguments and the piped value.
    const argv = args.slice(1).map((a) => this.evalArg(dot, a));
    if (final !== MISSING) argv.push(final);
    try {
      return (value as TemplateFunc).apply(recv, argv);
    } catch (e) {
      return this.fail(`error calling ${name}: ${(e as Error).message ?? String(e)}`);
    }
  }

  private evalFunction(dot: unknown, ident: IdentNode, cmd: CmdNode, args: ArgNode[], final: Final): unknown {
    this.node = ident;
    const name = ident.name;
    const fn = this.funcs[name];
    if (!fn) this.fail(`${JSON.stringify(name)} is not a defined function`);
    const spec = funcSpecs.get(fn);
    const argNodes = args.slice(1);
    if (name === 'and' || name === 'or') {
      if (argNodes.length === 0 && final === MISSING)
        this.fail(`wrong number of args for ${name}: want at least 1 got 0`);
      let v: unknown;
      for (const a of argNodes) {
        v = this.evalArg(dot, a);
        if (isTrue(v) === (name === 'or')) return v;
      }
      return final !== MISSING ? final : v;
    }
    const nargs = argNodes.length + (final === MISSING ? 0 : 1);
    if (spec) {
      const fixed = spec.params.length;
      if (spec.variadic ? nargs < fixed : nargs !== fixed) {
        this.fail(
          `wrong number of args for ${name}: want ${spec.variadic ? 'at least ' : ''}${fixed} got ${nargs}`,
        );
      }
    }
    const argv: unknown[] = [];
    argNodes.forEach((a, i) =>
      argv.push(this.checkType(this.evalArg(dot, a), spec ? paramAt(spec, i) : 'any', a)),
    );
    if (final !== MISSING) {
      this.node = ident;
      argv.push(this.checkType(final, spec ? paramAt(spec, argNodes.length) : 'any', null));
    }
    try {
      return fn(...argv);
    } catch (e) {
      this.node = cmd;
      return this.fail(`error calling ${name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private checkType(v: unknown, t: ParamType, node: ArgNode | null): unknown {
    const literal =
      node !== null && (node.k === 'number' || node.k === 'bool' || node.k === 'string' || node.k === 'nil');
    const bad = (want: string, lit: string): never => {
      if (node) this.node = node;
      if (node?.k === 'nil') this.fail(`cannot assign nil to ${want}`);
      if (literal) this.fail(`expected ${lit}; found ${nodeString(node)}`);
      return this.fail(`wrong type for value; expected ${want}; got ${goTypeName(v)}`);
    };
    switch (t) {
      case 'any':
        return v;
      case 'string':
        return typeof v === 'string' ? v : bad('string', 'string');
      case 'int':
        if (typeof v === 'bigint') return Number(v);
        return typeof v === 'number' && Number.isInteger(v) ? v : bad('int', 'integer');
      case 'strings':
        return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : bad('[]string', '[]string');
    }
  }

  private evalArg(dot: unknown, n: ArgNode): unknown {
    this.node = n;
    switch (n.k) {
      case 'dot':
        return dot;
      case 'nil':
        return undefined;
      case 'field':
        return this.evalFieldChain(dot, dot, n.idents, [n], MISSING);
      case 'var':
        return this.evalVariable(dot, n, [n], MISSING);
      case 'pipe':
        return this.evalPipeline(dot, n);
      case 'ident':
        return this.evalFunction(dot, n, { k: 'cmd', pos: n.pos, args: [n] }, [n], MISSING);
      case 'chain':
        return this.evalChain(dot, n, [n], MISSING);
      default:
        return n.value;
    }
  }
}

function paramAt(spec: Builtin, i: number): ParamType {
  return i < spec.params.length ? spec.params[i]! : (spec.variadic ?? 'any');
}

/** Runs a parsed template on data and returns its output; throws TemplateError on a run-time error. */
export function execute(template: Template, data: unknown, funcs?: FuncMap): string {
  const out: string[] = [];
  executeInto(template, data, out, funcs);
  return out.join('');
}

/** Runs a template appending its output to `out`, which keeps what was written before an error. */
export function executeInto(template: Template, data: unknown, out: string[], funcs?: FuncMap): void {
  const state = new State(template, funcs ? { ...template.funcs, ...funcs } : template.funcs, out, data);
  try {
    state.walkList(data, template.root);
  } catch (e) {
    if (e === breakSignal || e === continueSignal) return;
    throw e;
  }
}

/** Parses and runs a template in one call. */
export function renderTemplate(src: string, data: unknown, opts: ParseOptions = {}): string {
  return execute(parseTemplate(src, opts), data);
}

// ---------------------------------------------------------------- functions

const funcSpecs = new Map<TemplateFunc, Builtin>();
const register = (funcs: FuncMap, specs: Record<string, Builtin>): void => {
  for (const [name, spec] of Object.entries(specs)) funcSpecs.set(funcs[name]!, spec);
};

const builtinSpecs: Record<string, Builtin> = {
  and: { params: ['any'], variadic: 'any' },
  or: { params: ['any'], variadic: 'any' },
  not: { params: ['any'] },
  len: { params: ['any'] },
  index: { params: ['any'], variadic: 'any' },
  slice: { params: ['any'], variadic: 'any' },
  call: { params: ['any'], variadic: 'any' },
  eq: { params: ['any'], variadic: 'any' },
  ne: { params: ['any', 'any'] },
  lt: { params: ['any', 'any'] },
  le: { params: ['any', 'any'] },
  gt: { params: ['any', 'any'] },
  ge: { params: ['any', 'any'] },
  print: { params: [], variadic: 'any' },
  println: { params: [], variadic: 'any' },
  printf: { params: ['string'], variadic: 'any' },
  html: { params: [], variadic: 'any' },
  js: { params: [], variadic: 'any' },
  urlquery: { params: [], variadic: 'any' },
};

const dockerSpecs: Record<string, Builtin> = {
  json: { params: ['any'] },
  split: { params: ['string', 'string'] },
  join: { params: ['strings', 'string'] },
  title: { params: ['string'] },
  lower: { params: ['string'] },
  upper: { params: ['string'] },
  pad: { params: ['string', 'int', 'int'] },
  truncate: { params: ['string', 'int'] },
};

const headerSpecs: Record<string, Builtin> = {
  json: { params: ['string'] },
  split: { params: ['string', 'string'] },
  join: { params: ['string', 'string'] },
  title: { params: ['string'] },
  lower: { params: ['string'] },
  upper: { params: ['string'] },
  truncate: { params: ['string', 'int'] },
};

type Basic = 'bool' | 'number' | 'string' | 'nil' | 'other';
function basicKind(v: unknown): Basic {
  const k = kindOf(v);
  if (k === 'int' || k === 'float') return 'number';
  if (k === 'bool' || k === 'string' || k === 'nil') return k;
  return 'other';
}
const num = (v: unknown): number => Number(v);

function eq(a: unknown, ...rest: unknown[]): boolean {
  if (rest.length === 0) throw new Error('missing argument for comparison');
  const ka = basicKind(a);
  for (const b of rest) {
    const kb = basicKind(b);
    if (ka !== kb) {
      if (ka !== 'nil' && kb !== 'nil') throw new Error('incompatible types for comparison');
      continue;
    }
    if (ka === 'other') {
      throw new Error(
        `non-comparable types ${formatValue(a)}: ${goTypeName(a)}, ${goTypeName(b)}: ${formatValue(b)}`,
      );
    }
    if (ka === 'nil') return true;
    if (ka === 'number' ? num(a) === num(b) : a === b) return true;
  }
  return false;
}

function lessThan(a: unknown, b: unknown): boolean {
  const ka = basicKind(a);
  const kb = basicKind(b);
  if (ka !== 'number' && ka !== 'string') throw new Error('invalid type for comparison');
  if (ka !== kb) throw new Error('incompatible types for comparison');
  return ka === 'number' ? num(a) < num(b) : (a as string) < (b as string);
}

function length(v: unknown): number {
  switch (kindOf(v)) {
    case 'nil':
      return 0;
    case 'string':
      return Buffer.byteLength(v as string, 'utf8');
    case 'slice':
      return (v as ArrayLike<unknown>).length;
    case 'map':
      return v instanceof Map ? v.size : Object.keys(v as object).length;
    default:
      throw new Error(`len of type ${goTypeName(v)}`);
  }
}

function indexArg(i: unknown, cap: number): number {
  if (typeof i !== 'number' || !Number.isInteger(i)) {
    throw new Error(`cannot index slice/array with type ${goTypeName(i)}`);
  }
  if (i < 0 || i >= cap) throw new Error(`index out of range: ${i}`);
  return i;
}

function index(item: unknown, ...indexes: unknown[]): unknown {
  for (const i of indexes) {
    switch (kindOf(item)) {
      case 'nil':
        return undefined;
      case 'slice': {
        const arr = item as ArrayLike<unknown>;
        item = arr[indexArg(i, arr.length)];
        break;
      }
      case 'string': {
        const bytes = Buffer.from(item as string, 'utf8');
        item = bytes[indexArg(i, bytes.length)];
        break;
      }
      case 'map':
        if (item instanceof Map) item = item.get(i);
        else if (typeof i !== 'string') throw new Error(`value has type ${goTypeName(i)}; should be string`);
        else
          item = Object.prototype.hasOwnProperty.call(item, i)
            ? (item as Record<string, unknown>)[i]
            : undefined;
        break;
      default:
        throw new Error(`can't index item of type ${goTypeName(item)}`);
    }
  }
  return item;
}

function slice(item: unknown, ...idx: unknown[]): unknown {
  const k = kindOf(item);
  if (k !== 'string' && k !== 'slice') throw new Error(`can't slice item of type ${goTypeName(item)}`);
  if (idx.length > 2) throw new Error(`too many slice indexes: ${idx.length}`);
  const len = k === 'string' ? Buffer.byteLength(item as string) : (item as ArrayLike<unknown>).length;
  const lo = idx.length > 0 ? indexArg(idx[0], len + 1) : 0;
  const hi = idx.length > 1 ? indexArg(idx[1], len + 1) : len;
  if (lo > hi) throw new Error(`invalid slice index: ${lo} > ${hi}`);
  if (k === 'string')
    return Buffer.from(item as string, 'utf8')
      .subarray(lo, hi)
      .toString('utf8');
  return Array.prototype.slice.call(item, lo, hi);
}

// Go's evalArgs for html/js/urlquery: one string argument is used as is, otherwise fmt.Sprint.
const joinArgs = (args: unknown[]): string =>
  args.length === 1 && typeof args[0] === 'string' ? args[0] : sprint(args);

function jsEscape(s: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === "'") out += "\\'";
    else if (ch === '"') out += '\\"';
    else if ('<>&='.includes(ch) || cp < 0x20) out += '\\u' + cp.toString(16).toUpperCase().padStart(4, '0');
    else out += ch;
  }
  return out;
}

const builtinFuncs: FuncMap = {
  and: () => undefined, // evaluated lazily by the executor
  or: () => undefined,
  not: (v) => !isTrue(v),
  len: length,
  index,
  slice,
  call: (fn, ...args) => {
    if (typeof fn !== 'function') throw new Error(`non-function of type ${goTypeName(fn)}`);
    return (fn as TemplateFunc)(...args);
  },
  eq,
  ne: (a, b) => !eq(a, b),
  lt: (a, b) => lessThan(a, b),
  le: (a, b) => lessThan(a, b) || eq(a, b),
  gt: (a, b) => !lessThan(a, b) && !eq(a, b),
  ge: (a, b) => !lessThan(a, b),
  print: (...args) => sprint(args),
  println: (...args) => sprintln(args),
  printf: (f, ...args) => sprintf(f as string, args),
  html: (...args) =>
    joinArgs(args).replace(
      /[<>&'"\0]/g,
      (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&#39;', '"': '&#34;', '\0': '\uFFFD' })[c]!,
    ),
  js: (...args) => jsEscape(joinArgs(args)),
  urlquery: (...args) =>
    encodeURIComponent(joinArgs(args))
      .replace(/%20/g, '+')
      .replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase()),
};

// Go's strings.Title: upper-cases the first letter of each word (a word follows a separator).
function title(s: string): string {
  let prev = ' ';
  let out = '';
  for (const ch of s) {
    const sep = /[\p{L}\p{Nd}_]/u.test(prev)
      ? false
      : /[\s\p{P}\p{S}]/u.test(prev) || prev.charCodeAt(0) < 0x80;
    out += sep ? upperRune(ch) : ch;
    prev = ch;
  }
  return out;
}
// Go maps case rune by rune, never growing a string ('ß' stays 'ß').
function upperRune(ch: string): string {
  const u = ch.toUpperCase();
  return [...u].length === 1 ? u : ch;
}
function lowerRune(ch: string): string {
  const l = ch.toLowerCase();
  return [...l].length === 1 ? l : ch;
}

/** Docker's template functions (cli/templates): json, split, join, title, lower, upper, pad, truncate. */
export const dockerFuncs: FuncMap = {
  json: (v) => goJSON(v),
  split: (s, sep) => (sep === '' ? [...(s as string)] : (s as string).split(sep as string)),
  join: (list, sep) => (list as string[]).join(sep as string),
  title: (s) => title(s as string),
  lower: (s) => [...(s as string)].map(lowerRune).join(''),
  upper: (s) => [...(s as string)].map(upperRune).join(''),
  pad: (s, prefix, suffix) =>
    s === '' ? '' : ' '.repeat(Math.max(0, prefix as number)) + s + ' '.repeat(Math.max(0, suffix as number)),
  truncate: (s, n) => {
    const runes = [...(s as string)];
    return runes.length < (n as number) ? s : runes.slice(0, Math.max(0, n as number)).join('');
  },
};

/** Docker's header functions: the string functions return the column header unchanged. */
export const headerFuncs: FuncMap = {
  json: (v) => v,
  split: (v) => v,
  join: (v) => v,
  title: (v) => v,
  lower: (v) => v,
  upper: (v) => v,
  truncate: (v) => v,
};

register(builtinFuncs, builtinSpecs);
register(dockerFuncs, dockerSpecs);
register(headerFuncs, headerSpecs);
