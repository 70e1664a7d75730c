import { invalidAll } from '../errors.js';
import type { OciSeccomp, OciSeccompAction, OciSeccompOperator, OciSeccompRule } from '../oci.js';
import { normalizeCapabilityName } from './capabilities.js';

/** Conditions of a docker profile rule: host arch (GOARCH names), granted capabilities, kernel version. */
export interface DockerSeccompFilter {
  arches?: string[];
  caps?: string[];
  minKernel?: string;
}

/** One syscall rule of a docker-format seccomp profile, after validation (`name` folded into `names`). */
export interface DockerSeccompRule extends OciSeccompRule {
  comment?: string;
  includes?: DockerSeccompFilter;
  excludes?: DockerSeccompFilter;
}

/** A docker-format seccomp profile (moby's profiles/seccomp types), after validation. */
export interface DockerSeccompProfile {
  defaultAction: OciSeccompAction;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: { architecture: string; subArchitectures?: string[] }[];
  flags?: string[];
  syscalls: DockerSeccompRule[];
}

export interface SeccompResolveOptions {
  /** Host kernel "major.minor" for minKernel conditions; when absent the kernel counts as new enough. */
  kernelVersion?: string;
}

export const SECCOMP_ACTIONS: readonly OciSeccompAction[] = [
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
  'SCMP_ACT_NOTIFY',
];

export const SECCOMP_OPERATORS: readonly OciSeccompOperator[] = [
  'SCMP_CMP_NE',
  'SCMP_CMP_LT',
  'SCMP_CMP_LE',
  'SCMP_CMP_EQ',
  'SCMP_CMP_GE',
  'SCMP_CMP_GT',
  'SCMP_CMP_MASKED_EQ',
];

/** libseccomp's architecture names. */
export const SECCOMP_ARCHES: readonly string[] = [
  'SCMP_ARCH_X86',
  'SCMP_ARCH_X86_64',
  'SCMP_ARCH_X32',
  'SCMP_ARCH_ARM',
  'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_LOONGARCH64',
  'SCMP_ARCH_M68K',
  'SCMP_ARCH_MIPS',
  'SCMP_ARCH_MIPS64',
  'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32',
  'SCMP_ARCH_PPC',
  'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE',
  'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X',
  'SCMP_ARCH_PARISC',
  'SCMP_ARCH_PARISC64',
  'SCMP_ARCH_RISCV64',
  'SCMP_ARCH_SH',
  'SCMP_ARCH_SHEB',
];

/** Seccomp filter flags runc understands. */
export const SECCOMP_FLAGS: readonly string[] = [
  'SECCOMP_FILTER_FLAG_TSYNC',
  'SECCOMP_FILTER_FLAG_LOG',
  'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
  'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV',
];

/** The host architecture as moby names it (GOARCH) and as libseccomp names it; abode runs on x86_64. */
const HOST_GOARCH = 'amd64';
const HOST_SCMP_ARCH = 'SCMP_ARCH_X86_64';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

