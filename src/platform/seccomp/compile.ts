/**
 * Compiles an OCI seccomp profile into a classic BPF program for seccomp(SECCOMP_SET_MODE_FILTER), the way
 * libseccomp and runc do for an x86_64 host:
 * - the native arch (x86_64) is always filtered; SCMP_ARCH_X86 (i386) and SCMP_ARCH_X32 are filtered when listed,
 *   other architectures are ignored; any other audit arch, and x32 calls when x32 isn't listed, hit KILL_PROCESS;
 * - per syscall the rules apply in profile order, the first matching rule wins, a rule with several argument
 *   conditions matches when all match; names the syscall table doesn't know are skipped;
 * - argument values are compared as 64-bit on x86_64 and as 32-bit (low word) on i386 and x32, like libseccomp;
 * - like runc, when the default action isn't ALLOW or LOG, syscalls numbered above the highest one the profile
 *   names fail with ENOSYS, so libc falls back from syscalls newer than the profile instead of failing hard;
 * - the filter flags (TSYNC, LOG, ...) are for whoever installs the program and are not part of it.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import type { OciSeccomp, OciSeccompAction, OciSeccompRule } from '../../core/oci.js';
import { SYSCALLS_I386, SYSCALLS_X32, SYSCALLS_X86_64, X32_SYSCALL_BIT } from './syscalls-x86_64.js';

export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const AUDIT_ARCH_I386 = 0x40000003;

export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_KILL_THREAD = 0x00000000;
export const SECCOMP_RET_TRAP = 0x00030000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_TRACE = 0x7ff00000;
export const SECCOMP_RET_LOG = 0x7ffc0000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;

/** Classic BPF opcodes this compiler emits. */
export const BPF_LD_W_ABS = 0x20;
export const BPF_ALU_AND_K = 0x54;
export const BPF_JMP_JA = 0x05;
export const BPF_JMP_JEQ_K = 0x15;
export const BPF_JMP_JGT_K = 0x25;
export const BPF_JMP_JGE_K = 0x35;
export const BPF_RET_K = 0x06;

/** The kernel's limit on filter length (BPF_MAXINSNS). */
export const BPF_MAXINSNS = 4096;

/** Offsets in struct seccomp_data. */
const OFF_NR = 0;
const OFF_ARCH = 4;
const offArgLo = (i: number) => 16 + 8 * i;
const offArgHi = (i: number) => 20 + 8 * i;

const EPERM = 1;
const ENOSYS = 38;
const NR_NONE = 0xffffffff;

/** Returns the SECCOMP_RET_* value of an action; errnoRet is the data for ERRNO and TRACE (EPERM if absent). */
export function seccompReturnValue(action: OciSeccompAction, errnoRet?: number): number {
  const data = (errnoRet ?? EPERM) & 0xffff;
  switch (action) {
    case 'SCMP_ACT_ALLOW':
      return SECCOMP_RET_ALLOW;
    case 'SCMP_ACT_ERRNO':
      return (SECCOMP_RET_ERRNO | data) >>> 0;
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return SECCOMP_RET_KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return SECCOMP_RET_KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return SECCOMP_RET_TRAP;
    case 'SCMP_ACT_TRACE':
      return (SECCOMP_RET_TRACE | data) >>> 0;
    case 'SCMP_ACT_LOG':
      return SECCOMP_RET_LOG;
    case 'SCMP_ACT_NOTIFY':
      throw new InvalidArgumentError('seccomp action SCMP_ACT_NOTIFY is not supported');
    default:
      throw new InvalidArgumentError(`unknown seccomp action ${JSON.stringify(action)}`);
  }
}

type Target = number | string; // a relative offset, or a label resolved at assembly

interface Insn {
  code: number;
  k: number;
  jt: Target;
  jf: Target;
  /** For JA: the label k jumps to. */
  ka?: string;
}

/** A forward-only assembler with labels; conditional jumps must stay within 255 instructions. */
class Assembler {
  readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();
  private next = 0;

  fresh(prefix: string): string {
    return `${prefix}#${this.next++}`;
  }
  label(name: string): void {
    this.labels.set(name, this.insns.length);
  }
  ld(offset: number): void {
    this.insns.push({ code: BPF_LD_W_ABS, k: offset, jt: 0, jf: 0 });
  }
  and(k: number): void {
    this.insns.push({ code: BPF_ALU_AND_K, k: k >>> 0, jt: 0, jf: 0 });
  }
  jmp(code: number, k: number, jt: Target, jf: Target): void {
    this.insns.push({ code, k: k >>> 0, jt, jf });
  }
  ja(label: string): void {
    this.insns.push({ code: BPF_JMP_JA, k: 0, jt: 0, jf: 0, ka: label });
  }
  ret(k: number): void {
    this.insns.push({ code: BPF_RET_K, k: k >>> 0, jt: 0, jf: 0 });
  }

