// Go's fmt verbs and value printing over JavaScript values, as Go templates see them: integers are
// `int`, other numbers `float64`, arrays `[]interface {}`, plain objects and Maps `map[string]interface {}`,
// class instances structs, Dates `time.Time`, null and undefined nil.

/** The Go kind a JavaScript value is printed and compared as. */
export type GoKind =
  'nil' | 'bool' | 'int' | 'float' | 'string' | 'slice' | 'map' | 'struct' | 'time' | 'func';

/** Returns the Go kind of a value: integers are int, other numbers float, plain objects and Maps maps. */
export function kindOf(v: unknown): GoKind {
  if (v === undefined || v === null) return 'nil';
  switch (typeof v) {
    case 'boolean':
      return 'bool';
    case 'number':
      return Number.isInteger(v) ? 'int' : 'float';
    case 'bigint':
      return 'int';
    case 'string':
      return 'string';
    case 'function':
      return 'func';
    case 'object': {
      if (Array.isArray(v) || ArrayBuffer.isView(v)) return 'slice';
      if (v instanceof Map) return 'map';
      if (v instanceof Date) return 'time';
      const proto: unknown = Object.getPrototypeOf(v);
      return proto === Object.prototype || proto === null ? 'map' : 'struct';
    }
    default:
      return 'struct';
  }
}

/** Returns the Go type name used in error messages: int, float64, string, []interface {}, ... */
export function goTypeName(v: unknown): string {
  switch (kindOf(v)) {
    case 'nil':
      return '<nil>';
    case 'float':
      return 'float64';
    case 'slice':
      return '[]interface {}';
    case 'map':
      return 'map[string]interface {}';
    case 'time':
      return 'time.Time';
    case 'struct':
      return (v as object).constructor?.name ?? 'struct';
    default:
      return kindOf(v);
  }
}

/** Returns a map's entries sorted by key, as Go's fmt and range order them. */
export function sortedEntries(v: object): [unknown, unknown][] {
  const entries: [unknown, unknown][] =
    v instanceof Map ? [...v.entries()] : Object.entries(v as Record<string, unknown>);
  return entries.sort(([a], [b]) => compareKeys(a, b));
}

