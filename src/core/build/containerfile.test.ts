import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ContainerfileError,
  expandValue,
  keyValuePairs,
  parseContainerfile,
  processWords,
  splitStages,
} from './containerfile.js';

const vars = (m: Record<string, string>) => (n: string) => m[n];

test('comments, blank lines and line continuations (comments inside a continuation are dropped)', () => {
  const f = parseContainerfile(
    [
      '# a comment',
      '',
      'FROM busybox',
      'RUN echo a \\',
      '  # inside',
      '',
      '    && echo b',
      '  run   echo lower',
    ].join('\n'),
  );
  assert.deepEqual(
    f.instructions.map((i) => [i.name, i.line, i.args]),
    [
      ['FROM', 3, 'busybox'],
      ['RUN', 4, 'echo a     && echo b'],
      ['RUN', 8, 'echo lower'],
    ],
  );
});

test('JSON (exec) vs shell forms; bad JSON falls back to the shell form', () => {
  const f = parseContainerfile(
    'FROM x\nCMD ["a", "b c"]\nENTRYPOINT echo hi\nRUN [not json]\nCOPY ["a b", "/d/"]',
  );
  const [, cmd, ep, run, copy] = f.instructions;
  assert.deepEqual(cmd!.json, ['a', 'b c']);
  assert.equal(ep!.json, undefined);
  assert.equal(ep!.args, 'echo hi');
  assert.equal(run!.json, undefined);
  assert.deepEqual(copy!.json, ['a b', '/d/']);
});

test('flags: --from, --chown, --platform', () => {
  const f = parseContainerfile('FROM --platform=linux/amd64 busybox AS b\nCOPY --from=b --chown=1:2 /x /y');
  assert.deepEqual(f.instructions[0]!.flags, { platform: 'linux/amd64' });
  assert.equal(f.instructions[0]!.args, 'busybox AS b');
  assert.deepEqual(f.instructions[1]!.flags, { from: 'b', chown: '1:2' });
  assert.equal(f.instructions[1]!.args, '/x /y');
});

test('the escape directive changes the continuation character', () => {
  const f = parseContainerfile('# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo');
  assert.equal(f.escape, '`');
  assert.equal(f.instructions[1]!.args, 'dir c:\\   && echo');
});

test('an unknown instruction names its line', () => {
  assert.throws(
    () => parseContainerfile('FROM x\n\nFOO bar', 'Containerfile'),
    (e: Error) => e instanceof ContainerfileError && /line 3: unknown instruction: FOO/.test(e.message),
  );
  assert.throws(() => parseContainerfile('FROM x\nRUN'), /line 2: RUN requires at least one argument/);
});

test('variable substitution: $V, ${V}, ${V:-d}, ${V:+a}, quotes and escapes', () => {
  const v = vars({ A: 'one', E: '' });
  assert.equal(expandValue('$A-${A}', v), 'one-one');
  assert.equal(expandValue('${MISSING:-dflt} ${E:-e} ${A:+set} ${E:+x}', v), 'dflt e set ');
  assert.equal(expandValue('\'$A\' "$A" \\$A', v), '$A one $A');
  assert.deepEqual(processWords('a "b c" d\\ e $A', v), ['a', 'b c', 'd e', 'one']);
  assert.throws(() => processWords('"open', v), /matching/);
});

test('ENV/LABEL/ARG pairs, legacy ENV form, ARG without a default', () => {
  const v = vars({ X: 'x' });
  assert.deepEqual(keyValuePairs('ENV', 'A=1 B="two words" C=$X', v), [
    ['A', '1'],
    ['B', 'two words'],
    ['C', 'x'],
  ]);
  assert.deepEqual(keyValuePairs('ENV', 'KEY value with spaces', v), [['KEY', 'value with spaces']]);
  assert.deepEqual(keyValuePairs('ARG', 'NAME', v), [['NAME', undefined]]);
  assert.deepEqual(keyValuePairs('ARG', 'V=1.0', v), [['V', '1.0']]);
});

test('stages: global ARGs, names, errors', () => {
  const { globalArgs, stages } = splitStages(
    parseContainerfile('ARG BASE=busybox\nFROM $BASE AS build\nRUN x\nFROM scratch\nCOPY --from=build /a /a'),
  );
  assert.equal(globalArgs.length, 1);
  assert.deepEqual(
    stages.map((s) => [s.name, s.base, s.instructions.length]),
    [
      ['build', '$BASE', 1],
      [undefined, 'scratch', 1],
    ],
  );
  assert.throws(() => splitStages(parseContainerfile('RUN x\nFROM y')), /line 1: no build stage/);
  assert.throws(() => splitStages(parseContainerfile('FROM a AS x\nFROM b AS x')), /duplicate name x/);
});
