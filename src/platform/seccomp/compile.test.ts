import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../core/errors.js';
import type { OciSeccomp, OciSeccompOperator } from '../../core/oci.js';
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES } from '../../core/security/capabilities.js';
import { defaultSeccompProfile } from '../../core/security/seccomp-default.js';
import {
  AUDIT_ARCH_I386,
  AUDIT_ARCH_X86_64,
  BPF_ALU_AND_K,
  BPF_JMP_JA,
  BPF_JMP_JEQ_K,
  BPF_JMP_JGE_K,
  BPF_JMP_JGT_K,
  BPF_LD_W_ABS,
  BPF_MAXINSNS,
  BPF_RET_K,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  SECCOMP_RET_KILL_THREAD,
  SECCOMP_RET_LOG,
  SECCOMP_RET_TRACE,
  SECCOMP_RET_TRAP,
  compileSeccomp,
} from './compile.js';
import { SYSCALLS_I386, SYSCALLS_X32, SYSCALLS_X86_64, X32_SYSCALL_BIT } from './syscalls-x86_64.js';

const AUDIT_ARCH_AARCH64 = 0xc00000b7;
const EPERM = SECCOMP_RET_ERRNO | 1;
const ENOSYS = SECCOMP_RET_ERRNO | 38;

interface SeccompData {
  nr: number;
  arch?: number;
  args?: (number | bigint)[];
}

/** Checks what the kernel's classic-BPF and seccomp checkers check for the opcodes the compiler emits. */
function verify(prog: Buffer): void {
  assert.equal(prog.length % 8, 0);
  const n = prog.length / 8;
  assert.ok(n > 0 && n <= BPF_MAXINSNS, `length ${n}`);
  for (let pc = 0; pc < n; pc++) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    switch (code) {
      case BPF_LD_W_ABS:
        assert.ok(k % 4 === 0 && k < 64, `ld offset ${k} at ${pc}`);
        break;
      case BPF_ALU_AND_K:
      case BPF_RET_K:
        break;
      case BPF_JMP_JA:
        assert.ok(pc + 1 + k < n, `ja out of range at ${pc}`);
        break;
      case BPF_JMP_JEQ_K:
      case BPF_JMP_JGT_K:
      case BPF_JMP_JGE_K:
        assert.ok(pc + 1 + jt < n && pc + 1 + jf < n, `jump out of range at ${pc}`);
        break;
      default:
        assert.fail(`unexpected opcode 0x${code.toString(16)} at ${pc}`);
    }
  }
  assert.equal(prog.readUInt16LE((n - 1) * 8), BPF_RET_K, 'the last instruction must be a return');
}

/** Runs a seccomp BPF program on struct seccomp_data (little-endian) and returns the action. */
function run(prog: Buffer, data: SeccompData): number {
  const mem = Buffer.alloc(64);
  mem.writeUInt32LE(data.nr >>> 0, 0);
  mem.writeUInt32LE((data.arch ?? AUDIT_ARCH_X86_64) >>> 0, 4);
  (data.args ?? []).forEach((a, i) => mem.writeBigUInt64LE(BigInt.asUintN(64, BigInt(a)), 16 + 8 * i));
  let acc = 0;
  let pc = 0;
  for (let steps = 0; steps < BPF_MAXINSNS; steps++) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    pc++;
    switch (code) {
      case BPF_LD_W_ABS:
        acc = mem.readUInt32LE(k);
        break;
      case BPF_ALU_AND_K:
        acc = (acc & k) >>> 0;
        break;
      case BPF_JMP_JA:
        pc += k;
        break;
      case BPF_JMP_JEQ_K:
        pc += acc === k ? jt : jf;
        break;
      case BPF_JMP_JGT_K:
        pc += acc > k ? jt : jf;
        break;
      case BPF_JMP_JGE_K:
        pc += acc >= k ? jt : jf;
        break;
      case BPF_RET_K:
        return k;
      default:
        throw new Error(`unexpected opcode ${code}`);
    }
  }
  throw new Error('program did not return');
}

