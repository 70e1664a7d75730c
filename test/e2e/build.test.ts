import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Abode, hostSnapshot } from './harness.js';

const abode = new Abode('abode-e2e-build-');
const ok = (args: string[]) => abode.ok(args);
const dirs: string[] = [];

/** A build context with the given files. */
function context(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'abode-ctx-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const MULTI = `# a multi-stage build
ARG BASE=busybox
FROM $BASE AS build
ARG GREETING=hello
RUN echo "$GREETING from the build stage" > /greeting && \\
    mkdir -p /out && cp /greeting /out/
COPY app.txt /out/

FROM busybox
ENV APP_HOME=/app MODE=prod
WORKDIR $APP_HOME
COPY --from=build /out/ ./
RUN rm /bin/vi && echo 'runner:x:1234:1234::/app:/bin/sh' >> /etc/passwd
USER runner
ENTRYPOINT ["sh", "-c", "echo \\"$MODE $(id -u) $(pwd)\\"; cat \\"$@\\"", "--"]
CMD ["greeting", "app.txt"]
`;

before(() => {
  ok(['run', '--rm', 'busybox', 'true']);
});
after(() => {
  abode.cleanup();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('abode build', () => {
  const ctx = context({ Containerfile: MULTI, 'app.txt': 'app v1\n' });
  let firstId = '';

  test('a multi-stage build runs and its image does what it says', () => {
    const out = ok(['build', '-t', 'e2e-app', '--build-arg', 'GREETING=hi', ctx]);
    assert.match(out, /^Step 1\/12 : FROM \$BASE AS build$/m);
    assert.match(out, /^Step 3\/12 : RUN echo "\$GREETING from the build stage"/m);
    assert.match(out, /^ ---> Running in [0-9a-f]{12}$/m);
    assert.match(out, /^Removing intermediate container [0-9a-f]{12}$/m);
    const built = /^Successfully built ([0-9a-f]{12})$/m.exec(out);
    assert.ok(built, out);
    firstId = built[1]!;
    assert.match(out, /^Successfully tagged e2e-app:latest$/m);
    const run = ok(['run', '--rm', 'e2e-app']);
    assert.equal(run, 'prod 1234 /app\nhi from the build stage\napp v1\n');
    // The deletion in RUN is a whiteout in the layer: the file is gone in the image.
    const gone = abode.run(['run', '--rm', '--entrypoint', 'ls', 'e2e-app', '/bin/vi']);
    assert.notEqual(gone.code, 0);
  });

  test('a rebuild with nothing changed is all cached, fast, and gives the same image', () => {
    const start = Date.now();
    const out = ok(['build', '-t', 'e2e-app', '--build-arg', 'GREETING=hi', ctx]);
    const elapsed = Date.now() - start;
    assert.equal(out.match(/^Step /gm)?.length, 12);
    assert.equal(out.match(/^ ---> Using cache$/gm)?.length, 9, out); // every step but the two FROMs and ARG
    assert.doesNotMatch(out, /Running in/);
    assert.match(out, new RegExp(`^Successfully built ${firstId}$`, 'm'));
    assert.ok(elapsed < 5000, `a cached rebuild took ${elapsed} ms`);
  });

  test('a changed copied file invalidates the cache from its COPY on', () => {
    writeFileSync(join(ctx, 'app.txt'), 'app v2\n');
    const out = ok(['build', '-t', 'e2e-app', '--build-arg', 'GREETING=hi', ctx]);
    const steps = out.split(/^Step /m).slice(1);
    const cached = steps.map((s) => / ---> Using cache/.test(s));
    // Step 3 (RUN) stays cached; 4 (COPY app.txt) and the second stage's COPY --from (8) and after are new.
    assert.equal(cached[2], true, steps[2]);
    assert.equal(cached[3], false, steps[3]);
    assert.equal(cached[7], false, steps[7]);
    assert.equal(cached[8], false, steps[8]);
    assert.doesNotMatch(out, new RegExp(`Successfully built ${firstId}`));
    assert.match(ok(['run', '--rm', 'e2e-app']), /app v2/);
  });

  test('--target stops at a stage; --no-cache runs every step again', () => {
    const out = ok(['build', '-t', 'e2e-stage', '--target', 'build', '--no-cache', ctx]);
    assert.match(out, /^Step 4\/4 : COPY app.txt \/out\/$/m);
    assert.doesNotMatch(out, /Using cache/);
    assert.equal(ok(['run', '--rm', 'e2e-stage', 'cat', '/greeting']), 'hello from the build stage\n');
  });

  test('.dockerignore keeps a file out of the context', () => {
    const c = context({
      Containerfile: 'FROM busybox\nCOPY . /ctx/\nCMD ["ls", "-A", "/ctx"]\n',
      '.dockerignore': '# secrets\nsecret.txt\n*.log\n!keep.log\n',
      'secret.txt': 'password',
      'debug.log': 'x',
      'keep.log': 'y',
      'public.txt': 'hello',
    });
    ok(['build', '-t', 'e2e-ignore', c]);
    const listed = ok(['run', '--rm', 'e2e-ignore']).split('\n').filter(Boolean).sort();
    assert.deepEqual(listed, ['.dockerignore', 'Containerfile', 'keep.log', 'public.txt']);
  });

  test('a failing RUN stops the build with exit 1 and leaves nothing behind', () => {
    const before = hostSnapshot(abode.root);
    const c = context({ Containerfile: 'FROM busybox\nRUN echo before\nRUN false\nRUN echo never\n' });
    const r = abode.run(['build', '-t', 'e2e-fail', c]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /The command '\/bin\/sh -c false' returned a non-zero code: 1/);
    assert.doesNotMatch(r.stdout, /never/);
    assert.equal(ok(['ps', '-aq']).trim(), '');
    assert.deepEqual(hostSnapshot(abode.root), before);
    assert.deepEqual(readdirSync(join(abode.root, 'snapshots')), []);
    assert.deepEqual(readdirSync(join(abode.root, 'tmp')), []);
    assert.notEqual(abode.run(['image', 'inspect', 'e2e-fail']).code, 0);
  });

  test('RUN steps have no network unless --network host (e.g. for apt-get install)', () => {
    const c = context({ Containerfile: 'FROM busybox\nRUN ls /sys/class/net > /net\nCMD ["cat", "/net"]\n' });
    ok(['build', '-q', '-t', 'e2e-nonet', c]);
    assert.equal(ok(['run', '--rm', 'e2e-nonet']).trim(), 'lo');
    ok(['build', '-q', '--no-cache', '--network', 'host', '-t', 'e2e-hostnet', c]);
    assert.deepEqual(
      ok(['run', '--rm', 'e2e-hostnet']).trim().split(/\s+/).sort(),
      readdirSync('/sys/class/net').sort(),
    );
    assert.equal(abode.run(['build', '--network', 'bridge', c]).code, 1);
  });

  test('errors name the line: an unknown instruction, a COPY of a missing file', () => {
    const c = context({
      Containerfile: 'FROM busybox\n\nFOO bar\n',
      'Dockerfile.copy': 'FROM busybox\nCOPY missing.txt /\n',
    });
    const unknown = abode.run(['build', c]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /Containerfile parse error line 3: unknown instruction: FOO/);
    const missing = abode.run(['build', '-f', join(c, 'Dockerfile.copy'), c]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /COPY failed \(Dockerfile.copy line 2\): file not found in build context/);
  });

  test('FROM scratch with COPY, ADD of a local tar extracts it, --chown, EXPOSE/LABEL/VOLUME in the config', () => {
    const c = context({ 'bin.txt': 'x' });
    // A tar made by the busybox image itself, so the test needs no host tar.
    ok([
      'run',
      '--rm',
      '-v',
      `${c}:/c`,
      'busybox',
      'sh',
      '-c',
      'mkdir -p /t/in && echo inside > /t/in/f && tar -cf /c/a.tar -C /t in',
    ]);
    writeFileSync(
      join(c, 'Containerfile'),
      'FROM busybox\nADD a.tar /opt/\nCOPY --chown=nobody:nogroup bin.txt /owned\nEXPOSE 8080/tcp\nLABEL org.example.k="v 1"\nVOLUME /data\nSHELL ["/bin/sh", "-ec"]\nCMD cat /opt/in/f && stat -c %U:%G /owned\n',
    );
    ok(['build', '-t', 'e2e-misc', c]);
    assert.equal(ok(['run', '--rm', 'e2e-misc']), 'inside\nnobody:nogroup\n');
    const inspect = JSON.parse(ok(['image', 'inspect', 'e2e-misc'])) as {
      config?: Record<string, unknown>;
    }[];
    const cfg = JSON.stringify(inspect);
    assert.match(cfg, /8080\/tcp/);
    assert.match(cfg, /org\.example\.k/);
    assert.match(cfg, /\/bin\/sh","-ec"/);
  });
});
