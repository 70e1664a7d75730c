/**
 * abode-shim's agent mode without QEMU: a fake agent (node) on the child's stdio speaks the agent
 * channel (native/agent-protocol.h), so the monitor's side of VMs is tested fast and exactly:
 * READY before the ready line, START on start, output frames to the log, exit records from EXIT,
 * signals as frames (SIGKILL kills the child), boot timeouts, and exec sessions through --relay.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import type { ShimSpec } from '../../src/platform/native-protocol.js';
import { shimRequest, shimWait, ShimStartError, startShim } from '../../src/platform/shim.js';
import { encodeAgentStart, rootProcess } from '../../src/platform/qemu/agent-protocol.js';
import { nativeBuild } from '../../src/platform/native-build.js';

const shimPath = nativeBuild('abode-shim');
const skip = existsSync(shimPath) ? false : `${shimPath} is not built (make -C native)`;
const dir = mkdtempSync(join(tmpdir(), 'abode-vm-shim-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The fake agent: READY (unless told not to), then per START: STARTED, output, EXIT per the command. */
const FAKE_AGENT = `
const silent = process.argv[2] === 'silent';
const send = (type, sid, text) => {
  const p = Buffer.from(text);
  const h = Buffer.alloc(8);
  h[0] = type; h.writeUInt16BE(sid, 2); h.writeUInt32BE(p.length, 4);
  process.stdout.write(Buffer.concat([h, p]));
  if (type === 6 && sid === 0) setTimeout(() => process.exit(0), 20); // as the agent powers off
};
if (!silent) send(1, 0, 'fake-1.0');
let buf = Buffer.alloc(0);
process.stdin.on('data', (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  while (buf.length >= 8 && buf.length >= 8 + buf.readUInt32BE(4)) {
    const type = buf[0], sid = buf.readUInt16BE(2), payload = buf.subarray(8, 8 + buf.readUInt32BE(4));
    buf = buf.subarray(8 + payload.length);
    if (type === 16) {
      const args = payload.toString().split('\\0').filter((e) => e.startsWith('a=')).map((e) => e.slice(2));
      if (args[0] === 'mute') continue; // a guest that never starts the process
      if (args[0] === 'missing') { send(5, sid, 'exec 2 exec missing: No such file or directory'); send(6, sid, '127 0'); continue; }
      send(4, sid, '42');
      if (args[0] === 'echo') { send(2, sid, args.slice(1).join(' ') + '\\n'); send(3, sid, 'to stderr\\n'); send(6, sid, '3 0'); }
    } else if (type === 20) {
      const n = Number(payload.toString());
      send(6, sid, (128 + n) + ' ' + n);
    }
  }
});
`;
const fakeAgent = join(dir, 'fake-agent.cjs');
writeFileSync(fakeAgent, FAKE_AGENT);

let serial = 0;
function spec(args: string[], command: string[], extra: Partial<ShimSpec> = {}): ShimSpec {
  const base = join(dir, `i${++serial}`);
  const all = BigInt(`0x${/^CapBnd:\s+(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`);
  return {
    mode: 'run',
    id: `vm${serial}`,
    args,
    env: ['PATH=/usr/local/bin:/usr/bin:/bin'],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    terminal: false,
    openStdin: true,
    noNewPrivileges: false,
    capabilities: { bounding: all, effective: all, permitted: all, inheritable: 0n, ambient: 0n },
    rlimits: [],
    init: false,
    namespaces: 0,
    joinNamespaces: [],
    rootfs: '',
    readonlyRootfs: false,
    mounts: [],
    devices: [],
    symlinks: [],
    maskedPaths: [],
    readonlyPaths: [],
    hostname: '',
    cgroupProcs: [],
    logPath: `${base}.log`,
    exitPath: `${base}.exit.json`,
    socketPath: `${base}.sock`,
    holdUntilStart: true,
    agent: 'vm',
    agentStart: encodeAgentStart(rootProcess(command)),
    bootTimeoutMs: 5000,
    ...extra,
  };
}