function compareKeys(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/** Returns a struct's printable fields: own enumerable properties that are not functions. */
export function structFields(v: object): [string, unknown][] {
  return Object.entries(v).filter(([, x]) => typeof x !== 'function');
}

// ---- floats, as strconv.FormatFloat ----

interface Digits {
  d: string; // significant digits, no leading or trailing zeros ('' for zero)
  dp: number; // decimal point position: value = 0.d × 10^dp
}

const f64 = new DataView(new ArrayBuffer(8));

function exactDigits(x: number): Digits {
  f64.setFloat64(0, x);
  const hi = f64.getUint32(0);
  const lo = f64.getUint32(4);
  const bexp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e: number;
  if (bexp === 0) e = -1074;
  else {
    mant |= 1n << 52n;
    e = bexp - 1075;
  }
  let digits: string;
  let dp: number;
  if (e >= 0) {
    digits = (mant << BigInt(e)).toString();
    dp = digits.length;
  } else {
    digits = (mant * 5n ** BigInt(-e)).toString();
    dp = digits.length + e;
  }
  return trimDigits({ d: digits, dp });
}

function trimDigits(x: Digits): Digits {
  let d = x.d.replace(/0+$/, '');
  let dp = x.dp;
  const lead = d.length - d.replace(/^0+/, '').length;
  d = d.slice(lead);
  dp -= lead;
  return d === '' ? { d: '', dp: 0 } : { d, dp };
}

// Rounds exact digits to nd significant digits, ties to even (as Go's strconv does for exact values).
function roundDigits(x: Digits, nd: number): Digits {
  if (nd < 0 || nd >= x.d.length) return nd < 0 ? { d: '', dp: 0 } : x;
  const next = x.d.charCodeAt(nd) - 48;
  let up: boolean;
  if (next === 5 && nd + 1 === x.d.length) up = nd > 0 && (x.d.charCodeAt(nd - 1) - 48) % 2 === 1;
  else up = next >= 5;
  if (!up) return trimDigits({ d: x.d.slice(0, nd), dp: x.dp });
  const arr = x.d.slice(0, nd).split('');
  let i = nd - 1;
  while (i >= 0 && arr[i] === '9') i--;
  if (i < 0) return { d: '1', dp: x.dp + 1 };
  arr[i] = String.fromCharCode(arr[i]!.charCodeAt(0) + 1);
  return trimDigits({ d: arr.slice(0, i + 1).join(''), dp: x.dp });
}

function shortestDigits(x: number): Digits {
  const [m, e] = x.toExponential().split('e');
  return trimDigits({ d: m!.replace('.', ''), dp: Number(e) + 1 });
}

function fmtE(digs: Digits, prec: number, verb: string): string {
  let s = digs.d === '' ? '0' : digs.d[0]!;
  if (prec > 0) {
    s += '.' + digs.d.slice(1, prec + 1).padEnd(prec, '0');
  }
  const exp = digs.d === '' ? 0 : digs.dp - 1;
  const abs = Math.abs(exp);
  return s + verb + (exp < 0 ? '-' : '+') + (abs < 10 ? '0' + abs : String(abs));
}

function fmtF(digs: Digits, prec: number): string {
  let s = '';
  if (digs.dp > 0) s = digs.d.slice(0, digs.dp).padEnd(digs.dp, '0');
  else s = '0';
  if (prec > 0) {
    s += '.';
    for (let i = 1; i <= prec; i++) {
      const j = digs.dp + i - 1;
      s += j >= 0 && j < digs.d.length ? digs.d[j] : '0';
    }
  }
  return s;
}

/** Formats a float like Go's strconv.FormatFloat(x, verb, prec, 64); prec -1 means shortest. */
export function formatFloat(x: number, verb: 'e' | 'E' | 'f' | 'g' | 'G', prec: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  const neg = x < 0 || Object.is(x, -0);
  const ax = Math.abs(x);
  const shortest = prec < 0;
  let digs: Digits;
  if (ax === 0) digs = { d: '', dp: 0 };
  else if (shortest) digs = shortestDigits(ax);
  else {
    const exact = exactDigits(ax);
    if (verb === 'e' || verb === 'E') digs = roundDigits(exact, prec + 1);
    else if (verb === 'f') digs = roundDigits(exact, exact.dp + prec);
    else digs = roundDigits(exact, prec === 0 ? 1 : prec);
  }
  if (verb === 'g' || verb === 'G') {
    if (!shortest && prec === 0) prec = 1;
  }
  if (shortest) {
    if (verb === 'e' || verb === 'E') prec = Math.max(digs.d.length - 1, 0);
    else if (verb === 'f') prec = Math.max(digs.d.length - digs.dp, 0);
    else prec = digs.d.length;
  }
  let body: string;
  if (verb === 'e' || verb === 'E') body = fmtE(digs, prec, verb);
  else if (verb === 'f') body = fmtF(digs, prec);
  else {
    let eprec = prec;
    if (eprec > digs.d.length && digs.d.length >= digs.dp) eprec = digs.d.length;
    if (shortest) eprec = 6;
    const exp = digs.dp - 1;
    if (digs.d !== '' && (exp < -4 || exp >= eprec)) {
      if (prec > digs.d.length) prec = digs.d.length;
      body = fmtE(digs, prec - 1, verb === 'g' ? 'e' : 'E');
    } else {
      if (prec > digs.dp) prec = digs.d.length;
      body = fmtF(digs, Math.max(prec - digs.dp, 0));
    }
  }
  return (neg ? '-' : '') + body;
}

// ---- quoting, as strconv.Quote ----

const printable = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

function quoteWith(s: string, q: string): string {
  let out = q;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === q || ch === '\\') out += '\\' + ch;
    else if (printable.test(ch)) out += ch;
    else if (cp === 7) out += '\\a';
    else if (cp === 8) out += '\\b';
    else if (cp === 12) out += '\\f';
    else if (cp === 10) out += '\\n';
    else if (cp === 13) out += '\\r';
    else if (cp === 9) out += '\\t';
    else if (cp === 11) out += '\\v';
    else if (cp < 0x20 || cp === 0x7f) out += '\\x' + cp.toString(16).padStart(2, '0');
    else if (cp >= 0xd800 && cp <= 0xdfff) out += '\\ufffd';
    else if (cp < 0x10000) out += '\\u' + cp.toString(16).padStart(4, '0');
    else out += '\\U' + cp.toString(16).padStart(8, '0');
  }
  return out + q;
}

