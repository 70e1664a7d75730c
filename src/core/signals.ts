import { InvalidArgumentError } from './errors.js';

/** Linux signal numbers on x86_64 by name (without SIG). */
export const SIGNALS: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  PWR: 30,
  SYS: 31,
};

/** Accepts docker's forms: "KILL", "SIGKILL", "9", 9, and "RTMIN+3". */
export function signalNumber(signal: string | number): number {
  if (typeof signal === 'number') return checkRange(signal, String(signal));
  const text = signal.trim().toUpperCase();
  if (/^\d+$/.test(text)) return checkRange(Number(text), signal);
  const name = text.startsWith('SIG') ? text.slice(3) : text;
  if (name in SIGNALS) return SIGNALS[name];
  const rt = /^RTMIN(?:\+(\d+))?$/.exec(name);
  if (rt) return checkRange(34 + Number(rt[1] ?? 0), signal);
  throw new InvalidArgumentError(`invalid signal: ${signal}`);
}

function checkRange(number: number, original: string): number {
  if (number < 1 || number > 64) throw new InvalidArgumentError(`invalid signal: ${original}`);
  return number;
}