async function start(s: ShimSpec) {
  return startShim({
    shimPath,
    spec: s,
    specPath: `${s.socketPath}.spec`,
    stderrPath: `${s.socketPath}.stderr`,
  });
}

/** Starts the monitor, asks it to start the process, and returns its reply and the exit it records. */
async function startFailing(s: ShimSpec) {
  await start(s);
  const reply = await shimRequest(s.socketPath, 'start');
  return { reply, exit: await shimWait(s.socketPath, s.exitPath) };
}

describe('abode-shim agent mode', { skip }, () => {
  it('waits for READY, sends START on start, logs output frames and records the guest exit', async () => {
    const s = spec([process.execPath, fakeAgent], ['echo', 'hello', 'vm']);
    const ready = await start(s);
    assert.equal(typeof ready.bootMs, 'number');
    assert.match(await shimRequest(s.socketPath, 'state'), /^created \d+/);
    assert.equal(await shimRequest(s.socketPath, 'start'), 'ok');
    const exit = await shimWait(s.socketPath, s.exitPath);
    assert.equal(exit.exitCode, 3);
    const log = readFileSync(s.logPath, 'utf8');
    assert.match(log, / stdout F hello vm\n/);
    assert.match(log, / stderr F to stderr\n/);
  });

  it('forwards signals as frames; SIGKILL kills the child (137)', async () => {
    const term = spec([process.execPath, fakeAgent], ['sleep']);
    await start(term);
    assert.equal(await shimRequest(term.socketPath, 'start'), 'ok');
    assert.equal(await shimRequest(term.socketPath, 'signal 15'), 'ok');
    assert.equal((await shimWait(term.socketPath, term.exitPath)).exitCode, 143);

    const killed = spec([process.execPath, fakeAgent], ['sleep']);
    await start(killed);
    assert.equal(await shimRequest(killed.socketPath, 'start'), 'ok');
    assert.equal(await shimRequest(killed.socketPath, 'signal 9'), 'ok');
    assert.equal((await shimWait(killed.socketPath, killed.exitPath)).exitCode, 137);
  });

  it("answers start with the agent's error", async () => {
    const { reply, exit } = await startFailing(spec([process.execPath, fakeAgent], ['missing']));
    assert.equal(reply, 'error exec 2 exec missing: No such file or directory');
    assert.equal(exit.exitCode, 127);
    assert.match(exit.error ?? '', /No such file/);
  });

  it('gives up on an agent that never says READY, and kills the child', async () => {
    const s = spec([process.execPath, fakeAgent, 'silent'], ['true'], { bootTimeoutMs: 300 });
    await assert.rejects(start(s), (e: unknown) => e instanceof ShimStartError && e.step === 'boot');
  });

  it('ends a VM whose guest never answers START, and says so (READY comes before the root disk)', async () => {
    const { reply, exit } = await startFailing(
      spec([process.execPath, fakeAgent], ['mute'], { bootTimeoutMs: 300 }),
    );
    assert.equal(reply, 'error boot 110 the VM did not start its process within 300 ms');
    assert.equal(exit.exitCode, 137);
    assert.match(exit.error ?? '', /did not start its process/);
  });

  it('runs exec sessions through --relay with their own monitor', async () => {
    const vm = spec([process.execPath, fakeAgent], ['sleep']);
    await start(vm);
    assert.equal(await shimRequest(vm.socketPath, 'start'), 'ok');
    const exec = spec([shimPath, '--relay', vm.socketPath], ['echo', 'from', 'exec'], { agent: 'session' });
    await start(exec);
    assert.equal(await shimRequest(exec.socketPath, 'start'), 'ok');
    assert.equal((await shimWait(exec.socketPath, exec.exitPath)).exitCode, 3);
    assert.match(readFileSync(exec.logPath, 'utf8'), / stdout F from exec\n/);
    assert.match(await shimRequest(vm.socketPath, 'state'), /^running/);
    await shimRequest(vm.socketPath, 'signal 9');
    assert.equal((await shimWait(vm.socketPath, vm.exitPath)).exitCode, 137);
  });
});
