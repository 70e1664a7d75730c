import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../errors.js';
import type { OciSeccomp } from '../oci.js';
import { DEFAULT_CAPABILITIES } from './capabilities.js';
import { defaultSeccompProfile } from './seccomp-default.js';
import { parseSeccompProfile } from './seccomp-profile.js';

const rulesFor = (p: OciSeccomp, name: string) => (p.syscalls ?? []).filter((r) => r.names.includes(name));

test('default profile: EPERM by default, x86 arches, read allowed', () => {
  const p = defaultSeccompProfile([...DEFAULT_CAPABILITIES]);
  assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(p.defaultErrnoRet, 1);
  assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  assert.deepEqual(rulesFor(p, 'read'), [p.syscalls?.[0]]);
  assert.equal(p.syscalls?.[0].action, 'SCMP_ACT_ALLOW');
  // Rules keep no docker-only fields.
  for (const r of p.syscalls ?? []) {
    assert.deepEqual(
      Object.keys(r).filter((k) => !['names', 'action', 'errnoRet', 'args'].includes(k)),
      [],
    );
  }
});

test('default profile without CAP_SYS_ADMIN: no mount, clone restricted, clone3 ENOSYS', () => {
  const p = defaultSeccompProfile([...DEFAULT_CAPABILITIES]);
  assert.deepEqual(rulesFor(p, 'mount'), []);
  assert.deepEqual(rulesFor(p, 'unshare'), []);
  assert.deepEqual(rulesFor(p, 'clone'), [
    {
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 0x7e020000, op: 'SCMP_CMP_MASKED_EQ' }],
    },
  ]);
  assert.deepEqual(rulesFor(p, 'clone3'), [{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
  assert.deepEqual(rulesFor(p, 'settimeofday'), []);
  assert.deepEqual(rulesFor(p, 'init_module'), []);
  assert.deepEqual(rulesFor(p, 'finit_module'), []);
  assert.deepEqual(rulesFor(p, 'chroot').length, 1); // CAP_SYS_CHROOT is a default capability
});

test('default profile with CAP_SYS_ADMIN, CAP_SYS_TIME, CAP_SYS_MODULE (any spelling)', () => {
  const p = defaultSeccompProfile([...DEFAULT_CAPABILITIES, 'sys_admin', 'CAP_SYS_TIME', 'Cap_Sys_Module']);
  assert.equal(rulesFor(p, 'mount').length, 1);
  assert.deepEqual(rulesFor(p, 'clone'), [rulesFor(p, 'mount')[0]]);
  assert.ok(rulesFor(p, 'clone3').every((r) => r.action === 'SCMP_ACT_ALLOW'));
  assert.equal(rulesFor(p, 'settimeofday').length, 1);
  assert.equal(rulesFor(p, 'finit_module').length, 1);
});

test('default profile: arch includes for amd64 only, personality and socket args', () => {
  const p = defaultSeccompProfile([]);
  assert.equal(rulesFor(p, 'arch_prctl').length, 1);
  assert.equal(rulesFor(p, 'modify_ldt').length, 1);
  assert.deepEqual(rulesFor(p, 'cacheflush'), []);
  assert.deepEqual(rulesFor(p, 'riscv_flush_icache'), []);
  assert.deepEqual(
    rulesFor(p, 'personality').map((r) => r.args?.[0].value),
    [0, 8, 0x20000, 0x20008, 0xffffffff],
  );
  assert.deepEqual(rulesFor(p, 'socket'), [
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }] },
  ]);
  // No CAP_SYS_CHROOT here.
  assert.deepEqual(rulesFor(p, 'chroot'), []);
});

test('default profile: minKernel 4.8 for ptrace holds unless the kernel is older', () => {
  assert.equal(rulesFor(defaultSeccompProfile([]), 'ptrace').length, 1);
  assert.equal(rulesFor(defaultSeccompProfile([], { kernelVersion: '6.1.0-18-amd64' }), 'ptrace').length, 1);
  assert.equal(rulesFor(defaultSeccompProfile([], { kernelVersion: '4.4.0' }), 'ptrace').length, 0);
  assert.equal(
    rulesFor(defaultSeccompProfile(['CAP_SYS_PTRACE'], { kernelVersion: '4.4' }), 'ptrace').length,
    1,
  );
});

