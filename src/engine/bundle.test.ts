import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSpec, mergeEnv, parseUlimits, resolveProcessArgs } from './bundle.js';
import { createOptions } from '../core/instance.js';

const inputs = (partial: Parameters<typeof createOptions>[0]) => ({
  id: 'a'.repeat(64),
  options: createOptions(partial),
  image: { Cmd: ['sh'], Env: ['PATH=/bin', 'X=image'] },
  hostname: 'aaaaaaaaaaaa',
  etcFiles: { hostname: '/h', hosts: '/hs', resolvConf: '/r' },
  mounts: [],
  hardLimits: { nofile: 20000 },
});

test('entrypoint and cmd combine as docker does', () => {
  const image = { Entrypoint: ['/entry'], Cmd: ['default'] };
  assert.deepEqual(resolveProcessArgs(createOptions({ image: 'x' }), image), ['/entry', 'default']);
  assert.deepEqual(resolveProcessArgs(createOptions({ image: 'x', cmd: ['a'] }), image), ['/entry', 'a']);
  // --entrypoint resets the image's Cmd
  assert.deepEqual(resolveProcessArgs(createOptions({ image: 'x', entrypoint: ['/other'] }), image), [
    '/other',
  ]);
  assert.deepEqual(resolveProcessArgs(createOptions({ image: 'x', entrypoint: [], cmd: ['ls'] }), image), [
    'ls',
  ]);
  assert.throws(() => resolveProcessArgs(createOptions({ image: 'x' }), {}), /No command specified/);
});

test('-e overrides image env; PATH and HOSTNAME are set when missing', () => {
  assert.deepEqual(mergeEnv(['X=1', 'PATH=/bin'], ['X=2', 'Y=3'], { HOSTNAME: 'h' }), [
    'X=2',
    'PATH=/bin',
    'Y=3',
    'HOSTNAME=h',
  ]);
  assert.ok(mergeEnv([], [], {}).some((e) => e.startsWith('PATH=/usr/local/sbin')));
});

test('the spec carries limits, docker masks and the default seccomp profile', () => {
  const spec = buildSpec(
    inputs({ image: 'busybox', memory: 64 << 20, nanoCpus: 5e8, pidsLimit: 20, cpuShares: 512 }),
  );
  assert.equal(spec.linux.resources?.memory?.limit, 64 << 20);
  assert.deepEqual(spec.linux.resources?.cpu, { shares: 512, quota: 50000, period: 100000 });
  assert.equal(spec.linux.resources?.pids?.limit, 20);
  assert.ok(spec.linux.maskedPaths?.includes('/proc/kcore'));
  assert.ok(spec.linux.readonlyPaths?.includes('/proc/sys'));
  assert.equal(spec.linux.seccomp?.defaultAction, 'SCMP_ACT_ERRNO');
  assert.ok(!spec.process.capabilities?.bounding?.includes('CAP_SYS_ADMIN'));
  assert.equal(spec.process.noNewPrivileges, true);
  assert.deepEqual(spec.process.args, ['sh']);
  assert.ok(spec.process.env.includes('X=image'));
});

test('--privileged drops masks and seccomp and grants every capability', () => {
  const spec = buildSpec(inputs({ image: 'busybox', privileged: true }));
  assert.equal(spec.linux.seccomp, undefined);
  assert.deepEqual(spec.linux.maskedPaths, []);
  assert.ok(spec.process.capabilities?.bounding?.includes('CAP_SYS_ADMIN'));
});

test('bad capabilities, security options and ulimits are all reported at once', () => {
  assert.throws(
    () =>
      buildSpec(
        inputs({
          image: 'busybox',
          capAdd: ['NOPE'],
          securityOpt: ['bogus=1'],
          ulimits: ['nofile=99999999'],
        }),
      ),
    (error: Error) =>
      /NOPE/.test(error.message) && /bogus/.test(error.message) && /hard limit 20000/.test(error.message),
  );
});

test('ulimits parse docker forms and never exceed the hard limit', () => {
  const problems: string[] = [];
  assert.deepEqual(parseUlimits(['nofile=1024:2048', 'nproc=100'], { nofile: 20000 }, problems), [
    { type: 'RLIMIT_NOFILE', soft: 1024, hard: 2048 },
    { type: 'RLIMIT_NPROC', soft: 100, hard: 100 },
  ]);
  assert.deepEqual(problems, []);
  parseUlimits(['nofile=1048576', 'bogus=1', 'nofile=5:1'], { nofile: 20000 }, problems);
  assert.equal(problems.length, 3);
});