/** Quotes a string like Go's strconv.Quote: "a\tb" with Go escapes. */
export function goQuote(s: string): string {
  return quoteWith(s, '"');
}

// ---- printf ----

interface Spec {
  minus: boolean;
  plus: boolean;
  sharp: boolean;
  space: boolean;
  zero: boolean;
  plusV?: boolean; // %+v: struct field names (the + is then no sign flag)
  width?: number;
  prec?: number;
}

const noSpec: Spec = { minus: false, plus: false, sharp: false, space: false, zero: false };

function runeLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function pad(s: string, spec: Spec, zeroOk = true): string {
  if (spec.width === undefined) return s;
  const n = spec.width - runeLen(s);
  if (n <= 0) return s;
  if (spec.minus) return s + ' '.repeat(n);
  return (spec.zero && zeroOk ? '0' : ' ').repeat(n) + s;
}

function badVerb(verb: string, v: unknown): string {
  if (v === undefined || v === null) return `%!${verb}(<nil>)`;
  return `%!${verb}(${goTypeName(v)}=${fmtValue(v, 'v', noSpec)})`;
}

function fmtInteger(n: bigint, base: number, verb: string, spec: Spec): string {
  const neg = n < 0n;
  let digits = (neg ? -n : n).toString(base);
  if (verb === 'X') digits = digits.toUpperCase();
  if (spec.prec !== undefined) {
    if (spec.prec === 0 && n === 0n) digits = '';
    digits = digits.padStart(spec.prec, '0');
  } else if (spec.zero && !spec.minus && spec.width !== undefined) {
    digits = digits.padStart(spec.width - (neg || spec.plus || spec.space ? 1 : 0), '0');
  }
  let prefix = '';
  if (spec.sharp) {
    if (base === 16) prefix = verb === 'X' ? '0X' : '0x';
    else if (base === 2) prefix = '0b';
    else if (base === 8 && digits[0] !== '0') prefix = '0';
  }
  if (verb === 'O') prefix = '0o';
  const sign = neg ? '-' : spec.plus ? '+' : spec.space ? ' ' : '';
  return pad(sign + prefix + digits, spec, false);
}

function fmtFloatVerb(x: number, verb: string, spec: Spec): string {
  const v = (verb === 'v' ? 'g' : verb === 'F' ? 'f' : verb) as 'e' | 'E' | 'f' | 'g' | 'G';
  const defPrec = v === 'e' || v === 'E' || v === 'f' ? 6 : -1;
  let num = formatFloat(x, v, spec.prec ?? defPrec);
  if (num[0] !== '-' && num[0] !== '+') num = '+' + num;
  if (spec.space && num[0] === '+' && !spec.plus) num = ' ' + num.slice(1);
  if (num[1] === 'I' || num[1] === 'N') {
    if (num[1] === 'N' && !spec.space && !spec.plus) num = num.slice(1);
    return pad(num, spec, false);
  }
  if (spec.plus || num[0] !== '+') {
    if (spec.zero && !spec.minus && spec.width !== undefined && spec.width > num.length) {
      return num[0] + '0'.repeat(spec.width - num.length) + num.slice(1);
    }
    return pad(num, spec);
  }
  return pad(num.slice(1), spec);
}

