import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatFloat, formatValue, goJSON, goQuote, sprint, sprintf, sprintln } from './gofmt.js';

test('sprintf verbs, flags and widths', () => {
  assert.equal(
    sprintf('%s|%d|%v|%q|%-10s|%5d|%x|%X', ['a', 42, [1, 2], 'q"', 'left', 7, 255, 255]),
    'a|42|[1 2]|"q\\""|left      |    7|ff|FF',
  );
  assert.equal(
    sprintf('%05d|%+d|%-5d|%.3d|%o|%b|%#x|%c|%U|%t', [-42, 5, 3, 7, 8, 5, 255, 65, 0x1f600, false]),
    '-0042|+5|3    |007|10|101|0xff|A|U+1F600|false',
  );
  assert.equal(
    sprintf(
      '%.2f|%8.3f|%-8.1f|%08.3f|%e|%g|%G|%.3g',
      [3.14159, 2.5, 1.25, -3.14159, 123456.789, 1e21, 1e-7, 1234.5],
    ),
    '3.14|   2.500|1.2     |-003.142|1.234568e+05|1e+21|1E-07|1.23e+03',
  );
  assert.equal(sprintf('%.2s|%5s|%-5s|%x', ['abc', 'ab', 'ab', 'hi']), 'ab|   ab|ab   |6869');
  assert.equal(sprintf('%d%%', [50]), '50%');
  assert.equal(sprintf('%*d|%-*d|', [4, 1, 3, 2]), '   1|2  |');
});

test('sprintf error markers as Go', () => {
  assert.equal(sprintf('%d', ['x']), '%!d(string=x)');
  assert.equal(sprintf('%s', [1]), '%!s(int=1)');
  assert.equal(sprintf('%d %d', [1]), '1 %!d(MISSING)');
  assert.equal(sprintf('%d', [1, 'x', 2]), '1%!(EXTRA string=x, int=2)');
  assert.equal(sprintf('%s', [null]), '%!s(<nil>)');
  assert.equal(sprintf('%v', [null]), '<nil>');
  assert.equal(sprintf('x%', []), 'x%!(NOVERB)');
  assert.equal(sprintf('%d', [1.5]), '%!d(float64=1.5)');
});

test('formatValue prints like fmt %v', () => {
  assert.equal(formatValue([1, 'a', null]), '[1 a <nil>]');
  assert.equal(formatValue({ b: 1, a: [true] }), 'map[a:[true] b:1]');
  assert.equal(formatValue(1e6), '1000000');
  assert.equal(formatValue(1.5e6 + 0.5), '1.5000005e+06');
  assert.equal(formatValue(0.00001), '1e-05');
  assert.equal(formatValue(new Date('2024-01-02T03:04:05.500Z')), '2024-01-02 03:04:05.5 +0000 UTC');
  class Point {
    x = 1;
    y = 2;
  }
  assert.equal(formatValue(new Point()), '{1 2}');
  assert.equal(sprintf('%+v', [new Point()]), '{x:1 y:2}');
});

test('formatFloat rounds exact ties to even, as strconv', () => {
  assert.equal(formatFloat(0.125, 'f', 2), '0.12');
  assert.equal(formatFloat(0.375, 'f', 2), '0.38');
  assert.equal(formatFloat(2.5, 'f', 0), '2');
  assert.equal(formatFloat(1.0625, 'g', 4), '1.062');
  assert.equal(formatFloat(123456789, 'g', -1), '1.23456789e+08');
  assert.equal(formatFloat(100000, 'g', -1), '100000');
  assert.equal(formatFloat(0, 'e', 2), '0.00e+00');
  assert.equal(formatFloat(-0.5, 'g', -1), '-0.5');
  assert.equal(formatFloat(NaN, 'g', -1), 'NaN');
  assert.equal(formatFloat(-Infinity, 'f', 2), '-Inf');
});

test('sprint and sprintln spacing', () => {
  assert.equal(sprint([1, 2, 'a', 3, 'b', 'c']), '1 2a3bc');
  assert.equal(sprintln(['a', 1]), 'a 1\n');
});

test('goQuote escapes as strconv.Quote', () => {
  assert.equal(goQuote('a"b\\c\n\t\x01é'), '"a\\"b\\\\c\\n\\t\\x01é"');
});

test('goJSON matches encoding/json', () => {
  assert.equal(goJSON({ a: '<&>', b: [1, 2.5], c: null }), '{"a":"<&>","b":[1,2.5],"c":null}');
  assert.equal(goJSON('<&>', { escapeHTML: true }), '"\\u003c\\u0026\\u003e"');
  assert.equal(goJSON(undefined), 'null');
  assert.equal(goJSON('\u2028'), '"\\u2028"');
  assert.equal(
    goJSON(
      new Map([
        ['b', 1],
        ['a', 2],
      ]),
    ),
    '{"a":2,"b":1}',
  );
});