/** Validates a docker-format profile (parsed JSON), collecting every problem with its location. */
function validateProfile(raw: unknown, problems: string[]): DockerSeccompProfile {
  const p = (where: string, what: string) => problems.push(`seccomp profile: ${where}: ${what}`);
  const out: DockerSeccompProfile = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [] };
  if (!isObject(raw)) {
    problems.push('seccomp profile: must be a JSON object');
    return out;
  }

  const action = (where: string, v: unknown): OciSeccompAction | undefined => {
    if (typeof v === 'string' && (SECCOMP_ACTIONS as readonly string[]).includes(v))
      return v as OciSeccompAction;
    p(where, `unknown action ${show(v)} (one of ${SECCOMP_ACTIONS.join(', ')})`);
    return undefined;
  };
  const uint = (where: string, v: unknown, max: number): number | undefined => {
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max) return v;
    p(where, `must be an integer from 0 to ${max}, got ${show(v)}`);
    return undefined;
  };
  const strings = (where: string, v: unknown): string[] | undefined => {
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
    p(where, `must be an array of strings, got ${show(v)}`);
    return undefined;
  };
  const arches = (where: string, v: unknown): string[] | undefined => {
    const list = strings(where, v);
    list?.forEach((a, i) => {
      if (!SECCOMP_ARCHES.includes(a)) p(`${where}[${i}]`, `unknown architecture ${show(a)}`);
    });
    return list;
  };
  const filter = (where: string, v: unknown): DockerSeccompFilter | undefined => {
    if (v === undefined || v === null) return undefined;
    if (!isObject(v)) {
      p(where, 'must be an object');
      return undefined;
    }
    const f: DockerSeccompFilter = {};
    if (v.arches !== undefined && v.arches !== null) f.arches = strings(`${where}.arches`, v.arches);
    if (v.caps !== undefined && v.caps !== null) f.caps = strings(`${where}.caps`, v.caps);
    if (v.minKernel !== undefined && v.minKernel !== null && v.minKernel !== '') {
      if (typeof v.minKernel === 'string' && parseKernel(v.minKernel)) f.minKernel = v.minKernel;
      else p(`${where}.minKernel`, `must be a kernel version like "4.8", got ${show(v.minKernel)}`);
    }
    return f;
  };

  if (raw.defaultAction === undefined) p('defaultAction', 'is required');
  else out.defaultAction = action('defaultAction', raw.defaultAction) ?? out.defaultAction;
  if (raw.defaultErrnoRet !== undefined && raw.defaultErrnoRet !== null) {
    out.defaultErrnoRet = uint('defaultErrnoRet', raw.defaultErrnoRet, 0xffff);
  }
  const hasArches = Array.isArray(raw.architectures) && raw.architectures.length > 0;
  const hasArchMap = Array.isArray(raw.archMap) && raw.archMap.length > 0;
  if (hasArches && hasArchMap) {
    p('architectures', "both 'architectures' and 'archMap' are given; use one of them");
  }
  if (raw.architectures !== undefined && raw.architectures !== null) {
    out.architectures = arches('architectures', raw.architectures);
  }
  if (raw.archMap !== undefined && raw.archMap !== null) {
    if (!Array.isArray(raw.archMap)) p('archMap', 'must be an array');
    else {
      out.archMap = [];
      raw.archMap.forEach((m: unknown, i) => {
        const where = `archMap[${i}]`;
        if (!isObject(m)) return p(where, 'must be an object');
        if (typeof m.architecture !== 'string' || !SECCOMP_ARCHES.includes(m.architecture)) {
          return p(`${where}.architecture`, `unknown architecture ${show(m.architecture)}`);
        }
        const sub =
          m.subArchitectures === undefined || m.subArchitectures === null
            ? []
            : arches(`${where}.subArchitectures`, m.subArchitectures);
        out.archMap?.push({ architecture: m.architecture, subArchitectures: sub ?? [] });
      });
    }
  }
  if (raw.flags !== undefined && raw.flags !== null) {
    out.flags = strings('flags', raw.flags);
    out.flags?.forEach((f, i) => {
      if (!SECCOMP_FLAGS.includes(f)) p(`flags[${i}]`, `unknown flag ${show(f)}`);
    });
  }

  if (raw.syscalls !== undefined && raw.syscalls !== null && !Array.isArray(raw.syscalls)) {
    p('syscalls', 'must be an array');
  } else if (Array.isArray(raw.syscalls)) {
    raw.syscalls.forEach((s: unknown, i) => {
      const where = `syscalls[${i}]`;
      if (!isObject(s)) return p(where, 'must be an object');
      const hasName = typeof s.name === 'string' && s.name !== '';
      const hasNames = Array.isArray(s.names) && s.names.length > 0;
      let names: string[] | undefined;
      if (hasName && hasNames) p(where, "use either 'name' or 'names', not both");
      else if (hasName) names = [s.name as string];
      else if (s.name !== undefined && s.name !== null && s.name !== '')
        p(`${where}.name`, 'must be a string');
      else if (s.names === undefined || s.names === null) p(where, "has no 'names'");
      else {
        names = strings(`${where}.names`, s.names);
        if (names?.length === 0) p(`${where}.names`, 'is empty');
      }
      let act: OciSeccompAction | undefined;
      if (s.action === undefined) p(`${where}.action`, 'is required');
      else act = action(`${where}.action`, s.action);
      const rule: DockerSeccompRule = { names: names ?? [], action: act ?? 'SCMP_ACT_ERRNO' };
      if (s.errnoRet !== undefined && s.errnoRet !== null) {
        rule.errnoRet = uint(`${where}.errnoRet`, s.errnoRet, 0xffff);
      }
      if (s.args !== undefined && s.args !== null) {
        if (!Array.isArray(s.args)) p(`${where}.args`, 'must be an array');
        else {
          rule.args = [];
          s.args.forEach((a: unknown, j) => {
            const aw = `${where}.args[${j}]`;
            if (!isObject(a)) return p(aw, 'must be an object');
            const index = uint(`${aw}.index`, a.index, 5);
            const value = uint(`${aw}.value`, a.value ?? 0, Number.MAX_SAFE_INTEGER);
            const valueTwo = uint(`${aw}.valueTwo`, a.valueTwo ?? 0, Number.MAX_SAFE_INTEGER);
            const op = a.op;
            if (typeof op !== 'string' || !(SECCOMP_OPERATORS as readonly string[]).includes(op)) {
              return p(`${aw}.op`, `unknown operator ${show(op)} (one of ${SECCOMP_OPERATORS.join(', ')})`);
            }
            if (index === undefined || value === undefined || valueTwo === undefined) return;
            const arg: NonNullable<OciSeccompRule['args']>[number] = {
              index,
              value,
              op: op as OciSeccompOperator,
            };
            if (valueTwo !== 0) arg.valueTwo = valueTwo;
            rule.args?.push(arg);
          });
        }
      }
      if (typeof s.comment === 'string') rule.comment = s.comment;
      const inc = filter(`${where}.includes`, s.includes);
      const exc = filter(`${where}.excludes`, s.excludes);
      if (inc) rule.includes = inc;
      if (exc) rule.excludes = exc;
      out.syscalls.push(rule);
    });
  }
  return out;
}