const compile = (p: OciSeccomp, opts?: Parameters<typeof compileSeccomp>[1]): Buffer => {
  const prog = compileSeccomp(p, opts);
  verify(prog);
  return prog;
};
const nr = (name: string) => SYSCALLS_X86_64[name];

const CLONE_CHILD = 0x01200011; // CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD, what fork() passes
const CLONE_THREAD_FLAGS = 0x003d0f00; // what pthread_create passes
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWNS = 0x00020000;

test('default profile: read allowed, mount EPERM without CAP_SYS_ADMIN', () => {
  const prog = compile(defaultSeccompProfile([...DEFAULT_CAPABILITIES]));
  assert.equal(run(prog, { nr: nr('read') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('write') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('execve') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('mount') }), EPERM);
  assert.equal(run(prog, { nr: nr('umount2') }), EPERM);
  assert.equal(run(prog, { nr: nr('settimeofday') }), EPERM);
  assert.equal(run(prog, { nr: nr('init_module') }), EPERM);
  assert.equal(run(prog, { nr: nr('finit_module') }), EPERM);
  assert.equal(run(prog, { nr: nr('kexec_load') }), EPERM);
  assert.equal(run(prog, { nr: nr('chroot') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('clone3') }), ENOSYS);
});

test('default profile: granted capabilities open their syscalls', () => {
  const prog = compile(
    defaultSeccompProfile([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN', 'CAP_SYS_TIME', 'CAP_SYS_MODULE']),
  );
  assert.equal(run(prog, { nr: nr('mount') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('settimeofday') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('finit_module') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('clone3') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('clone'), args: [CLONE_NEWUSER | CLONE_CHILD] }), SECCOMP_RET_ALLOW);
});

test('default profile: clone may not create namespaces without CAP_SYS_ADMIN', () => {
  const prog = compile(defaultSeccompProfile([...DEFAULT_CAPABILITIES]));
  const clone = nr('clone');
  assert.equal(run(prog, { nr: clone, args: [CLONE_CHILD] }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: clone, args: [CLONE_THREAD_FLAGS] }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: clone, args: [CLONE_NEWUSER | CLONE_CHILD] }), EPERM);
  assert.equal(run(prog, { nr: clone, args: [CLONE_NEWNS] }), EPERM);
  // The mask is 64-bit with a zero high word: high bits are ignored like in libseccomp.
  assert.equal(run(prog, { nr: clone, args: [(1n << 32n) | BigInt(CLONE_CHILD)] }), SECCOMP_RET_ALLOW);
});

test('default profile: socket args, personality args', () => {
  const prog = compile(defaultSeccompProfile([...DEFAULT_CAPABILITIES]));
  assert.equal(run(prog, { nr: nr('socket'), args: [2, 1, 0] }), SECCOMP_RET_ALLOW); // AF_INET
  assert.equal(run(prog, { nr: nr('socket'), args: [1, 1, 0] }), SECCOMP_RET_ALLOW); // AF_UNIX
  assert.equal(run(prog, { nr: nr('socket'), args: [40, 1, 0] }), EPERM); // AF_VSOCK
  const personality = nr('personality');
  for (const ok of [0, 8, 0x20000, 0x20008, 0xffffffff]) {
    assert.equal(run(prog, { nr: personality, args: [ok] }), SECCOMP_RET_ALLOW, `personality(${ok})`);
  }
  for (const bad of [0x0040000 /* ADDR_NO_RANDOMIZE */, 1, 0x1_0000_0000]) {
    assert.equal(run(prog, { nr: personality, args: [bad] }), EPERM, `personality(${bad})`);
  }
});