  /** Resolves labels and encodes struct sock_filter entries, little-endian. */
  assemble(): Buffer {
    const at = (label: string, i: number): number => {
      const pos = this.labels.get(label);
      if (pos === undefined) throw new Error(`seccomp compiler: undefined label ${label}`);
      const off = pos - (i + 1);
      if (off < 0) throw new Error(`seccomp compiler: backward jump to ${label}`);
      return off;
    };
    const buf = Buffer.alloc(this.insns.length * 8);
    this.insns.forEach((insn, i) => {
      const jt = typeof insn.jt === 'string' ? at(insn.jt, i) : insn.jt;
      const jf = typeof insn.jf === 'string' ? at(insn.jf, i) : insn.jf;
      if (jt > 255 || jf > 255) {
        throw new InvalidArgumentError('seccomp profile too large: a rule has too many argument conditions');
      }
      const k = insn.ka !== undefined ? at(insn.ka, i) : insn.k;
      buf.writeUInt16LE(insn.code, i * 8);
      buf.writeUInt8(jt, i * 8 + 2);
      buf.writeUInt8(jf, i * 8 + 3);
      buf.writeUInt32LE(k >>> 0, i * 8 + 4);
    });
    return buf;
  }
}

/** Splits an integer into the 32-bit words of its 64-bit two's complement. */
function words(value: number): { hi: number; lo: number } {
  if (!Number.isInteger(value))
    throw new InvalidArgumentError(`seccomp argument value ${value} is not an integer`);
  const v = BigInt.asUintN(64, BigInt(value));
  return { hi: Number(v >> 32n), lo: Number(v & 0xffffffffn) };
}

type Arg = NonNullable<OciSeccompRule['args']>[number];

/** Emits one argument condition: falls through when it holds, jumps to `fail` when it doesn't. */
function emitArg(asm: Assembler, arg: Arg, fail: string, wide: boolean): void {
  if (!Number.isInteger(arg.index) || arg.index < 0 || arg.index > 5) {
    throw new InvalidArgumentError(`seccomp argument index ${arg.index} is out of range 0-5`);
  }
  const ok = asm.fresh('ok');
  const v = words(arg.value);
  const two = words(arg.valueTwo ?? 0);
  if (arg.op === 'SCMP_CMP_MASKED_EQ') {
    if (wide) {
      asm.ld(offArgHi(arg.index));
      asm.and(v.hi);
      asm.jmp(BPF_JMP_JEQ_K, two.hi, 0, fail);
    }
    asm.ld(offArgLo(arg.index));
    asm.and(v.lo);
    asm.jmp(BPF_JMP_JEQ_K, two.lo, ok, fail);
    asm.label(ok);
    return;
  }
  // Each operator is a test (EQ for EQ/NE, GT for GT/LE, GE for GE/LT), negated for NE, LE and LT. The high
  // word decides unless it's equal to the value's; then the low word decides (all comparisons unsigned).
  const negated = arg.op === 'SCMP_CMP_NE' || arg.op === 'SCMP_CMP_LT' || arg.op === 'SCMP_CMP_LE';
  const [onTrue, onFalse] = negated ? [fail, ok] : [ok, fail];
  if (wide) {
    asm.ld(offArgHi(arg.index));
    switch (arg.op) {
      case 'SCMP_CMP_EQ':
      case 'SCMP_CMP_NE':
        asm.jmp(BPF_JMP_JEQ_K, v.hi, 0, onFalse); // hi differs: EQ fails, NE holds
        break;
      case 'SCMP_CMP_GT':
      case 'SCMP_CMP_GE':
      case 'SCMP_CMP_LT':
      case 'SCMP_CMP_LE':
        asm.jmp(BPF_JMP_JGT_K, v.hi, onTrue, 0); // hi greater: GT/GE hold, LT/LE fail
        asm.jmp(BPF_JMP_JEQ_K, v.hi, 0, onFalse); // hi smaller: GT/GE fail, LT/LE hold
        break;
      default:
        throw new InvalidArgumentError(`unknown seccomp operator ${JSON.stringify(arg.op)}`);
    }
  }
  asm.ld(offArgLo(arg.index));
  switch (arg.op) {
    case 'SCMP_CMP_EQ':
    case 'SCMP_CMP_NE':
      asm.jmp(BPF_JMP_JEQ_K, v.lo, onTrue, onFalse);
      break;
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_LE': // LE is "not GT"
      asm.jmp(BPF_JMP_JGT_K, v.lo, onTrue, onFalse);
      break;
    case 'SCMP_CMP_GE':
    case 'SCMP_CMP_LT': // LT is "not GE"
      asm.jmp(BPF_JMP_JGE_K, v.lo, onTrue, onFalse);
      break;
    default:
      throw new InvalidArgumentError(`unknown seccomp operator ${JSON.stringify(arg.op)}`);
  }
  asm.label(ok);
}

