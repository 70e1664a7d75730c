/** Timing and statistics shared by the benchmarks: interleaved runs, medians, ratios, the printed table. */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';

/** Runs per case (ABODE_BENCH_N, default 30). */
export const RUNS = Math.max(1, Number(process.env.ABODE_BENCH_N ?? 30) || 30);
/** Untimed runs per case before measuring (ABODE_BENCH_WARMUP, default 3). */
export const WARMUP = Math.max(0, Number(process.env.ABODE_BENCH_WARMUP ?? 3) || 0);

/** One measured case: returns the duration of one run in milliseconds. */
export interface Case {
  name: string;
  run: () => number | Promise<number>;
}

export type Samples = Map<string, number[]>;

export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Milliseconds from spawning `command` to its exit; throws when it exits other than with `expect`. */
export function timeCommand(
  command: string,
  args: string[],
  options: SpawnSyncOptions & { expect?: number } = {},
): number {
  const start = now();
  const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  const elapsed = now() - start;
  const expect = options.expect ?? 0;
  if (result.error) throw result.error;
  if (result.status !== expect) {
    const stderr = String(result.stderr ?? '').trim();
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.status ?? result.signal} (want ${expect})${stderr ? `: ${stderr}` : ''}`,
    );
  }
  return elapsed;
}

/** Runs the cases interleaved (A, B, C, A, B, C, …): WARMUP untimed rounds, then `runs` timed ones. */
export async function interleave(cases: Case[], runs = RUNS, warmup = WARMUP): Promise<Samples> {
  const samples: Samples = new Map(cases.map((c) => [c.name, []]));
  for (let round = 0; round < warmup + runs; round++) {
    for (const c of cases) {
      const ms = await c.run();
      if (round >= warmup) samples.get(c.name)!.push(ms);
    }
  }
  return samples;
}

export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function median(values: number[]): number {
  return quantile(values, 0.5);
}

export function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

export function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(2)} MiB`;
}

/** "0.26 (target ≤ 0.5) ✓" */
export function verdict(value: number, target: number, strict = false): string {
  const ok = strict ? value < target : value <= target;
  return `${value.toFixed(2)} (target ${strict ? '<' : '≤'} ${target}) ${ok ? '✓' : '✗'}`;
}

/** Median, quartiles and spread of every case, as a table. */
export function table(title: string, samples: Samples): string {
  const rows = [...samples].map(([name, values]) => [
    name,
    median(values).toFixed(1),
    quantile(values, 0.25).toFixed(1),
    quantile(values, 0.75).toFixed(1),
    Math.min(...values).toFixed(1),
    Math.max(...values).toFixed(1),
    String(values.length),
  ]);
  const head = [title, 'median ms', 'p25', 'p75', 'min', 'max', 'n'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}
