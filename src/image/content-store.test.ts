import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { sha256Digest } from '../core/digest.js';
import { InvalidArgumentError, NotFoundError } from '../core/errors.js';
import { ContentStore } from './content-store.js';

const temps: string[] = [];
const temp = (d: string) => (temps.push(d), d);
after(() => Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true }))));

async function store(): Promise<ContentStore> {
  return new ContentStore(temp(await fs.mkdtemp(join(tmpdir(), 'abode-content-'))));
}

async function files(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch(() => []);
}

test('writes a stream, verifies and reads it back', async () => {
  const cs = await store();
  const data = Buffer.alloc(300_000, 7);
  const digest = sha256Digest(data);
  const info = await cs.write(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), {
    digest,
    size: data.length,
  });
  assert.deepEqual(info, { digest, size: data.length });
  assert.equal(await cs.has(digest), true);
  assert.deepEqual(await cs.read(digest), data);
  assert.equal(cs.blobPath(digest), join(cs.root, 'content/blobs/sha256', digest.slice(7)));
  assert.deepEqual(await cs.list(), [digest]);
  assert.deepEqual(await files(join(cs.root, 'content/ingest')), []);
});

test('a digest mismatch is rejected and leaves no blob and no temp file', async () => {
  const cs = await store();
  const good = Buffer.from('hello');
  const expected = sha256Digest(good);
  await assert.rejects(
    cs.write(Readable.from([Buffer.from('hellO')]), { digest: expected }),
    InvalidArgumentError,
  );
  assert.equal(await cs.has(expected), false);
  assert.deepEqual(await cs.list(), []);
  assert.deepEqual(await files(join(cs.root, 'content/ingest')), []);
  await assert.rejects(cs.write(good, { digest: expected, size: 4 }), /size mismatch/);
  assert.equal(await cs.has(expected), false);
});

test('a failing source stream commits nothing', async () => {
  const cs = await store();
  const src = new Readable({
    read() {
      this.push(Buffer.from('partial'));
      this.destroy(new Error('network down'));
    },
  });
  await assert.rejects(cs.write(src), /network down/);
  assert.deepEqual(await cs.list(), []);
  assert.deepEqual(await files(join(cs.root, 'content/ingest')), []);
});

test('an aborted writer leaves nothing; missing blobs are NotFound; delete is idempotent', async () => {
  const cs = await store();
  const w = await cs.writer();
  w.stream.write(Buffer.from('abc'));
  await w.abort();
  assert.deepEqual(await files(join(cs.root, 'content/ingest')), []);
  const d = sha256Digest('x');
  await assert.rejects(cs.read(d), NotFoundError);
  await cs.delete(d);
  const info = await cs.write('x');
  assert.equal(info.digest, d);
  await cs.delete(d);
  assert.equal(await cs.has(d), false);
});

test('an ingest written elsewhere commits what its writer measured, once verified', async () => {
  const cs = await store();
  const data = Buffer.from('written by a layer worker');
  const measured = { digest: sha256Digest(data), size: data.length };
  const ing = await cs.ingest();
  assert.equal(await cs.has(measured.digest), false);
  await fs.writeFile(ing.path, data);
  assert.equal(await cs.has(measured.digest), false, 'present only once committed');
  assert.deepEqual(await ing.commit(measured, measured), measured);
  assert.deepEqual(await cs.read(measured.digest), data);
  assert.deepEqual(await files(join(cs.root, 'content/ingest')), []);
  await assert.rejects(ing.commit(measured), /already finished/);
});

test('an ingest whose measure is not the expected one, or not the file, commits nothing', async () => {
  const cs = await store();
  const data = Buffer.from('bytes');
  const measured = { digest: sha256Digest(data), size: data.length };
  const cases = [
    { expected: { digest: sha256Digest('other') }, error: /digest mismatch/ },
    { expected: { size: 4 }, error: /size mismatch/ },
    // The writer's measure must match what reached the file.
    { measured: { ...measured, size: 6 }, error: /6 bytes measured, 5 in the file/ },
    { measured: { ...measured, digest: 'sha256:../../x' }, error: /not a digest/ },
  ];
  for (const c of cases) {
    const ing = await cs.ingest();
    await fs.writeFile(ing.path, data);
    await assert.rejects(ing.commit((c.measured ?? measured) as typeof measured, c.expected), c.error);
    assert.deepEqual(await cs.list(), []);
    assert.deepEqual(await files(join(cs.root, 'content/ingest')), []);
  }
});

test('an aborted ingest leaves nothing', async () => {
  const cs = await store();
  const ing = await cs.ingest();
  await fs.writeFile(ing.path, 'partial');
  await ing.abort();
  await ing.abort();
  assert.deepEqual(await files(join(cs.root, 'content/ingest')), []);
  assert.deepEqual(await cs.list(), []);
});
