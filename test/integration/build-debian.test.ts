/**
 * The built-in debian:bookworm (debootstrap from the host's apt mirror, about a minute the first
 * time) and a build on it. Needs the Debian mirror of /etc/apt/sources.list(.d) and debootstrap.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Abode } from '../e2e/harness.js';

const abode = new Abode('abode-debian-');
const ctx = mkdtempSync(join(tmpdir(), 'abode-ctx-'));
after(() => {
  abode.cleanup();
  rmSync(ctx, { recursive: true, force: true });
});

test('debian:bookworm is built on first use, runs bash, and a build on it works offline', () => {
  const first = abode.run(
    ['run', '--rm', 'debian', 'bash', '-c', 'cat /etc/debian_version; echo $BASH_VERSION'],
    {
      timeoutMs: 600_000,
    },
  );
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^12\.\d+\n5\./);
  const ids = ['debian', 'debian:12', 'debian:bookworm'].map((r) =>
    abode.ok(['image', 'inspect', '--format', '{{.Id}}', r]).trim(),
  );
  assert.equal(new Set(ids).size, 1, `one image for every alias: ${ids.join(' ')}`);
  writeFileSync(
    join(ctx, 'Containerfile'),
    'FROM debian:bookworm\nRUN echo hi > /f && dpkg -l | head -7 && dpkg -s apt | grep -q "Status: install ok installed"\nCMD ["cat", "/f"]\n',
  );
  const built = abode.run(['build', '-t', 'deb-app', ctx], { timeoutMs: 120_000 });
  assert.equal(built.code, 0, built.stderr);
  assert.match(built.stdout, /ii {2}apt /);
  assert.equal(abode.ok(['run', '--rm', 'deb-app']), 'hi\n');
});