/** Parses "major.minor[.patch...]" into [major, minor], or undefined. */
function parseKernel(v: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** True if the host kernel is at least `min` (assumed true when the host version is unknown). */
function kernelAtLeast(min: string, host: string | undefined): boolean {
  const want = parseKernel(min);
  const have = host === undefined ? undefined : parseKernel(host);
  if (!want || !have) return true;
  return have[0] > want[0] || (have[0] === want[0] && have[1] >= want[1]);
}

/** Applies moby's includes/excludes (host arch amd64, capabilities, minKernel) and archMap for x86_64, giving OCI form. */
export function resolveDockerProfile(
  profile: DockerSeccompProfile,
  capabilities: readonly string[],
  options: SeccompResolveOptions = {},
): OciSeccomp {
  const caps = new Set(capabilities.map(normalizeCapabilityName));
  const hasCap = (c: string) => caps.has(normalizeCapabilityName(c));
  const out: OciSeccomp = { defaultAction: profile.defaultAction };
  if (profile.defaultErrnoRet !== undefined) out.defaultErrnoRet = profile.defaultErrnoRet;

  const arches: string[] = [...(profile.architectures ?? [])];
  for (const m of profile.archMap ?? []) {
    if (m.architecture === HOST_SCMP_ARCH) arches.push(m.architecture, ...(m.subArchitectures ?? []));
  }
  if (arches.length > 0) out.architectures = [...new Set(arches)];
  if (profile.flags && profile.flags.length > 0) out.flags = [...profile.flags];

  const syscalls: OciSeccompRule[] = [];
  for (const rule of profile.syscalls) {
    const exc = rule.excludes;
    if (exc) {
      if (exc.arches && exc.arches.includes(HOST_GOARCH)) continue;
      if (exc.caps && exc.caps.some(hasCap)) continue;
      if (exc.minKernel && kernelAtLeast(exc.minKernel, options.kernelVersion)) continue;
    }
    const inc = rule.includes;
    if (inc) {
      if (inc.arches && inc.arches.length > 0 && !inc.arches.includes(HOST_GOARCH)) continue;
      if (inc.caps && !inc.caps.every(hasCap)) continue;
      if (inc.minKernel && !kernelAtLeast(inc.minKernel, options.kernelVersion)) continue;
    }
    const r: OciSeccompRule = { names: [...rule.names], action: rule.action };
    if (rule.errnoRet !== undefined) r.errnoRet = rule.errnoRet;
    if (rule.args && rule.args.length > 0) r.args = rule.args.map((a) => ({ ...a }));
    syscalls.push(r);
  }
  out.syscalls = syscalls;
  return out;
}

/** Validates parsed JSON as a docker-format profile; throws one InvalidArgumentError listing every problem. */
export function validateDockerProfile(raw: unknown): DockerSeccompProfile {
  const problems: string[] = [];
  const profile = validateProfile(raw, problems);
  if (problems.length > 0) throw invalidAll(problems);
  return profile;
}

/** Parses a docker-format profile (--security-opt seccomp=FILE) for x86_64 and the caps; throws InvalidArgumentError. */
export function parseSeccompProfile(
  json: string,
  capabilities: readonly string[],
  options: SeccompResolveOptions = {},
): OciSeccomp {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw invalidAll([`seccomp profile: not valid JSON: ${(err as Error).message}`]);
  }
  return resolveDockerProfile(validateDockerProfile(raw), capabilities, options);
}
