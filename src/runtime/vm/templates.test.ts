import assert from 'node:assert/strict';
import {
  existsSync,
  mkdtempSync,
  openSync,
  closeSync,
  rmSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MemoryHolder, RETRY_BUILD_AFTER_MS, templateKey, VmTemplates } from './templates.js';
import { nativeBuild } from '../../platform/native-build.js';

const shimPath = nativeBuild('abode-shim');
const noShim = existsSync(shimPath) ? false : `${shimPath} is not built (run make -C native)`;

describe('VM template memory holder', () => {
  it('holds a memfd that can be written until it is sealed, and not after', { skip: noShim }, async () => {
    const holder = await MemoryHolder.start(shimPath, 2 ** 20);
    try {
      assert.match(holder.path, /^\/proc\/\d+\/fd\/\d+$/);
      const before = openSync(holder.path, 'r+');
      writeSync(before, 'template');
      closeSync(before);
      await holder.seal();
      // a copy's QEMU opens it read-write (its mapping is private), but a write would reach every copy
      const after = openSync(holder.path, 'r+');
      try {
        assert.throws(() => writeSync(after, 'copy'), /EPERM/);
      } finally {
        closeSync(after);
      }
      assert.ok(holder.alive());
    } finally {
      holder.kill();
    }
  });

  it('refuses a size it cannot hold, with the reason', { skip: noShim }, async () => {
    await assert.rejects(MemoryHolder.start(shimPath, 0), /cannot hold a VM template's memory: .*bad size/);
  });
});

describe('VM templates', () => {
  it("a machine's key changes with its files and settings, and only then", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'abode-tpl-'));
    try {
      const [qemu, kernel, initrd] = ['qemu', 'vmlinux', 'initrd'].map((name) => join(dir, name));
      for (const file of [qemu!, kernel!, initrd!]) writeFileSync(file, 'x');
      const shape = { qemu: qemu!, kernel: kernel!, initrd: initrd!, memoryMiB: 256, cpus: 2 };
      const key = await templateKey(shape);
      assert.match(key, /^[0-9a-f]{16}$/);
      assert.equal(await templateKey({ ...shape }), key);
      assert.notEqual(await templateKey({ ...shape, memoryMiB: 512 }), key);
      utimesSync(kernel!, new Date(0), new Date(0));
      assert.notEqual(await templateKey(shape), key);
      await assert.rejects(templateKey({ ...shape, initrd: join(dir, 'missing') }), /ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('builds once per key, keeps what a build gives, forgets a failed build', { skip: noShim }, async () => {
    const templates = new VmTemplates();
    let builds = 0;
    const holder = await MemoryHolder.start(shimPath, 2 ** 20);
    try {
      const template = { memory: holder.path, state: '/nowhere/state' };
      const build = async () => {
        builds++;
        return { template, holder, memoryMiB: 256, cpus: 2 };
      };
      templates.prepare('a', build);
      templates.prepare('a', build);
      await templates.settled();
      assert.equal(builds, 1);
      assert.deepEqual(templates.get('a'), template);
      assert.deepEqual(
        (await templates.describe()).map((t) => [t.memoryMiB, t.cpus]),
        [[256, 2]],
      );
      templates.prepare('b', () => Promise.reject(new Error('no')));
      await templates.settled();
      assert.equal(templates.get('b'), undefined);
      // a shape whose build failed boots a while before its build is tried again
      let retried = 0;
      const retry = async () => {
        retried++;
        return { template, holder, memoryMiB: 256, cpus: 2 };
      };
      templates.prepare('b', retry, Date.now() + 1000);
      await templates.settled();
      assert.equal(retried, 0);
      templates.prepare('b', retry, Date.now() + RETRY_BUILD_AFTER_MS + 1000);
      await templates.settled();
      assert.equal(retried, 1);
      templates.drop('a');
      assert.equal(templates.get('a'), undefined);
    } finally {
      holder.kill();
      templates.close();
    }
  });
});
