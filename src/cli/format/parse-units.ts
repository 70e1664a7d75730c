/** Parsers for docker's size and CPU flags, kept apart from the formatters so `run` loads little. */

const decimalMul: Record<string, number> = { k: 1e3, m: 1e6, g: 1e9, t: 1e12, p: 1e15 };
const binaryMul: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

function parseSize(str: string, muls: Record<string, number>): number {
  const invalid = (): never => {
    throw new Error(`invalid size: '${str}'`);
  };
  let sep = -1;
  for (let i = str.length - 1; i >= 0; i--) {
    if ('0123456789. '.includes(str[i]!)) {
      sep = i;
      break;
    }
  }
  if (sep < 0) return invalid();
  const numText = str[sep] === ' ' ? str.slice(0, sep) : str.slice(0, sep + 1);
  const sfx = str.slice(sep + 1).toLowerCase();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(numText)) {
    throw new Error(`strconv.ParseFloat: parsing "${numText}": invalid syntax`);
  }
  let size = Number(numText);
  if (size < 0) return invalid();
  if (sfx === '' || sfx === 'b') return Math.trunc(size);
  const mul = muls[sfx[0]!];
  if (
    mul === undefined ||
    sfx.length > 3 ||
    (sfx.length === 2 && sfx[1] !== 'b') ||
    (sfx.length === 3 && sfx.slice(1) !== 'ib')
  ) {
    return invalid();
  }
  size *= mul;
  return Math.trunc(size);
}

/** Parses a memory size as docker's RAMInBytes: "512m" → 536870912; units b k m g t p (×1024), optional b/ib, any case. */
export function parseBytes(str: string): number {
  return parseSize(str, binaryMul);
}

/** Parses a size in decimal units as go-units FromHumanSize: "44kB" → 44000. */
export function fromHumanSize(str: string): number {
  return parseSize(str, decimalMul);
}

/** Parses a --cpus value into nano CPUs as docker's ParseCPUs: "1.5" → 1500000000, "1/2" → 500000000. */
export function parseCpus(value: string): number {
  const fail = (): never => {
    throw new Error(`failed to parse ${value} as a rational number`);
  };
  let num: bigint;
  let den: bigint;
  const frac = /^([+-]?)(\d+)\/(\d+)$/.exec(value);
  if (frac) {
    num = BigInt(frac[2]!) * (frac[1] === '-' ? -1n : 1n);
    den = BigInt(frac[3]!);
    if (den === 0n) return fail();
  } else {
    const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(value);
    if (!m || (m[2] === '' && (m[3] ?? '') === '')) return fail();
    const fracDigits = m[3] ?? '';
    const exp = Number(m[4] ?? '0') - fracDigits.length;
    num = BigInt((m[2] || '0') + fracDigits) * (m[1] === '-' ? -1n : 1n);
    den = 1n;
    if (exp >= 0) num *= 10n ** BigInt(exp);
    else den = 10n ** BigInt(-exp);
  }
  const nano = num * 1_000_000_000n;
  if (nano % den !== 0n) throw new Error('value is too precise');
  return Number(nano / den);
}
