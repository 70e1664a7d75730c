#!/usr/bin/env node
// Runs the compiled tests of one purpose with node's test runner: `unit` (src/**/*.test.js) or
// `integration` (test/integration and test/e2e, as root).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const kind = process.argv[2] ?? 'unit';
const roots = kind === 'unit' ? ['dist/src'] : ['dist/test/integration', 'dist/test/e2e'];
const files = [];
const walk = (dir) => {
  let names = [];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.test.js')) files.push(path);
  }
};
roots.forEach(walk);
files.sort();
const filter = process.env.ABODE_TEST_FILTER;
const selected = filter ? files.filter((f) => f.includes(filter)) : files;
if (selected.length === 0) {
  console.error(`no ${kind} tests found under ${roots.join(', ')}; run npm run build first`);
  process.exit(1);
}
// Integration tests share the host's kernel objects (cgroups, mounts), so they run one file at a time.
const concurrency = kind === 'unit' ? [] : ['--test-concurrency=1'];
const result = spawnSync(process.execPath, ['--test', ...concurrency, ...selected], { stdio: 'inherit' });
process.exit(result.status ?? 1);