test('parses a user profile: name, archMap, includes, excludes, errnoRet, args', () => {
  const json = JSON.stringify({
    defaultAction: 'SCMP_ACT_ALLOW',
    archMap: [
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86'] },
    ],
    flags: ['SECCOMP_FILTER_FLAG_LOG'],
    syscalls: [
      { name: 'mkdir', action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      { names: ['chmod', 'fchmod'], action: 'SCMP_ACT_ERRNO', includes: { caps: ['CAP_FOWNER'] } },
      { names: ['kill'], action: 'SCMP_ACT_ERRNO', excludes: { caps: ['KILL'] } },
      {
        names: ['ioctl'],
        action: 'SCMP_ACT_ERRNO',
        args: [{ index: 1, value: 0xff00, valueTwo: 0x5400, op: 'SCMP_CMP_MASKED_EQ' }],
        comment: 'no terminal ioctls',
      },
    ],
  });
  const p = parseSeccompProfile(json, ['CAP_KILL']);
  assert.deepEqual(p, {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
    flags: ['SECCOMP_FILTER_FLAG_LOG'],
    syscalls: [
      { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      {
        names: ['ioctl'],
        action: 'SCMP_ACT_ERRNO',
        args: [{ index: 1, value: 0xff00, valueTwo: 0x5400, op: 'SCMP_CMP_MASKED_EQ' }],
      },
    ],
  });
  const withFowner = parseSeccompProfile(json, ['fowner']);
  assert.deepEqual(
    withFowner.syscalls?.map((r) => r.names[0]),
    ['mkdir', 'chmod', 'kill', 'ioctl'],
  );
});

test('a minimal profile needs only defaultAction', () => {
  assert.deepEqual(parseSeccompProfile('{"defaultAction":"SCMP_ACT_ALLOW"}', []), {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [],
  });
});

const problemsOf = (json: string): string => {
  try {
    parseSeccompProfile(json, []);
  } catch (err) {
    assert.ok(err instanceof InvalidArgumentError, String(err));
    return err.message;
  }
  assert.fail('expected an InvalidArgumentError');
};

test('malformed JSON and non-objects are rejected', () => {
  assert.match(problemsOf('{"defaultAction": '), /seccomp profile: not valid JSON/);
  assert.match(problemsOf('[]'), /seccomp profile: must be a JSON object/);
  assert.match(problemsOf('{}'), /defaultAction: is required/);
});

test('every problem is reported with its place', () => {
  const msg = problemsOf(
    JSON.stringify({
      defaultAction: 'SCMP_ACT_NOPE',
      defaultErrnoRet: -1,
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_VAX'],
      archMap: [{ architecture: 'SCMP_ARCH_X86_64' }],
      syscalls: [
        { name: 'read', names: ['write'], action: 'SCMP_ACT_ALLOW' },
        { names: 'read', action: 'SCMP_ACT_ALLOW' },
        { names: ['read'] },
        { names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] },
        {
          names: ['read'],
          action: 'SCMP_ACT_ALLOW',
          args: [{ index: 0, value: 1.5, op: 'SCMP_CMP_ALMOST' }],
        },
        { names: ['read'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: 'new' } },
        42,
      ],
    }),
  );
  for (const expected of [
    'defaultAction: unknown action "SCMP_ACT_NOPE"',
    'defaultErrnoRet: must be an integer from 0 to 65535, got -1',
    'architectures[1]: unknown architecture "SCMP_ARCH_VAX"',
    "architectures: both 'architectures' and 'archMap' are given",
    "syscalls[0]: use either 'name' or 'names', not both",
    'syscalls[1].names: must be an array of strings, got "read"',
    'syscalls[2].action: is required',
    'syscalls[3].args[0].index: must be an integer from 0 to 5, got 6',
    'syscalls[4].args[0].value: must be an integer',
    'syscalls[4].args[0].op: unknown operator "SCMP_CMP_ALMOST"',
    'syscalls[5].includes.minKernel: must be a kernel version like "4.8", got "new"',
    'syscalls[6]: must be an object',
  ]) {
    assert.ok(msg.includes(expected), `missing ${JSON.stringify(expected)} in: ${msg}`);
  }
});

test('a rule without names is rejected', () => {
  assert.match(
    problemsOf('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}'),
    /syscalls\[0\]: has no 'names'/,
  );
  assert.match(
    problemsOf('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":[],"action":"SCMP_ACT_ALLOW"}]}'),
    /syscalls\[0\]\.names: is empty/,
  );
});