test('default profile: foreign arches are killed, i386 and x32 are filtered', () => {
  const prog = compile(defaultSeccompProfile([...DEFAULT_CAPABILITIES]));
  assert.equal(run(prog, { arch: AUDIT_ARCH_AARCH64, nr: 63 }), SECCOMP_RET_KILL_PROCESS);
  assert.equal(run(prog, { arch: 0, nr: 0 }), SECCOMP_RET_KILL_PROCESS);
  // i386: read is 3, mount is 21, socket is 359.
  assert.equal(run(prog, { arch: AUDIT_ARCH_I386, nr: SYSCALLS_I386.read }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { arch: AUDIT_ARCH_I386, nr: SYSCALLS_I386.mount }), EPERM);
  assert.equal(run(prog, { arch: AUDIT_ARCH_I386, nr: SYSCALLS_I386.socketcall }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { arch: AUDIT_ARCH_I386, nr: SYSCALLS_I386.socket, args: [40] }), EPERM);
  assert.equal(run(prog, { arch: AUDIT_ARCH_I386, nr: SYSCALLS_I386.socket, args: [2] }), SECCOMP_RET_ALLOW);
  // i386 compares only the low word (the kernel truncates 32-bit arguments).
  assert.equal(
    run(prog, { arch: AUDIT_ARCH_I386, nr: SYSCALLS_I386.socket, args: [(1n << 32n) | 40n] }),
    EPERM,
  );
  // x32 numbers carry bit 30 and use the x86_64 audit arch.
  const x32 = (name: string) => (X32_SYSCALL_BIT | SYSCALLS_X32[name]) >>> 0;
  assert.equal(run(prog, { nr: x32('read') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: x32('execve') }), SECCOMP_RET_ALLOW); // 520, an x32-only number
  assert.equal(run(prog, { nr: x32('mount') }), EPERM);
  assert.equal(run(prog, { nr: x32('clone'), args: [CLONE_NEWUSER] }), EPERM);
  assert.equal(run(prog, { nr: x32('clone'), args: [CLONE_CHILD] }), SECCOMP_RET_ALLOW);
});

test('syscalls newer than the profile get ENOSYS, older unknown ones the default', () => {
  const prog = compile(defaultSeccompProfile([...DEFAULT_CAPABILITIES]));
  assert.equal(run(prog, { nr: nr('fchmodat2') }), ENOSYS);
  assert.equal(run(prog, { nr: nr('listns') }), ENOSYS);
  assert.equal(run(prog, { nr: 1000 }), ENOSYS);
  assert.equal(run(prog, { nr: nr('futex_waitv') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('kexec_file_load') }), EPERM);
  assert.equal(run(prog, { nr: nr('uretprobe') }), EPERM);
  assert.equal(run(prog, { arch: AUDIT_ARCH_I386, nr: 1000 }), ENOSYS);
  assert.equal(run(prog, { nr: (X32_SYSCALL_BIT | 1000) >>> 0 }), ENOSYS);
  // nr -1 (no syscall) gets the default action.
  assert.equal(run(prog, { nr: 0xffffffff }), EPERM);
  const noStub = compile(defaultSeccompProfile([...DEFAULT_CAPABILITIES]), { enosysStub: false });
  assert.equal(run(noStub, { nr: nr('fchmodat2') }), EPERM);
  assert.equal(run(noStub, { nr: 1000 }), EPERM);
});

test('default profile: every allowed x86_64 syscall is allowed, and the program is small', () => {
  const profile = defaultSeccompProfile([...DEFAULT_CAPABILITIES]);
  const prog = compile(profile);
  assert.ok(prog.length / 8 < 1500, `${prog.length / 8} instructions`);
  for (const name of profile.syscalls?.[0].names ?? []) {
    if (name in SYSCALLS_X86_64) assert.equal(run(prog, { nr: nr(name) }), SECCOMP_RET_ALLOW, name);
  }
  const everyCap = compile(defaultSeccompProfile([...ALL_CAPABILITIES]));
  assert.ok(everyCap.length / 8 < 1500, `${everyCap.length / 8} instructions`);
  assert.equal(run(everyCap, { nr: nr('mount') }), SECCOMP_RET_ALLOW);
  assert.equal(run(everyCap, { nr: nr('kexec_load') }), EPERM);
});

