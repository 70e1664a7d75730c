// Docker's list output: the `table` directive, header rows, and Go's text/tabwriter alignment.
import {
  type FuncMap,
  type FieldResolver,
  TemplateError,
  execute,
  executeInto,
  fieldResolver,
  headerFuncs,
  parseTemplate,
} from './template.js';

/** Column headers by field name, e.g. { ID: 'CONTAINER ID', Names: 'NAMES' }. */
export type HeaderMap = Readonly<Record<string, string>>;

/** Tabwriter settings; docker uses minWidth 10, padding 3 (tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)). */
export interface TabwriterOptions {
  minWidth?: number;
  padding?: number;
}

const runeLen = (s: string): number => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

/** Aligns tab-separated text like Go's text/tabwriter: each tab-terminated cell padded to its column block's width. */
export function tabwriterText(text: string, opts: TabwriterOptions = {}): string {
  const minWidth = opts.minWidth ?? 10;
  const padding = opts.padding ?? 3;
  const lines = text.split('\n').map((l) => l.split('\t'));
  const widths: number[] = [];
  let out = '';
  const writeLines = (line0: number, line1: number): void => {
    for (let i = line0; i < line1; i++) {
      const cells = lines[i]!;
      cells.forEach((c, j) => {
        out += c;
        if (j < widths.length) out += ' '.repeat(Math.max(0, widths[j]! - runeLen(c)));
      });
      if (i + 1 < lines.length) out += '\n';
    }
  };
  // Go's tabwriter format(): a column block is a run of lines that have a cell in this column.
  const format = (line0: number, line1: number): void => {
    const column = widths.length;
    for (let cur = line0; cur < line1; cur++) {
      if (column >= lines[cur]!.length - 1) continue;
      writeLines(line0, cur);
      line0 = cur;
      let width = minWidth;
      for (; cur < line1; cur++) {
        const line = lines[cur]!;
        if (column >= line.length - 1) break;
        width = Math.max(width, runeLen(line[column]!) + padding);
      }
      widths.push(width);
      format(line0, cur);
      widths.pop();
      line0 = cur;
    }
    writeLines(line0, line1);
  };
  format(0, lines.length);
  return out;
}

/** Aligns rows of cells as docker prints its tables: 3 spaces between columns, minimum width 10, last column unpadded. */
export function tabwriter(lines: readonly (readonly string[])[], opts: TabwriterOptions = {}): string {
  return tabwriterText(lines.map((cells) => cells.join('\t') + '\n').join(''), opts);
}

/** Derives a header from a field name: CreatedAt → CREATED AT, IPAddress → IP ADDRESS, mem_usage → MEM USAGE. */
export function defaultHeader(field: string): string {
  return field
    .replace(/([\p{Ll}\p{Nd}])(\p{Lu})/gu, '$1 $2')
    .replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, '$1 $2')
    .replace(/[_\-\s]+/g, ' ')
    .trim()
    .toUpperCase();
}

/** Returns the data a table's header row is rendered from: every field chain yields its header. */
export function headerContext(headers: HeaderMap = {}): FieldResolver {
  return {
    [fieldResolver](fields: readonly string[]): string {
      const last = fields[fields.length - 1] ?? '';
      return headers[fields.join('.')] ?? headers[last] ?? defaultHeader(last);
    },
  };
}

/** Options for renderTable: extra template functions. */
export interface RenderOptions {
  funcs?: FuncMap;
}

/** True if a --format value asks for a table (starts with "table"). */
export function isTableFormat(format: string): boolean {
  return format.startsWith('table');
}

/** Renders rows with a docker --format ("", "table" → defaultFormat; "json"; "table ..." → header + aligned rows; else one line per row). */
export function renderTable(
  format: string | null | undefined,
  rows: readonly unknown[],
  headers: HeaderMap = {},
  defaultFormat = 'table',
  opts: RenderOptions = {},
): string {
  let f = format ?? '';
  if (f === '' || f === 'table') f = defaultFormat;
  if (f === 'json') f = '{{json .}}';
  const table = isTableFormat(f);
  if (table) f = f.slice('table'.length);
  f = f
    .replace(/^ +| +$/g, '')
    .replace(/\\t/g, '\t')
    .replace(/\\n/g, '\n');
  const tmpl = wrap(() => parseTemplate(f, { funcs: opts.funcs }));
  let body = '';
  for (const row of rows) body += wrap(() => execute(tmpl, row)) + '\n';
  if (!table) return body;
  // Docker ignores errors in the header row and keeps what was written before them.
  const head: string[] = [];
  try {
    executeInto(tmpl, headerContext(headers), head, headerFuncs);
  } catch {
    // keep the partial header
  }
  return tabwriterText(head.join('') + '\n' + body);
}

/** Renders each item with an inspect --format template, each output followed by "\n" (as docker inspect). */
export function renderEach(format: string, items: readonly unknown[], opts: RenderOptions = {}): string {
  const tmpl = parseTemplate(format, { funcs: opts.funcs });
  return items.map((item) => execute(tmpl, item) + '\n').join('');
}

/** docker inspect's output: each item through the template, or all of them as indented JSON. */
export function renderInspect(items: readonly unknown[], format?: string): string {
  return format ? renderEach(format, items) : `${JSON.stringify(items, null, 4)}\n`;
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TemplateError) throw new TemplateError(`template parsing error: ${e.message}`);
    throw e;
  }
}