/** Returns Go's time.Time String() of a Date, in UTC: 2024-01-02 03:04:05.5 +0000 UTC. */
export function goTimeString(d: Date): string {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  const frac = iso.slice(20, 23).replace(/0+$/, '');
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${frac ? '.' + frac : ''} +0000 UTC`;
}

function fmtString(s: string, verb: string, spec: Spec): string {
  switch (verb) {
    case 'v':
    case 's': {
      if (spec.prec !== undefined) s = [...s].slice(0, spec.prec).join('');
      return pad(s, spec);
    }
    case 'q':
      return pad(goQuote(s), spec);
    case 'x':
    case 'X': {
      let hex = Buffer.from(s, 'utf8').toString('hex');
      if (verb === 'X') hex = hex.toUpperCase();
      return pad(spec.sharp ? (verb === 'X' ? '0X' : '0x') + hex : hex, spec);
    }
    default:
      return badVerb(verb, s);
  }
}

function fmtValue(v: unknown, verb: string, spec: Spec): string {
  if (verb === 'T') return pad(goTypeName(v), spec);
  switch (kindOf(v)) {
    case 'nil':
      return verb === 'v' ? pad('<nil>', spec) : badVerb(verb, v);
    case 'bool':
      return verb === 'v' || verb === 't' ? pad(String(v), spec) : badVerb(verb, v);
    case 'int': {
      const n = typeof v === 'bigint' ? v : BigInt(v as number);
      switch (verb) {
        case 'v':
        case 'd':
          return fmtInteger(n, 10, verb, spec);
        case 'b':
          return fmtInteger(n, 2, verb, spec);
        case 'o':
        case 'O':
          return fmtInteger(n, 8, verb, spec);
        case 'x':
        case 'X':
          return fmtInteger(n, 16, verb, spec);
        case 'c':
          return pad(String.fromCodePoint(Number(n)), spec);
        case 'q':
          return pad(quoteWith(String.fromCodePoint(Number(n)), "'"), spec);
        case 'U':
          return pad('U+' + n.toString(16).toUpperCase().padStart(4, '0'), spec);
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G':
          // JavaScript cannot tell 2.0 from 2: accept float verbs for integral numbers.
          return fmtFloatVerb(Number(n), verb, spec);
        default:
          return badVerb(verb, v);
      }
    }
    case 'float':
      return 'vbeEfFgG'.includes(verb) && verb !== 'b'
        ? fmtFloatVerb(v as number, verb, spec)
        : badVerb(verb, v);
    case 'string':
      return fmtString(v as string, verb, spec);
    case 'time':
      return 'vsq'.includes(verb) ? fmtString(goTimeString(v as Date), verb, spec) : badVerb(verb, v);
    case 'slice':
      return '[' + Array.from(v as ArrayLike<unknown>, (x) => fmtValue(x, verb, spec)).join(' ') + ']';
    case 'map':
      return (
        'map[' +
        sortedEntries(v as object)
          .map(([k, x]) => fmtValue(k, verb, spec) + ':' + fmtValue(x, verb, spec))
          .join(' ') +
        ']'
      );
    case 'struct': {
      const obj = v as object;
      if (hasOwnToString(obj) && (verb === 'v' || verb === 's')) return fmtString(String(obj), verb, spec);
      const fields = structFields(obj).map(([k, x]) => (spec.plusV ? k + ':' : '') + fmtValue(x, verb, spec));
      return '{' + fields.join(' ') + '}';
    }
    case 'func':
      return verb === 'v' ? pad('<func>', spec) : badVerb(verb, '<func>');
  }
}

// A class with its own toString() acts as a Go fmt.Stringer.
function hasOwnToString(obj: object): boolean {
  for (let p: unknown = obj; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    if (Object.prototype.hasOwnProperty.call(p, 'toString')) return true;
  }
  return false;
}

/** Formats one value with Go's %v: [a b], map[k:v], <nil>, 1e+06. */
export function formatValue(v: unknown): string {
  return fmtValue(v, 'v', noSpec);
}

function isGoString(v: unknown): boolean {
  return typeof v === 'string';
}

/** Concatenates like Go's fmt.Sprint: a space between operands when neither is a string. */
export function sprint(args: readonly unknown[]): string {
  let out = '';
  args.forEach((a, i) => {
    if (i > 0 && !isGoString(a) && !isGoString(args[i - 1])) out += ' ';
    out += formatValue(a);
  });
  return out;
}

/** Concatenates like Go's fmt.Sprintln: operands separated by spaces, then a newline. */
export function sprintln(args: readonly unknown[]): string {
  return args.map(formatValue).join(' ') + '\n';
}

/** Formats like Go's fmt.Sprintf, with Go's %!verb(type=value), %!v(MISSING) and %!(EXTRA ...) markers. */
export function sprintf(format: string, args: readonly unknown[]): string {
  let out = '';
  let argi = 0;
  let i = 0;
  const n = format.length;
  while (i < n) {
    const pct = format.indexOf('%', i);
    if (pct < 0) {
      out += format.slice(i);
      break;
    }
    out += format.slice(i, pct);
    i = pct + 1;
    const spec: Spec = { ...noSpec };
    flags: for (; i < n; i++) {
      switch (format[i]) {
        case '-':
          spec.minus = true;
          spec.zero = false;
          break;
        case '+':
          spec.plus = true;
          break;
        case '#':
          spec.sharp = true;
          break;
        case ' ':
          spec.space = true;
          break;
        case '0':
          spec.zero = !spec.minus;
          break;
        default:
          break flags;
      }
    }
    let bad = '';
    if (format[i] === '*') {
      i++;
      const w = args[argi++];
      if (typeof w === 'number' && Number.isInteger(w)) {
        spec.width = Math.abs(w);
        if (w < 0) {
          spec.minus = true;
          spec.zero = false;
        }
      } else bad = '%!(BADWIDTH)';
    } else {
      const m = /^\d+/.exec(format.slice(i));
      if (m) {
        spec.width = Number(m[0]);
        i += m[0].length;
      }
    }
    if (format[i] === '.') {
      i++;
      if (format[i] === '*') {
        i++;
        const p = args[argi++];
        if (typeof p === 'number' && Number.isInteger(p) && p >= 0) spec.prec = p;
        else bad = '%!(BADPREC)';
      } else {
        const m = /^\d+/.exec(format.slice(i));
        spec.prec = m ? Number(m[0]) : 0;
        if (m) i += m[0].length;
      }
    }
    out += bad;
    if (i >= n) {
      out += '%!(NOVERB)';
      break;
    }
    const verb = String.fromCodePoint(format.codePointAt(i)!);
    i += verb.length;
    if (verb === '%') {
      out += '%';
      continue;
    }
    if (argi >= args.length) {
      out += `%!${verb}(MISSING)`;
      continue;
    }
    const arg = args[argi++];
    if ((verb === 'v' || verb === 'w') && spec.plus) {
      spec.plus = false;
      spec.plusV = true;
    }
    if (verb === 'w') out += fmtValue(arg, 'v', spec);
    else if ('vTtbcdoOqxXUeEfFgGs'.includes(verb)) out += fmtValue(arg, verb, spec);
    else out += badVerb(verb, arg);
  }
  if (argi < args.length) {
    const extra = args.slice(argi).map((a) => (a == null ? '<nil>' : `${goTypeName(a)}=${formatValue(a)}`));
    out += `%!(EXTRA ${extra.join(', ')})`;
  }
  return out;
}

// ---- JSON, as Go's encoding/json ----

/** Encodes like Go's json.Marshal (compact); escapeHTML also escapes <, > and & as \u003c etc. */
export function goJSON(v: unknown, opts: { escapeHTML?: boolean } = {}): string {
  const s = JSON.stringify(v === undefined ? null : v, (_key, x: unknown) => {
    if (typeof x === 'bigint') return Number(x);
    if (x instanceof Map) return Object.fromEntries(sortedEntries(x).map(([k, y]) => [String(k), y]));
    if (typeof x === 'number' && !Number.isFinite(x)) return null;
    return x;
  }) as string | undefined;
  let out = (s ?? 'null').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
  out = out.replace(/\\ud[89ab][0-9a-f]{2}|\\ud[c-f][0-9a-f]{2}/g, '\\ufffd');
  if (opts.escapeHTML) out = out.replace(/[<>&]/g, (c) => '\\u00' + c.charCodeAt(0).toString(16));
  return out;
}