test('x32 not listed: x32 calls are killed like a foreign arch', () => {
  const prog = compile({
    defaultAction: 'SCMP_ACT_ERRNO',
    syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }],
  });
  assert.equal(run(prog, { nr: 0 }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: X32_SYSCALL_BIT }), SECCOMP_RET_KILL_PROCESS);
  assert.equal(run(prog, { arch: AUDIT_ARCH_I386, nr: 3 }), SECCOMP_RET_KILL_PROCESS);
  assert.equal(run(prog, { nr: 0xffffffff }), EPERM);
});

test('actions map to SECCOMP_RET values', () => {
  const prog = compile({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      { names: ['mkdir'], action: 'SCMP_ACT_ERRNO' },
      { names: ['rmdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      { names: ['kill'], action: 'SCMP_ACT_KILL' },
      { names: ['tkill'], action: 'SCMP_ACT_KILL_THREAD' },
      { names: ['tgkill'], action: 'SCMP_ACT_KILL_PROCESS' },
      { names: ['ptrace'], action: 'SCMP_ACT_TRAP' },
      { names: ['getpid'], action: 'SCMP_ACT_LOG' },
      { names: ['getppid'], action: 'SCMP_ACT_TRACE', errnoRet: 7 },
      { names: ['gettid'], action: 'SCMP_ACT_TRACE' },
    ],
  });
  assert.equal(run(prog, { nr: nr('read') }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: 1000 }), SECCOMP_RET_ALLOW); // no ENOSYS stub with a permissive default
  assert.equal(run(prog, { nr: nr('mkdir') }), SECCOMP_RET_ERRNO | 1);
  assert.equal(run(prog, { nr: nr('rmdir') }), SECCOMP_RET_ERRNO | 13);
  assert.equal(run(prog, { nr: nr('kill') }), SECCOMP_RET_KILL_THREAD);
  assert.equal(run(prog, { nr: nr('tkill') }), SECCOMP_RET_KILL_THREAD);
  assert.equal(run(prog, { nr: nr('tgkill') }), SECCOMP_RET_KILL_PROCESS);
  assert.equal(run(prog, { nr: nr('ptrace') }), SECCOMP_RET_TRAP);
  assert.equal(run(prog, { nr: nr('getpid') }), SECCOMP_RET_LOG);
  assert.equal(run(prog, { nr: nr('getppid') }), SECCOMP_RET_TRACE + 7);
  assert.equal(run(prog, { nr: nr('gettid') }), SECCOMP_RET_TRACE + 1);
  const deny = compile({ defaultAction: 'SCMP_ACT_KILL_PROCESS', syscalls: [] });
  assert.equal(run(deny, { nr: 0 }), SECCOMP_RET_KILL_PROCESS);
  assert.equal(run(compile({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38 }), { nr: 0 }), ENOSYS);
});

test('SCMP_ACT_NOTIFY and bad argument indexes are rejected', () => {
  assert.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_NOTIFY' }), InvalidArgumentError);
  assert.throws(
    () =>
      compileSeccomp({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [
          { names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 0, op: 'SCMP_CMP_EQ' }] },
        ],
      }),
    InvalidArgumentError,
  );
});

test('unknown syscall names are skipped', () => {
  const prog = compile({
    defaultAction: 'SCMP_ACT_ERRNO',
    syscalls: [{ names: ['no_such_syscall', 'arm_fadvise64_64', 'read'], action: 'SCMP_ACT_ALLOW' }],
  });
  assert.equal(run(prog, { nr: nr('read') }), SECCOMP_RET_ALLOW);
});

