// Docker's human-readable units (github.com/docker/go-units) and the flag parsers built on them.
import { formatFloat } from './gofmt.js';

/** Says how long a duration in milliseconds is, as go-units HumanDuration: "Less than a second" … "2 years". */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(Math.trunc(ms / 3_600_000) / 24 / 365)} years`;
}

/** A moment: a Date, epoch milliseconds, or an ISO string; null/undefined and Go's zero time (year 1) mean unset. */
export type Moment = Date | number | string | null | undefined;

function toMs(t: Moment): number | null {
  if (t === null || t === undefined || t === '') return null;
  const ms = t instanceof Date ? t.getTime() : typeof t === 'number' ? t : Date.parse(t);
  if (Number.isNaN(ms) || new Date(ms).getUTCFullYear() <= 1) return null;
  return ms;
}

/** Says how long ago a moment was, as docker ps's CREATED column: "3 minutes ago". */
export function createdAgo(date: Moment, now: Moment = Date.now()): string {
  return `${humanDuration((toMs(now) ?? Date.now()) - (toMs(date) ?? 0))} ago`;
}

/** A container's state, as statusString needs it. */
export interface ContainerStatusInput {
  status: 'created' | 'running' | 'paused' | 'restarting' | 'exited' | 'dead' | 'removing' | string;
  exitCode?: number | null;
  startedAt?: Moment;
  finishedAt?: Moment;
  /** Health check status, if the container has one: starting, healthy, unhealthy. */
  health?: string | null;
  now?: Moment;
}

/** Returns docker ps's STATUS text (the daemon's State.String()): "Up 5 seconds", "Exited (0) 2 minutes ago", ... */
export function statusString(s: ContainerStatusInput): string {
  const now = toMs(s.now) ?? Date.now();
  const since = (t: Moment): string => humanDuration(now - (toMs(t) ?? 0));
  const code = s.exitCode ?? 0;
  switch (s.status) {
    case 'paused':
      return `Up ${since(s.startedAt)} (Paused)`;
    case 'restarting':
      return `Restarting (${code}) ${since(s.finishedAt)} ago`;
    case 'running': {
      const up = `Up ${since(s.startedAt)}`;
      if (!s.health || s.health === 'none') return up;
      return `${up} (${s.health === 'starting' ? 'health: starting' : s.health})`;
    }
    case 'removing':
      return 'Removal In Progress';
    case 'dead':
      return 'Dead';
  }
  if (toMs(s.startedAt) === null) return 'Created';
  if (toMs(s.finishedAt) === null) return '';
  return `Exited (${code}) ${since(s.finishedAt)} ago`;
}

const decimalAbbrs = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
const binaryAbbrs = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB', 'ZiB', 'YiB'];

function sizeAndUnit(size: number, base: number, units: string[]): [number, string] {
  let i = 0;
  while (size >= base && i < units.length - 1) {
    size /= base;
    i++;
  }
  return [size, units[i]!];
}

/** Formats bytes in decimal units with `precision` significant digits, as go-units HumanSizeWithPrecision. */
export function humanSizeWithPrecision(bytes: number, precision: number): string {
  const [size, unit] = sizeAndUnit(bytes, 1000, decimalAbbrs);
  return formatFloat(size, 'g', precision) + unit;
}

/** Formats bytes in decimal units with 4 significant digits, as go-units HumanSize: "7.34MB", "123B", "1.5kB". */
export function humanSize(bytes: number): string {
  return humanSizeWithPrecision(bytes, 4);
}

/** Formats bytes in binary units with 4 significant digits, as go-units BytesSize (docker stats): "1.5MiB". */
export function bytesSize(bytes: number): string {
  const [size, unit] = sizeAndUnit(bytes, 1024, binaryAbbrs);
  return formatFloat(size, 'g', 4) + unit;
}

export { parseBytes, fromHumanSize, parseCpus } from './parse-units.js';
