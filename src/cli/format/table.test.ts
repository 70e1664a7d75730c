import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultHeader, renderEach, renderTable, tabwriter, tabwriterText } from './table.js';

const headers = {
  ID: 'CONTAINER ID',
  Names: 'NAMES',
  Image: 'IMAGE',
  Status: 'STATUS',
  RunningFor: 'CREATED',
};
const rows = [
  { ID: 'abc123', Names: 'web', Image: 'nginx:latest', Status: 'Up 5 seconds', CreatedAt: 'x' },
  {
    ID: 'def4567890ab',
    Names: 'db-primary-long',
    Image: 'postgres',
    Status: 'Exited (0) 2 minutes ago',
    CreatedAt: 'y',
  },
];

test('tabwriter pads like docker: min width 10, 3 spaces, last column unpadded', () => {
  // docker ps with no containers prints exactly this header line.
  assert.equal(
    tabwriter([['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES']]),
    'CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n',
  );
  assert.equal(
    tabwriter([
      ['a', 'b'],
      ['long-value-x', 'c'],
    ]),
    'a              b\nlong-value-x   c\n',
  );
  assert.equal(tabwriter([]), '');
});

test('tabwriter column blocks end at lines with fewer cells, as Go', () => {
  assert.equal(
    tabwriterText('a\tb\nno tabs here\nlonger-cell\tc\n'),
    'a         b\nno tabs here\nlonger-cell   c\n',
  );
  assert.equal(tabwriterText('a\tb\tc\nx\ty\n', { minWidth: 0, padding: 1 }), 'a b c\nx y\n');
  assert.equal(tabwriterText('é\tx\n', { minWidth: 0, padding: 1 }), 'é x\n');
});

test('defaultHeader splits CamelCase and snake_case', () => {
  assert.equal(defaultHeader('CreatedAt'), 'CREATED AT');
  assert.equal(defaultHeader('ID'), 'ID');
  assert.equal(defaultHeader('IPAddress'), 'IP ADDRESS');
  assert.equal(defaultHeader('MEM_USAGE'), 'MEM USAGE');
  assert.equal(defaultHeader('NetIO'), 'NET IO');
});

test('table format: header from the header map, rows aligned', () => {
  assert.equal(
    renderTable('table {{.ID}}\\t{{.Names}}\\t{{.Status}}\\t{{.CreatedAt}}', rows, headers),
    'CONTAINER ID   NAMES             STATUS                     CREATED AT\n' +
      'abc123         web               Up 5 seconds               x\n' +
      'def4567890ab   db-primary-long   Exited (0) 2 minutes ago   y\n',
  );
});

test('header keeps functions that change text intact but applies printf and pad', () => {
  assert.equal(
    renderTable('table {{upper .Names}}\\t{{truncate .ID 3}}', rows, headers),
    'NAMES             CONTAINER ID\nWEB               abc\nDB-PRIMARY-LONG   def\n',
  );
  assert.equal(renderTable('table {{printf "%-5s" .Names}}|', rows.slice(0, 1), headers), 'NAMES|\nweb  |\n');
});

test('empty table prints only the header', () => {
  assert.equal(renderTable('table {{.ID}}\t{{.Image}}', [], headers), 'CONTAINER ID   IMAGE\n');
});

test('null, "" and "table" use the default format', () => {
  const def = 'table {{.ID}}\\t{{.Image}}';
  const want = 'CONTAINER ID   IMAGE\nabc123         nginx:latest\ndef4567890ab   postgres\n';
  assert.equal(renderTable(null, rows, headers, def), want);
  assert.equal(renderTable('', rows, headers, def), want);
  assert.equal(renderTable('table', rows, headers, def), want);
});

test('raw templates print one line per row, \\t and \\n escapes expanded', () => {
  assert.equal(
    renderTable('{{.ID}}: {{.Names}}', rows, headers),
    'abc123: web\ndef4567890ab: db-primary-long\n',
  );
  assert.equal(renderTable('{{.ID}}\\t{{.Names}}', rows.slice(0, 1), headers), 'abc123\tweb\n');
});

test('json format prints one object per line', () => {
  assert.equal(renderTable('json', [{ A: 1, B: '<x>' }], headers), '{"A":1,"B":"<x>"}\n');
});

test('template errors are prefixed as docker does', () => {
  assert.throws(() => renderTable('{{.ID}', rows, headers), {
    message: 'template parsing error: template: :1: unexpected "}" in operand',
  });
});

test('renderEach prints each item followed by a newline (inspect)', () => {
  assert.equal(renderEach('{{.ID}}\\t', rows), 'abc123\\t\ndef4567890ab\\t\n');
});
