import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CredentialStore, DOCKER_HUB_KEY, parseChallenge, serverKey } from './auth.js';
import { isLocalRegistry } from './client.js';
import { parsePlatform } from './pull.js';

test('challenges: bearer with quoted params, basic, others ignored', () => {
  assert.deepEqual(
    parseChallenge(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
    ),
    {
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/busybox:pull',
      },
    },
  );
  assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), {
    scheme: 'basic',
    params: { realm: 'Registry Realm' },
  });
  assert.equal(parseChallenge('Negotiate abc'), undefined);
  assert.equal(parseChallenge(undefined), undefined);
});

test('server keys as docker writes them in config.json', () => {
  assert.equal(serverKey(''), DOCKER_HUB_KEY);
  assert.equal(serverKey('docker.io'), DOCKER_HUB_KEY);
  assert.equal(serverKey('https://index.docker.io/v1/'), DOCKER_HUB_KEY);
  assert.equal(serverKey('127.0.0.1:5000'), '127.0.0.1:5000');
  assert.equal(serverKey('http://Registry.Example.com:443/v2/'), 'registry.example.com:443');
  assert.throws(() => serverKey('a b'), /invalid registry server/);
});

test('the credential store: docker config.json format, mode 0600, remove', async () => {
  const dir = await fs.mkdtemp(join(tmpdir(), 'abode-auth-'));
  try {
    const store = new CredentialStore(join(dir, 'auth.json'));
    assert.equal(await store.get('127.0.0.1:5000'), undefined);
    await store.set('127.0.0.1:5000', { username: 'u', password: 'p:w' });
    await store.set(DOCKER_HUB_KEY, { username: 'hub', password: 'x' });
    assert.deepEqual(await store.get('127.0.0.1:5000'), { username: 'u', password: 'p:w' });
    assert.deepEqual(await store.get('docker.io'), { username: 'hub', password: 'x' });
    const doc = JSON.parse(await fs.readFile(join(dir, 'auth.json'), 'utf8')) as {
      auths: Record<string, { auth: string }>;
    };
    assert.equal(doc.auths['127.0.0.1:5000']!.auth, Buffer.from('u:p:w').toString('base64'));
    assert.equal((await fs.stat(join(dir, 'auth.json'))).mode & 0o777, 0o600);
    assert.equal(await store.remove('127.0.0.1:5000'), true);
    assert.equal(await store.remove('127.0.0.1:5000'), false);
    assert.equal(await store.get('127.0.0.1:5000'), undefined);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('local registries and platforms', () => {
  assert.ok(isLocalRegistry('localhost:5000'));
  assert.ok(isLocalRegistry('127.0.0.1:5000'));
  assert.ok(isLocalRegistry('[::1]:5000'));
  assert.ok(!isLocalRegistry('registry.example.com'));
  assert.deepEqual(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.deepEqual(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.deepEqual(parsePlatform('linux/x86_64'), { os: 'linux', architecture: 'amd64' });
  assert.throws(() => parsePlatform('linux//'), /invalid platform/);
});
