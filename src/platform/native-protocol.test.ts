import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  encodeShimFrame,
  encodeShimSpec,
  SHIM_PROTOCOL_VERSION,
  ShimFrameDecoder,
  type ShimSpec,
} from './native-protocol.js';
import { nativeBuild } from './native-build.js';

const shimPath = nativeBuild('abode-shim');
const noShim = existsSync(shimPath) ? false : `${shimPath} is not built (run make -C native)`;

function fullSpec(): ShimSpec {
  return {
    mode: 'run',
    id: 'c0ffee',
    args: ['/bin/sh', '-c', 'echo "héllo"\t\\ done'],
    env: ['PATH=/usr/bin:/bin', 'EMPTY='],
    cwd: '/work dir',
    uid: 1000,
    gid: 4294967295,
    additionalGids: [10, 20],
    terminal: true,
    openStdin: false,
    noNewPrivileges: true,
    capabilities: {
      bounding: (1n << 40n) - 1n,
      effective: 0x5n,
      permitted: (1n << 64n) - 1n,
      inheritable: 0n,
      ambient: 1n << 63n,
    },
    seccomp: Buffer.from([0x06, 0, 0, 0, 0, 0, 0xff, 0x7f, 0x15, 0, 1, 0, 0x3b, 0, 0, 0]),
    rlimits: [
      { resource: 7, soft: 1024n, hard: 4096n },
      { resource: 4, soft: (1n << 64n) - 1n, hard: (1n << 64n) - 1n },
    ],
    oomScoreAdj: -500,
    init: true,
    namespaces: 0x7e020000,
    joinNamespaces: [{ type: 0x40000000, path: '/run/netns/x' }],
    rootfs: '/var/lib/abode/rootfs',
    readonlyRootfs: true,
    mounts: [
      { source: 'proc', target: '/proc', fstype: 'proc', flags: 14, propagation: 0, data: '' },
      {
        source: '/host/data',
        target: '/data',
        fstype: 'bind',
        flags: 4096 | 16384 | 1,
        propagation: 16384 | 262144,
        data: '',
      },
      {
        source: 'tmpfs',
        target: '/dev',
        fstype: 'tmpfs',
        flags: 2,
        propagation: 0,
        data: 'mode=755,size=65536k',
      },
    ],
    devices: [
      { path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 },
      { path: '/dev/loop0', type: 'b', major: 7, minor: 0, mode: 0o660, uid: 0, gid: 6 },
    ],
    symlinks: [
      ['/proc/self/fd', '/dev/fd'],
      ['pts/ptmx', '/dev/ptmx'],
    ],
    maskedPaths: ['/proc/kcore', '/sys/firmware'],
    readonlyPaths: ['/proc/sys'],
    hostname: 'web-1',
    cgroupProcs: ['/sys/fs/cgroup/abode/x/cgroup.procs'],
    targetPid: 4242,
    logPath: '/var/log/x.log',
    exitPath: '/run/abode/x.exit',
    socketPath: '/run/abode/x.sock',
    holdUntilStart: true,
  };
}

/** The spec in the JSON shape `abode-shim --dump-spec` prints (u64 as strings, seccomp as hex). */
function asDumped(spec: ShimSpec): unknown {
  const c = spec.capabilities;
  const out: Record<string, unknown> = {
    ...spec,
    capabilities: {
      bounding: String(c.bounding),
      effective: String(c.effective),
      permitted: String(c.permitted),
      inheritable: String(c.inheritable),
      ambient: String(c.ambient),
    },
    rlimits: spec.rlimits.map((r) => ({ resource: r.resource, soft: String(r.soft), hard: String(r.hard) })),
  };
  if (spec.seccomp) out.seccomp = spec.seccomp.toString('hex');
  return out;
}

function dump(spec: ShimSpec): unknown {
  const dir = mkdtempSync(join(tmpdir(), 'abode-proto-'));
  try {
    const file = join(dir, 'spec');
    writeFileSync(file, encodeShimSpec(spec));
    return JSON.parse(execFileSync(shimPath, ['--dump-spec', file], { encoding: 'utf8' }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('encodeShimSpec', () => {
  it('starts with the magic and the version', () => {
    const b = encodeShimSpec(fullSpec());
    assert.equal(b.subarray(0, 4).toString('latin1'), 'ABSH');
    assert.equal(b.readUInt32LE(4), SHIM_PROTOCOL_VERSION);
  });

  it('reports every unencodable value at once', () => {
    const spec = { ...fullSpec(), uid: -1, cwd: 'a\0b', seccomp: Buffer.alloc(3) };
    assert.throws(
      () => encodeShimSpec(spec),
      (e: Error) => /uid/.test(e.message) && /cwd/.test(e.message) && /seccomp/.test(e.message),
    );
  });

  it('round-trips through the C decoder (full spec)', { skip: noShim }, () => {
    const spec = fullSpec();
    assert.deepEqual(dump(spec), asDumped(spec));
  });

  it(
    'round-trips through the C decoder (minimal exec spec, optional fields absent)',
    { skip: noShim },
    () => {
      const spec: ShimSpec = {
        ...fullSpec(),
        mode: 'exec',
        args: ['ls'],
        env: [],
        additionalGids: [],
        seccomp: undefined,
        oomScoreAdj: undefined,
        targetPid: undefined,
        rlimits: [],
        mounts: [],
        devices: [],
        symlinks: [],
        maskedPaths: [],
        readonlyPaths: [],
        joinNamespaces: [],
        cgroupProcs: [],
        hostname: '',
      };
      const expected = asDumped(spec) as Record<string, unknown>;
      delete expected.seccomp;
      delete expected.oomScoreAdj;
      delete expected.targetPid;
      assert.deepEqual(dump(spec), expected);
    },
  );

  it(
    'round-trips through the C decoder (a VM monitor: agent fields, files to reclaim)',
    { skip: noShim },
    () => {
      const spec: ShimSpec = {
        ...fullSpec(),
        agent: 'vm',
        agentStart: Buffer.from('a=true\0'),
        bootTimeoutMs: 60_000,
        reclaimFiles: ['/var/lib/abode/vm/kernel/vmlinux', '/var/lib/abode/vm/initramfs/i.cpio'],
        agentResume: true,
      };
      const expected = asDumped(spec) as Record<string, unknown>;
      expected.agentStart = spec.agentStart!.toString('hex');
      assert.deepEqual(dump(spec), expected);
    },
  );

  it('the C decoder rejects a wrong version', { skip: noShim }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'abode-proto-'));
    try {
      const b = encodeShimSpec(fullSpec());
      b.writeUInt32LE(99, 4);
      writeFileSync(join(dir, 'spec'), b);
      assert.throws(
        () => execFileSync(shimPath, ['--dump-spec', join(dir, 'spec')], { stdio: 'pipe' }),
        /version 99/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ShimFrameDecoder', () => {
  it('reassembles frames split across chunks', () => {
    const bytes = Buffer.concat([
      encodeShimFrame(1, Buffer.from('out\n')),
      encodeShimFrame(2, Buffer.from('err')),
      encodeShimFrame(3, Buffer.from('{}')),
    ]);
    const d = new ShimFrameDecoder();
    const frames = [
      ...d.push(bytes.subarray(0, 5)),
      ...d.push(bytes.subarray(5, 13)),
      ...d.push(bytes.subarray(13)),
    ];
    assert.deepEqual(
      frames.map((f) => [f.stream, f.payload.toString()]),
      [
        [1, 'out\n'],
        [2, 'err'],
        [3, '{}'],
      ],
    );
  });
});