test('MASKED_EQ compares (arg & value) with valueTwo on both words', () => {
  const prog = compile({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      {
        names: ['ioctl'],
        action: 'SCMP_ACT_ERRNO',
        args: [{ index: 1, value: 0xff00, valueTwo: 0x5400, op: 'SCMP_CMP_MASKED_EQ' }],
      },
      {
        names: ['mmap'],
        action: 'SCMP_ACT_ERRNO',
        args: [{ index: 3, value: 0x1_0000_0004, valueTwo: 0x1_0000_0000, op: 'SCMP_CMP_MASKED_EQ' }],
      },
    ],
  });
  assert.equal(run(prog, { nr: nr('ioctl'), args: [1, 0x5401] }), EPERM); // TCGETS
  assert.equal(run(prog, { nr: nr('ioctl'), args: [1, 0x5413] }), EPERM); // TIOCGWINSZ
  assert.equal(run(prog, { nr: nr('ioctl'), args: [1, 0x8901] }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('mmap'), args: [0, 0, 0, 0x1_0000_0000] }), EPERM);
  assert.equal(run(prog, { nr: nr('mmap'), args: [0, 0, 0, 0x1_0000_0004] }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('mmap'), args: [0, 0, 0, 0x0_0000_0000] }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: nr('mmap'), args: [0, 0, 0, 0x3_0000_00f0] }), EPERM);
});

test('first matching rule wins; a rule matches only if all its arguments match', () => {
  const prog = compile({
    defaultAction: 'SCMP_ACT_ERRNO',
    syscalls: [
      {
        names: ['prctl'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: 5,
        args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }],
      },
      { names: ['prctl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 10, op: 'SCMP_CMP_LE' }] },
      {
        names: ['prctl'],
        action: 'SCMP_ACT_LOG',
        args: [
          { index: 0, value: 100, op: 'SCMP_CMP_GE' },
          { index: 1, value: 7, op: 'SCMP_CMP_EQ' },
        ],
      },
      { names: ['prctl'], action: 'SCMP_ACT_TRAP' },
      { names: ['prctl'], action: 'SCMP_ACT_ALLOW' }, // unreachable
    ],
  });
  const prctl = nr('prctl');
  assert.equal(run(prog, { nr: prctl, args: [1] }), SECCOMP_RET_ERRNO | 5);
  assert.equal(run(prog, { nr: prctl, args: [0] }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: prctl, args: [10] }), SECCOMP_RET_ALLOW);
  assert.equal(run(prog, { nr: prctl, args: [100, 7] }), SECCOMP_RET_LOG);
  assert.equal(run(prog, { nr: prctl, args: [100, 8] }), SECCOMP_RET_TRAP);
  assert.equal(run(prog, { nr: prctl, args: [50, 7] }), SECCOMP_RET_TRAP);
  assert.equal(run(prog, { nr: nr('read') }), EPERM);
});

const reference = (op: OciSeccompOperator, arg: bigint, value: bigint, two: bigint): boolean => {
  switch (op) {
    case 'SCMP_CMP_EQ':
      return arg === value;
    case 'SCMP_CMP_NE':
      return arg !== value;
    case 'SCMP_CMP_LT':
      return arg < value;
    case 'SCMP_CMP_LE':
      return arg <= value;
    case 'SCMP_CMP_GT':
      return arg > value;
    case 'SCMP_CMP_GE':
      return arg >= value;
    case 'SCMP_CMP_MASKED_EQ':
      return (arg & value) === two;
  }
};

const OPS: OciSeccompOperator[] = [
  'SCMP_CMP_EQ',
  'SCMP_CMP_NE',
  'SCMP_CMP_LT',
  'SCMP_CMP_LE',
  'SCMP_CMP_GT',
  'SCMP_CMP_GE',
  'SCMP_CMP_MASKED_EQ',
];
const VALUES = [0n, 1n, 2n, 0xffn, 0x7fffffffn, 0xffffffffn, 0x1_0000_0000n, 0x1_0000_0001n, 0x2_ffff_fffen];
const ARGS = [
  ...VALUES,
  0x1_ffff_ffffn,
  0x2_0000_0000n,
  0x2_ffff_ffffn,
  0xffff_ffff_ffff_ffffn,
  0x8000_0000_0000_0000n,
];

