import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TemplateError, execute, parseTemplate, renderTemplate as r } from './template.js';

const data = {
  Name: 'web',
  ID: 'abcdef0123456789',
  Labels: { foo: 'bar', 'com.x': 'y' },
  Mounts: [{ Source: '/a' }, { Source: '/b' }],
  List: ['a', 'b', 'c'],
  N: 3,
  F: 1.5,
  B: true,
  Nil: null,
  Cmd: ['sh', '-c', 'a && b <c>'],
};

test('fields, nested fields, map keys and dot', () => {
  assert.equal(r('{{.Name}}', data), 'web');
  assert.equal(r('{{.Labels.foo}}', data), 'bar');
  assert.equal(r('{{index .Labels "com.x"}}', data), 'y');
  assert.equal(r('{{.A.B.C}}', { A: { B: { C: 'deep' } } }), 'deep');
  assert.equal(r('{{.}}', 'plain'), 'plain');
  assert.equal(r('{{(index .Mounts 1).Source}}', data), '/b');
});

test('missing keys and nil print <no value>', () => {
  assert.equal(r('{{.Missing}}', data), '<no value>');
  assert.equal(r('{{.Nil}}', data), '<no value>');
  assert.equal(r('{{index .Labels "nope"}}', data), '<no value>');
  assert.equal(r('{{.Labels.nope.deeper}}', data), '<no value>');
});

test('values print as Go prints them', () => {
  assert.equal(r('{{.List}}', data), '[a b c]');
  assert.equal(r('{{.Labels}}', data), 'map[com.x:y foo:bar]');
  assert.equal(r('{{.B}} {{.N}} {{.F}}', data), 'true 3 1.5');
  assert.equal(r('{{.X}}', { X: [1, null, { k: [true] }] }), '[1 <nil> map[k:[true]]]');
  assert.equal(r('{{.X}}', { X: 123456789.5 }), '1.234567895e+08');
  assert.equal(
    r('{{.X}}', {
      X: new Map([
        ['b', 1],
        ['a', 2],
      ]),
    }),
    'map[a:2 b:1]',
  );
});

