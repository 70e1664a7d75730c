/**
 * abode's container benchmarks (issue 2): end to end against podman and runc, the runtime's own
 * start-to-exit against runc, and the monitor's memory. Run with `npm run bench` (ABODE_BENCH_N runs each,
 * default 30; ABODE_BENCH_ONLY=e2e,runtime,memory,pull,unpack picks some, vm adds the microVM ones of bench/vm.ts; the image ones, pull and unpack,
 * are in bench/image-bench.ts). Prints medians, ratios and targets.
 */
import { containerE2e } from './container-e2e.js';
import { containerRuntime } from './container-runtime.js';
import { Fixture, say } from './fixture.js';
import { imageBenchmarks } from './image-bench.js';
import { monitorMemory } from './monitor-memory.js';
import { RUNS, WARMUP } from './stats.js';

const only = new Set(
  (process.env.ABODE_BENCH_ONLY ?? 'e2e,runtime,memory,pull,unpack').split(',').map((s) => s.trim()),
);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmarks run containers: run them as root');
  const fixture = await Fixture.create();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    say(`${signal}: cleaning up`);
    void fixture.cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const lines: string[] = [];
  const tables: string[] = [];
  try {
    say(`${RUNS} interleaved runs per case after ${WARMUP} warm-up rounds`);
    if (only.has('e2e')) {
      say('container e2e');
      const r = await containerE2e(fixture);
      lines.push(r.line);
      tables.push(r.table, r.phases);
    }
    if (only.has('runtime')) {
      say('container runtime');
      const r = await containerRuntime(fixture);
      lines.push(r.line);
      tables.push(r.table, r.phases);
    }
    if (only.has('pull') || only.has('unpack')) {
      say('image pull and layer unpack');
      const r = await imageBenchmarks(fixture, { pull: only.has('pull'), unpack: only.has('unpack') });
      lines.push(...r.lines);
      tables.push(...r.tables);
    }
    if (only.has('vm')) {
      say('microVMs (own fixture: a state root of their own)');
      const { vmBenchmarks } = await import('./vm.js');
      const r = await vmBenchmarks();
      lines.push(...r.lines);
      tables.push(...r.tables);
    }
    if (only.has('memory')) {
      say('monitor memory');
      const r = await monitorMemory(fixture);
      lines.push(r.line);
      tables.push(r.detail);
    }
  } finally {
    if (!interrupted) await fixture.cleanup();
  }
  console.log(`\n${tables.join('\n\n')}\n\n${lines.join('\n')}`);
}

main().catch((error: unknown) => {
  console.error(`bench: ${(error as Error)?.stack ?? String(error)}`);
  process.exit(1);
});