test('64-bit comparisons agree with a BigInt reference for every operator (x86_64)', () => {
  for (const op of OPS) {
    for (const value of VALUES) {
      const two = op === 'SCMP_CMP_MASKED_EQ' ? value & 0x1_0000_00ffn : 0n;
      const prog = compile({
        defaultAction: 'SCMP_ACT_ERRNO',
        syscalls: [
          {
            names: ['read'],
            action: 'SCMP_ACT_ALLOW',
            args: [{ index: 2, value: Number(value), valueTwo: Number(two), op }],
          },
        ],
      });
      for (const arg of ARGS) {
        const want = reference(op, arg, value, two) ? SECCOMP_RET_ALLOW : EPERM;
        assert.equal(run(prog, { nr: 0, args: [0, 0, arg] }), want, `${op} arg=${arg} value=${value}`);
      }
    }
  }
});

test('32-bit comparisons on i386 look at the low word only', () => {
  for (const op of OPS) {
    for (const value of [0n, 1n, 0xffn, 0x7fffffffn, 0xffffffffn]) {
      const prog = compile({
        defaultAction: 'SCMP_ACT_ERRNO',
        architectures: ['SCMP_ARCH_X86'],
        syscalls: [
          { names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: Number(value), op }] },
        ],
      });
      for (const arg of [0n, 1n, 2n, 0xffn, 0x100n, 0x7fffffffn, 0x80000000n, 0xffffffffn]) {
        const want = reference(op, arg, value, 0n) ? SECCOMP_RET_ALLOW : EPERM;
        const got = run(prog, { arch: AUDIT_ARCH_I386, nr: 3, args: [arg | 0x5_0000_0000n] });
        assert.equal(got, want, `${op} arg=${arg} value=${value}`);
      }
    }
  }
});

test('long rule lists for one syscall and long dispatch stay within 8-bit jumps', () => {
  const rules = Array.from({ length: 200 }, (_, i) => ({
    names: ['personality'],
    action: 'SCMP_ACT_ERRNO' as const,
    errnoRet: i + 1,
    args: [{ index: 0, value: i * 3, op: 'SCMP_CMP_EQ' as const }],
  }));
  const everything = { names: Object.keys(SYSCALLS_X86_64), action: 'SCMP_ACT_LOG' as const };
  const prog = compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [...rules, everything] });
  const personality = nr('personality');
  for (const i of [0, 1, 100, 199]) {
    assert.equal(run(prog, { nr: personality, args: [i * 3] }), SECCOMP_RET_ERRNO | (i + 1));
  }
  assert.equal(run(prog, { nr: personality, args: [1] }), SECCOMP_RET_LOG);
  for (const [name, number] of Object.entries(SYSCALLS_X86_64)) {
    if (name !== 'personality') assert.equal(run(prog, { nr: number }), SECCOMP_RET_LOG, name);
  }
});

test('a rule with too many argument conditions is rejected, not miscompiled', () => {
  const args = Array.from({ length: 60 }, () => ({ index: 0, value: 1, op: 'SCMP_CMP_MASKED_EQ' as const }));
  assert.throws(
    () =>
      compileSeccomp({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args }],
      }),
    InvalidArgumentError,
  );
});

test('the x32 table matches the kernel numbering', () => {
  assert.equal(SYSCALLS_X32.read, 0);
  assert.equal(SYSCALLS_X32.rt_sigaction, 512);
  assert.equal(SYSCALLS_X32.pwritev2, 547);
  assert.equal(SYSCALLS_X32.mseal, 462);
  assert.equal(SYSCALLS_X32.set_thread_area, undefined);
  assert.equal(SYSCALLS_X86_64.rt_sigaction, 13);
  assert.equal(SYSCALLS_X86_64.clone3, 435);
  assert.equal(SYSCALLS_I386.clone3, 435);
  assert.equal(SYSCALLS_I386.socketcall, 102);
});