test('class instances are structs: methods with arguments, unknown fields fail', () => {
  class ContainerContext {
    constructor(private readonly labels: Record<string, string>) {}
    get Names(): string {
      return 'web';
    }
    Label(name: string): string {
      return this.labels[name] ?? '';
    }
  }
  const c = new ContainerContext({ a: 'b' });
  assert.equal(r('{{.Names}} {{.Label "a"}} {{"a" | .Label}}', c), 'web b b');
  assert.throws(
    () => r('{{.Foo}}', c),
    new TemplateError(
      'template: :1:2: executing "" at <.Foo>: can\'t evaluate field Foo in type ContainerContext',
    ),
  );
  assert.throws(() => r('{{.Name.Foo}}', data), /can't evaluate field Foo in type string/);
});

test('pipelines and printf', () => {
  assert.equal(r('{{.Name | printf "%s"}}', data), 'web');
  assert.equal(r('{{.Name | printf "%s-%s" "x"}}', data), 'x-web');
  assert.equal(
    r('{{printf "%-10s|%5d|%x|%q|%v" .Name .N 255 .Name .List}}', data),
    'web       |    3|ff|"web"|[a b c]',
  );
  assert.equal(r('{{printf "%.2f" .F}}', data), '1.50');
  assert.equal(r('{{printf "%d" .Name}}', data), '%!d(string=web)');
  assert.equal(r('{{.Name | upper | printf "<%s>"}}', data), '<WEB>');
});

test('whitespace trim markers', () => {
  assert.equal(r('a  {{- .Name -}}  b', data), 'awebb');
  assert.equal(r('a \n{{- .Name}} \n', data), 'aweb \n');
  assert.equal(r('{{.Name -}}\n\t x', data), 'webx');
  assert.equal(r('{{-3}}', data), '-3');
  assert.equal(r('x {{- /* comment */ -}} y', data), 'xy');
});

test('if / else if / else', () => {
  const t = '{{if eq .N 1}}one{{else if eq .N 3}}three{{else}}other{{end}}';
  assert.equal(r(t, { N: 3 }), 'three');
  assert.equal(r(t, { N: 1 }), 'one');
  assert.equal(r(t, { N: 9 }), 'other');
  assert.equal(
    r('{{if .List}}yes{{end}}{{if .Empty}}no{{end}}{{if ""}}no{{end}}{{if 0}}no{{end}}', {
      ...data,
      Empty: [],
    }),
    'yes',
  );
  assert.equal(r('{{if and .B (gt .N 2)}}ok{{end}}', data), 'ok');
});

test('range over lists, maps and ints, with $ and . rebinding', () => {
  assert.equal(r('{{range .Mounts}}{{.Source}} {{end}}', data), '/a /b ');
  assert.equal(r('{{range $i, $e := .List}}{{$i}}={{$e}},{{end}}', data), '0=a,1=b,2=c,');
  assert.equal(r('{{range $e := .List}}{{$e}}{{end}}', data), 'abc');
  assert.equal(r('{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}', data), 'com.x=y;foo=bar;');
  assert.equal(r('{{range .List}}{{$.Name}}:{{.}} {{end}}', data), 'web:a web:b web:c ');
  assert.equal(r('{{range .Missing}}x{{else}}empty{{end}}', data), 'empty');
  assert.equal(r('{{range 3}}{{.}}{{end}}', data), '012');
  assert.equal(r('{{range .List}}{{if eq . "b"}}{{continue}}{{end}}{{.}}{{end}}', data), 'ac');
  assert.equal(r('{{range .List}}{{if eq . "b"}}{{break}}{{end}}{{.}}{{end}}', data), 'a');
});

test('variables, assignment and with', () => {
  assert.equal(r('{{$x := .Name}}{{$x}}', data), 'web');
  assert.equal(r('{{$x := 1}}{{range .List}}{{$x = .}}{{end}}{{$x}}', data), 'c');
  assert.equal(r('{{with .Labels}}{{.foo}} {{$.Name}}{{end}}', data), 'bar web');
  assert.equal(r('{{with .Missing}}x{{else}}none{{end}}', data), 'none');
  assert.equal(r('{{with $v := .Name}}{{$v}}{{end}}', data), 'web');
  assert.equal(r('{{with .Missing}}a{{else with .Name}}{{.}}{{end}}', data), 'web');
});

test('literals', () => {
  assert.equal(
    r(`{{"a\\tb"}}|{{\`raw\\n\`}}|{{'a'}}|{{0x1F}}|{{1e3}}|{{1.5}}|{{true}}|{{-5}}`, {}),
    'a\tb|raw\\n|97|31|1000|1.5|true|-5',
  );
});

test('comparisons and logic', () => {
  assert.equal(
    r('{{eq 1 1}} {{eq "a" "b" "a"}} {{ne .Name "x"}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}}', data),
    'true true true true true true false',
  );
  assert.equal(r('{{and 1 0}} {{and 1 2}} {{or 0 ""}} {{or 0 "x"}} {{not .B}}', data), '0 2  x false');
  assert.equal(r('{{eq .Nil nil}}', data), 'true');
  assert.throws(() => r('{{lt .Name 1}}', data), {
    message:
      'template: :1:2: executing "" at <lt .Name 1>: error calling lt: incompatible types for comparison',
  });
});

test('len, index, slice, print, println', () => {
  assert.equal(r('{{len .List}} {{len .Name}} {{len .Labels}} {{len "é"}}', data), '3 3 2 2');
  assert.equal(r('{{index .List 1}} {{index .Mounts 0 | printf "%v"}}', data), 'b map[Source:/a]');
  assert.equal(r('{{slice .Name 1}} {{slice .List 1 2}}', data), 'eb [b]');
  assert.equal(r('{{print 1 2 "a" 3 "b"}}', data), '1 2a3b');
  assert.equal(r('{{println 1 "a"}}', data), '1 a\n');
  assert.throws(() => r('{{index .List 5}}', data), /error calling index: index out of range: 5/);
});

test('docker functions: json, join, split, lower, upper, title, truncate, pad', () => {
  // docker's json does not escape HTML characters (SetEscapeHTML(false)).
  assert.equal(r('{{json .Cmd}}', data), '["sh","-c","a && b <c>"]');
  assert.equal(r('{{json .Labels}}', data), '{"foo":"bar","com.x":"y"}');
  assert.equal(r('{{json .Nil}} {{json .N}} {{json .Name}}', data), 'null 3 "web"');
  assert.equal(r('{{join .List ", "}}', data), 'a, b, c');
  assert.equal(r('{{split "a:b:c" ":"}} {{index (split "nginx:1.25" ":") 1}}', data), '[a b c] 1.25');
  assert.equal(r('{{upper .Name}} {{lower "ABC"}} {{title "hello world-x"}}', data), 'WEB abc Hello World-X');
  assert.equal(r('{{truncate .ID 12}} {{truncate "ab" 12}}', data), 'abcdef012345 ab');
  assert.equal(r('[{{pad .Name 2 3}}][{{pad "" 2 3}}]', data), '[  web   ][]');
  assert.throws(() => r('{{upper .N}}', data), {
    message: 'template: :1:8: executing "" at <.N>: wrong type for value; expected string; got int',
  });
  assert.throws(
    () => r('{{truncate .ID}}', data),
    /at <truncate>: wrong number of args for truncate: want 2 got 1/,
  );
});

test('define, template and block', () => {
  assert.equal(r('{{define "x"}}[{{.}}]{{end}}{{template "x" .Name}}', data), '[web]');
  assert.equal(r('{{block "b" .N}}<{{.}}>{{end}}', data), '<3>');
});

test('extra functions from parse options', () => {
  const t = parseTemplate('{{shout .Name}}', { funcs: { shout: (s) => String(s) + '!' } });
  assert.equal(execute(t, data), 'web!');
});

test('parse errors say where, like Go', () => {
  const cases: [string, string][] = [
    ['{{.Name}', 'template: :1: unexpected "}" in operand'],
    ['{{.Name', 'template: :1: unclosed action'],
    ['x\n{{.Name', 'template: :2: unclosed action'],
    ['{{.Name\n', 'template: :2: unclosed action started at :1'],
    ['{{if .X}}', 'template: :1: unexpected EOF'],
    ['{{end}}', 'template: :1: unexpected {{end}}'],
    ['{{else}}', 'template: :1: unexpected {{else}}'],
    ['{{foo}}', 'template: :1: function "foo" not defined'],
    ['{{$x}}', 'template: :1: undefined variable "$x"'],
    ['{{}}', 'template: :1: missing value for command'],
    ['{{if}}{{end}}', 'template: :1: missing value for if'],
    ['{{"a" | 3}}', 'template: :1: non executable command in pipeline stage 2'],
    ['{{break}}', 'template: :1: {{break}} outside {{range}}'],
    ['{{"abc}}', 'template: :1: unterminated quoted string'],
    ['{{(.X}}', 'template: :1: unclosed left paren'],
    ['{{.X)}}', 'template: :1: unexpected right paren'],
    ['{{3x}}', 'template: :1: bad number syntax: "3x"'],
  ];
  for (const [src, msg] of cases) {
    assert.throws(
      () => parseTemplate(src),
      (e: unknown) => e instanceof TemplateError && e.message === msg,
      src,
    );
  }
});

test('execution errors say where, like Go', () => {
  assert.throws(
    () => r('{{range .Name}}{{end}}', data),
    /template: :1:2: executing "" at <.*>: range can't iterate over web/,
  );
  assert.throws(() => r('\n {{.Name.X}}', data), /^TemplateError: template: :2:3: executing "" at <.Name.X>/);
  assert.throws(() => r('{{.Name 1}}', data), /Name is not a method but has arguments/);
});