interface CompiledRule {
  ret: number;
  args: Arg[];
}

interface ArchPlan {
  /** Syscall number → its rules in profile order (cut after the first unconditional rule). */
  rules: Map<number, CompiledRule[]>;
  /** Argument width: 64-bit compares on x86_64, 32-bit on i386 and x32. */
  wide: boolean;
}

function planArch(
  profile: OciSeccomp,
  table: Readonly<Record<string, number>>,
  nrBase: number,
  wide: boolean,
): ArchPlan {
  const rules = new Map<number, CompiledRule[]>();
  for (const rule of profile.syscalls ?? []) {
    const ret = seccompReturnValue(rule.action, rule.errnoRet);
    const args = rule.args ?? [];
    for (const name of rule.names) {
      if (!Object.hasOwn(table, name)) continue;
      const nr = (nrBase + table[name]) >>> 0;
      const list = rules.get(nr) ?? [];
      // Once a syscall has an unconditional rule, later rules for it can never match.
      if (list.some((r) => r.args.length === 0)) continue;
      list.push({ ret, args });
      rules.set(nr, list);
    }
  }
  return { rules, wide };
}

/** Emits the rules of one syscall: each rule checks its arguments and returns its action; else the default. */
function emitSyscallBlock(asm: Assembler, rules: CompiledRule[], defaultRet: number, wide: boolean): void {
  for (const rule of rules) {
    if (rule.args.length === 0) {
      asm.ret(rule.ret);
      return;
    }
    const next = asm.fresh('rule');
    for (const arg of rule.args) emitArg(asm, arg, next, wide);
    asm.ret(rule.ret);
    asm.label(next);
  }
  asm.ret(defaultRet);
}

/** The number of instructions emitSyscallBlock emits for these rules. */
function blockSize(rules: CompiledRule[], wide: boolean): number {
  let size = 0;
  for (const rule of rules) {
    for (const arg of rule.args) {
      if (arg.op === 'SCMP_CMP_MASKED_EQ') size += wide ? 6 : 3;
      else if (arg.op === 'SCMP_CMP_EQ' || arg.op === 'SCMP_CMP_NE') size += wide ? 4 : 2;
      else size += wide ? 5 : 2;
    }
    size += 1;
    if (rule.args.length === 0) return size;
  }
  return size + 1;
}

/** A run of syscall numbers from `start` up to the next segment's start, with one outcome. */
interface Segment {
  start: number;
  /** The action of every number in the run, or else the rules of the run's single syscall. */
  ret?: number;
  rules?: CompiledRule[];
}

/** Splits numbers from `lo` up into runs of equal outcome: named syscalls, gaps (default), and above all (ENOSYS stub). */
function segmentsOf(plan: ArchPlan, lo: number, defaultRet: number, enosysStub: boolean): Segment[] {
  const segs: Segment[] = [];
  const push = (seg: Segment) => {
    const last = segs.at(-1);
    if (!(last && last.ret !== undefined && last.ret === seg.ret)) segs.push(seg);
  };
  let cursor = lo;
  for (const nr of [...plan.rules.keys()].sort((a, b) => a - b)) {
    if (nr > cursor) push({ start: cursor, ret: defaultRet });
    const rules = plan.rules.get(nr) ?? [];
    const ret = rules[0].ret;
    const same = rules.every((r) => r.ret === ret);
    // A syscall whose rules all end the same way, unconditionally or like the default, needs no argument checks.
    if (same && (ret === defaultRet || rules.some((r) => r.args.length === 0))) push({ start: nr, ret });
    else push({ start: nr, rules });
    cursor = nr + 1;
  }
  const stub = enosysStub && plan.rules.size > 0;
  push({ start: cursor, ret: stub ? (SECCOMP_RET_ERRNO | ENOSYS) >>> 0 : defaultRet });
  return segs;
}

