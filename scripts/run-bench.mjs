#!/usr/bin/env node
// `npm run bench`: installs the peers and builds (scripts/bench-setup.sh), then runs bench/ (dist/bench/main.js).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const setup = spawnSync(join(repo, 'scripts/bench-setup.sh'), { stdio: 'inherit', cwd: repo });
if (setup.status !== 0) process.exit(setup.status ?? 1);
const main = join(repo, 'dist/bench/main.js');
if (!existsSync(main)) {
  console.error(`bench: ${main} is missing after the build`);
  process.exit(1);
}
const result = spawnSync(process.execPath, [main], { stdio: 'inherit', cwd: repo });
process.exit(result.status ?? 1);
