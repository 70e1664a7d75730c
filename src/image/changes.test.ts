import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from '../core/errors.js';
import { applyChanges, splitWords } from './changes.js';

test('JSON and shell forms of CMD and ENTRYPOINT', () => {
  assert.deepEqual(applyChanges({}, ['CMD ["/bin/x", "-a"]']).Cmd, ['/bin/x', '-a']);
  assert.deepEqual(applyChanges({}, ['CMD echo hi']).Cmd, ['/bin/sh', '-c', 'echo hi']);
  const c = applyChanges({ Cmd: ['old'] }, ['entrypoint ["/e"]']);
  assert.deepEqual(c.Entrypoint, ['/e']);
  assert.equal(c.Cmd, undefined);
});

test('ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL', () => {
  const c = applyChanges({ Env: ['PATH=/bin', 'A=1'] }, [
    'ENV A=2 B="two words"',
    'ENV C legacy form',
    'LABEL a=b "c d"=e',
    'WORKDIR /srv',
    'WORKDIR app',
    'USER nobody',
    'EXPOSE 80 53/udp 8000-8001',
    'VOLUME ["/data"]',
    'STOPSIGNAL SIGINT',
  ]);
  assert.deepEqual(c.Env, ['PATH=/bin', 'A=2', 'B=two words', 'C=legacy form']);
  assert.deepEqual(c.Labels, { a: 'b', 'c d': 'e' });
  assert.equal(c.WorkingDir, '/srv/app');
  assert.equal(c.User, 'nobody');
  assert.deepEqual(Object.keys(c.ExposedPorts ?? {}), ['80/tcp', '53/udp', '8000/tcp', '8001/tcp']);
  assert.deepEqual(c.Volumes, { '/data': {} });
  assert.equal(c.StopSignal, 'SIGINT');
});

test('every bad line is reported at once', () => {
  assert.throws(
    () => applyChanges({}, ['RUN rm -rf /', 'EXPOSE 99999', 'ENV =x']),
    (e: unknown) =>
      e instanceof InvalidArgumentError &&
      /"RUN" is not a valid change command/.test(e.message) &&
      /invalid containerPort: 99999/.test(e.message) &&
      /names can not be blank/.test(e.message),
  );
});

test('splitWords honours quotes and escapes', () => {
  assert.deepEqual(splitWords(`a "b c" 'd e' f\\ g ""`), ['a', 'b c', 'd e', 'f g', '']);
});