/** The number of instructions emitSearch emits for these segments. */
function searchSize(segs: Segment[], wide: boolean): number {
  if (segs.length === 1) return segs[0].rules ? blockSize(segs[0].rules, wide) : 1;
  const mid = segs.length >> 1;
  const left = searchSize(segs.slice(0, mid), wide);
  return (left <= 255 ? 1 : 2) + left + searchSize(segs.slice(mid), wide);
}

/** Emits a binary search over the segments (A holds nr) ending in each segment's action or rules. */
function emitSearch(asm: Assembler, segs: Segment[], defaultRet: number, wide: boolean): void {
  if (segs.length === 1) {
    const seg = segs[0];
    if (seg.rules) emitSyscallBlock(asm, seg.rules, defaultRet, wide);
    else asm.ret(seg.ret ?? defaultRet);
    return;
  }
  const mid = segs.length >> 1;
  const left = segs.slice(0, mid);
  const right = segs.slice(mid);
  const upper = asm.fresh('upper');
  if (searchSize(left, wide) <= 255) {
    asm.jmp(BPF_JMP_JGE_K, right[0].start, upper, 0);
  } else {
    asm.jmp(BPF_JMP_JGE_K, right[0].start, 0, 1);
    asm.ja(upper);
  }
  emitSearch(asm, left, defaultRet, wide);
  asm.label(upper);
  emitSearch(asm, right, defaultRet, wide);
}

/** Emits one arch's body (A holds nr, known to be at least `lo`). */
function emitArchBody(
  asm: Assembler,
  plan: ArchPlan,
  lo: number,
  defaultRet: number,
  enosysStub: boolean,
): void {
  emitSearch(asm, segmentsOf(plan, lo, defaultRet, enosysStub), defaultRet, plan.wide);
}

export interface CompileOptions {
  /** Return ENOSYS for syscalls newer than the profile's newest (as runc does); default true. */
  enosysStub?: boolean;
}

/** Compiles an OCI seccomp profile into a BPF program (8-byte little-endian sock_filter entries) for x86_64. */
export function compileSeccomp(profile: OciSeccomp, options: CompileOptions = {}): Buffer {
  const defaultRet = seccompReturnValue(profile.defaultAction, profile.defaultErrnoRet);
  const permissive = profile.defaultAction === 'SCMP_ACT_ALLOW' || profile.defaultAction === 'SCMP_ACT_LOG';
  const enosysStub = (options.enosysStub ?? true) && !permissive;
  const arches = new Set(profile.architectures ?? []);
  const x64 = planArch(profile, SYSCALLS_X86_64, 0, true);
  const x32 = arches.has('SCMP_ARCH_X32')
    ? planArch(profile, SYSCALLS_X32, X32_SYSCALL_BIT, false)
    : undefined;
  const i386 = arches.has('SCMP_ARCH_X86') ? planArch(profile, SYSCALLS_I386, 0, false) : undefined;

  const asm = new Assembler();
  asm.ld(OFF_ARCH);
  asm.jmp(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 0, 1);
  asm.ja('x86_64');
  if (i386) {
    asm.jmp(BPF_JMP_JEQ_K, AUDIT_ARCH_I386, 0, 1);
    asm.ja('i386');
  }
  asm.ret(SECCOMP_RET_KILL_PROCESS);

  asm.label('x86_64');
  asm.ld(OFF_NR);
  asm.jmp(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1);
  asm.ja('x86_64-high');
  emitArchBody(asm, x64, 0, defaultRet, enosysStub);

  // Numbers with the x32 bit: nr -1 (no syscall, e.g. skipped by a tracer) gets the default action.
  asm.label('x86_64-high');
  asm.jmp(BPF_JMP_JEQ_K, NR_NONE, 0, 1);
  asm.ret(defaultRet);
  if (x32) emitArchBody(asm, x32, X32_SYSCALL_BIT, defaultRet, enosysStub);
  else asm.ret(SECCOMP_RET_KILL_PROCESS);

  if (i386) {
    asm.label('i386');
    asm.ld(OFF_NR);
    emitArchBody(asm, i386, 0, defaultRet, enosysStub);
  }

  const program = asm.assemble();
  if (program.length / 8 > BPF_MAXINSNS) {
    throw new InvalidArgumentError(
      `seccomp profile too large: ${program.length / 8} BPF instructions (the kernel allows ${BPF_MAXINSNS})`,
    );
  }
  return program;
}
