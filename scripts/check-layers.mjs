#!/usr/bin/env node
// Checks the import arrows of docs/architecture.md: each layer imports only the layers below it.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const allowed = {
  core: ['core'],
  platform: ['core', 'platform'],
  image: ['core', 'platform', 'image'],
  network: ['core', 'platform', 'network'],
  runtime: ['core', 'platform', 'runtime'],
  engine: ['core', 'engine'],
  api: ['api', 'engine', 'core'],
  client: ['client', 'core'],
  cli: ['cli', 'client', 'core'],
  web: ['web', 'client', 'core'],
  daemon: null, // the composition root may import everything
};

const src = resolve('src');
const problems = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.ts')) check(path);
  }
};
const layerOf = (path) => relative(src, path).split('/')[0];
function check(file) {
  const layer = layerOf(file);
  const rules = allowed[layer];
  if (rules === undefined)
    return problems.push(`${relative('.', file)}: layer "${layer}" is not in the architecture`);
  if (rules === null) return;
  const text = readFileSync(file, 'utf8');
  for (const match of text.matchAll(
    /(?:import|export)[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g,
  )) {
    const target = resolve(dirname(file), match[1] ?? match[2]);
    const targetLayer = layerOf(target);
    if (!rules.includes(targetLayer)) {
      problems.push(
        `${relative('.', file)} imports ${match[1] ?? match[2]}: ${layer}/ may import only ${rules.join(', ')}`,
      );
    }
  }
}
walk(src);
if (problems.length) {
  console.error(`layer rule broken (see docs/architecture.md):\n${problems.join('\n')}`);
  process.exit(1);
}
console.log('layers: ok');
