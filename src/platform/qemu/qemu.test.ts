import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { encodeAgentStart, guestProcessTable, rootProcess } from './agent-protocol.js';
import { kernelCmdline, machineSize, qemuArgs, templateCmdline } from './args.js';
import { CPIO_DIR, CPIO_FILE, writeCpio } from './cpio.js';
import { sweepBaseDisks } from './disk.js';
import { lz4Block, lz4LegacyDecompress } from './lz4.js';

function hasCpio(): boolean {
  try {
    execFileSync('cpio', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('cpio newc writer', () => {
  it('writes headers, 4-byte padding and the trailer', () => {
    const archive = writeCpio([
      { path: 'dir', mode: CPIO_DIR | 0o755 },
      { path: 'dir/f', mode: CPIO_FILE | 0o644, data: Buffer.from('hello') },
    ]);
    assert.equal(archive.toString('latin1', 0, 6), '070701');
    assert.equal(archive.length % 4, 0);
    assert.ok(archive.includes(Buffer.from('TRAILER!!!\0')));
    // mode field of the first entry
    assert.equal(archive.toString('latin1', 14, 22), (CPIO_DIR | 0o755).toString(16).padStart(8, '0'));
  });

  it('is read back by cpio(1)', { skip: !hasCpio() && 'cpio is not installed' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'abode-cpio-'));
    try {
      const archive = writeCpio([
        { path: 'a', mode: CPIO_DIR | 0o755 },
        { path: 'a/b.txt', mode: CPIO_FILE | 0o600, data: Buffer.from('odd-length') },
        { path: 'c', mode: CPIO_FILE | 0o755, data: Buffer.alloc(0) },
      ]);
      writeFileSync(join(dir, 'x.cpio'), archive);
      execFileSync('sh', ['-c', 'cpio -id --quiet < x.cpio'], { cwd: dir });
      assert.equal(readFileSync(join(dir, 'a/b.txt'), 'utf8'), 'odd-length');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('lz4', () => {
  it('decodes literals and overlapping matches', () => {
    // token 0x34: 3 literals "abc", match length 4+4=8 at offset 3 -> "abcabcabcab" then "z"
    const block = Buffer.from([0x34, 0x61, 0x62, 0x63, 0x03, 0x00, 0x10, 0x7a]);
    const out = Buffer.alloc(32);
    const n = lz4Block(block, 0, block.length, out, 0);
    assert.equal(out.toString('latin1', 0, n), 'abcabcabcabz');
  });

  it('reads the legacy frame and ignores trailing bytes', () => {
    const block = Buffer.from([0x50, 0x68, 0x65, 0x6c, 0x6c, 0x6f]);
    const head = Buffer.alloc(8);
    head.writeUInt32LE(0x184c2102, 0);
    head.writeUInt32LE(block.length, 4);
    const trailer = Buffer.from([0x05, 0, 0, 0]);
    assert.equal(lz4LegacyDecompress(Buffer.concat([head, block, trailer])).toString(), 'hello');
    assert.throws(() => lz4LegacyDecompress(Buffer.from('nope')), /legacy LZ4/);
  });
});

describe('kernel command line', () => {
  it('derives lpj and tsc_early_khz from the TSC', () => {
    const line = kernelCmdline({ tscKhz: 2_600_000, hz: 250 });
    assert.match(line, /\blpj=10400000\b/);
    assert.match(line, /\btsc_early_khz=2600000\b/);
    assert.match(line, /^console=ttyS0 quiet panic=-1/);
    assert.match(line, /cryptomgr.notests/);
    assert.match(line, /initcall_blacklist=tracer_init_tracefs,init_kprobe_trace/);
  });
  it('leaves them out when the TSC is unknown', () => {
    assert.doesNotMatch(kernelCmdline({}), /lpj=|tsc_early_khz=/);
  });
});

describe('QEMU arguments', () => {
  const base = {
    qemu: '/usr/bin/qemu-system-x86_64',
    memoryMiB: 256,
    cpus: 2,
    kernel: '/k/vmlinux',
    initrd: '/k/initrd',
    cmdline: 'console=ttyS0',
    disk: '/i/disk.qcow2',
    consolePath: '/r/console.log',
    qmpSocket: '/r/qmp.sock',
  };
  it('builds a TCG microvm with the agent port on stdio', () => {
    const args = qemuArgs({ ...base, accel: 'tcg' });
    const joined = args.join(' ');
    assert.match(joined, /-M microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on/);
    assert.match(joined, /-accel tcg,tb-size=48/);
    assert.match(qemuArgs({ ...base, accel: 'tcg', tcgCacheMiB: 16 }).join(' '), /-accel tcg,tb-size=16 /);
    assert.doesNotMatch(joined, /pit=off|pic=off|-cpu host/);
    for (const flag of ['-nodefaults', '-no-user-config', '-nographic', '-no-reboot'])
      assert.ok(args.includes(flag));
    assert.deepEqual(args.slice(args.indexOf('-sandbox'), args.indexOf('-sandbox') + 2), ['-sandbox', 'on']);
    assert.match(joined, /-m 256 -smp 2/);
    assert.match(
      joined,
      /-chardev stdio,id=agent,signal=off -device virtserialport,chardev=agent,name=org.abode.agent/,
    );
    assert.match(joined, /file=\/i\/disk.qcow2,format=qcow2/);
    assert.match(joined, /virtio-balloon-device,free-page-reporting=on/);
    assert.match(joined, /-serial file:\/r\/console.log/);
  });
  it('boots a template on its shared memory file, and restores a copy on a private mapping of it', () => {
    const boot = qemuArgs({ ...base, accel: 'tcg', template: { memory: '/proc/7/fd/3', role: 'boot' } });
    assert.match(boot.join(' '), /memory-backend-file,id=ram,size=256M,mem-path=\/proc\/7\/fd\/3,share=on/);
    assert.ok(!boot.includes('-incoming'));
    const copy = qemuArgs({ ...base, accel: 'tcg', template: { memory: '/proc/7/fd/3', role: 'copy' } });
    assert.match(copy.join(' '), /mem-path=\/proc\/7\/fd\/3,share=off/);
    assert.deepEqual(copy.slice(copy.indexOf('-incoming'), copy.indexOf('-incoming') + 2), [
      '-incoming',
      'defer',
    ]);
    assert.doesNotMatch(copy.join(' '), /memory-backend-memfd/);
    assert.match(templateCmdline('console=ttyS0'), /^console=ttyS0 abode\.template$/);
  });
  it('uses KVM with the host CPU when told', () => {
    const joined = qemuArgs({ ...base, accel: 'kvm' }).join(' ');
    assert.match(joined, /-accel kvm -cpu host/);
  });
  it('sizes the machine from --memory and --cpus', () => {
    assert.deepEqual(machineSize(undefined, undefined, 8), { memoryMiB: 256, cpus: 2 });
    assert.deepEqual(machineSize(undefined, undefined, 1), { memoryMiB: 256, cpus: 1 });
    assert.deepEqual(machineSize(512 * 2 ** 20, 1.5e9), { memoryMiB: 512, cpus: 2 });
    assert.deepEqual(machineSize(2 ** 20, 1e8), { memoryMiB: 64, cpus: 1 });
  });
});

/** A root process running `true`, with nothing else asked of the guest. */
const p = rootProcess(['true']);

describe('agent START payload', () => {
  it('encodes NUL-terminated k=v entries in order', () => {
    const payload = encodeAgentStart({
      args: ['sh', '-c', 'echo hi'],
      env: ['PATH=/bin'],
      cwd: '/',
      uid: 1,
      gid: 2,
      additionalGids: [3],
      terminal: true,
      openStdin: false,
      hostname: 'h',
    });
    assert.deepEqual(payload.toString().split('\0').slice(0, -1), [
      'a=sh',
      'a=-c',
      'a=echo hi',
      'e=PATH=/bin',
      'c=/',
      'u=1',
      'g=2',
      'G=3',
      't=1',
      'i=0',
      'h=h',
    ]);
  });
  it('rejects NUL bytes and an empty command', () => {
    assert.throws(() => encodeAgentStart({ ...p, args: ['a\0b'] }), /NUL/);
    assert.throws(() => encodeAgentStart({ ...p, args: [] }), /no command/);
  });
});

describe("the guest's process list (top)", () => {
  it('asks the agent for a list instead of a process', () => {
    const payload = encodeAgentStart({ ...p, args: ['ps'], listProcesses: true }).toString();
    assert.ok(payload.split('\0').includes('P=1'));
    assert.ok(!encodeAgentStart(p).toString().split('\0').includes('P=1'));
  });
  it("reads the agent's lines into ps -ef's columns", () => {
    const now = new Date(2026, 11, 1, 17, 30);
    const today = Math.floor(new Date(2026, 11, 1, 17, 5).getTime() / 1000);
    const earlier = Math.floor(new Date(2026, 10, 28, 9, 0).getTime() / 1000);
    const text = [
      `1000\t87\t1\t${today}\t${(136 << 8) | 0}\t123\tsh -c sleep 9`,
      `0\t1\t0\t${earlier}\t0\t2\t/init`,
      'not a process line',
    ].join('\n');
    assert.deepEqual(guestProcessTable(text, now), {
      Titles: ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD'],
      Processes: [
        ['root', '1', '0', '0', 'Nov28', '?', '00:00:02', '/init'],
        ['1000', '87', '1', '0', '17:05', 'pts/0', '00:02:03', 'sh -c sleep 9'],
      ],
    });
  });
});

describe('run options for the guest', () => {
  it('carries --read-only, virtio-fs and tmpfs mounts to the agent (main process only)', () => {
    const entries = encodeAgentStart({
      ...p,
      readOnly: true,
      mounts: [{ tag: 'abode0', destination: '/my data', readOnly: true }],
      tmpfs: [
        { destination: '/scratch space', flags: 14, data: 'size=1m,mode=1777' },
        { destination: '/run', flags: 6, data: '' },
      ],
    })
      .toString()
      .split('\0');
    assert.ok(entries.includes('R=1'));
    assert.ok(entries.includes('m=abode0 ro /my data'));
    assert.ok(entries.includes('T=14 size=1m,mode=1777 /scratch space'));
    assert.ok(entries.includes('T=6 - /run'));
    assert.ok(!encodeAgentStart(p).toString().includes('R=1'));
  });

  it('--rm: the agent and the shim learn that the disk is thrown away; QEMU need not flush it', () => {
    assert.ok(
      encodeAgentStart({ ...p, discardRoot: true })
        .toString()
        .split('\0')
        .includes('D=1'),
    );
    assert.ok(!encodeAgentStart(p).toString().includes('D=1'));
    const m = {
      qemu: 'q',
      accel: 'tcg' as const,
      memoryMiB: 256,
      cpus: 1,
      kernel: 'k',
      initrd: 'i',
      cmdline: '',
      consolePath: 'c',
      disk: '/d.qcow2',
    };
    assert.match(
      qemuArgs({ ...m, diskDisposable: true }).join(' '),
      /file=\/d.qcow2,format=qcow2,if=none,discard=unmap,cache=unsafe/,
    );
    assert.doesNotMatch(qemuArgs(m).join(' '), /cache=unsafe/);
  });

  it('guest RAM is a shared memfd (small host pages); shares add modern virtio-mmio and vhost-user', () => {
    const base = {
      qemu: 'q',
      accel: 'tcg' as const,
      memoryMiB: 256,
      cpus: 1,
      kernel: 'k',
      initrd: 'i',
      cmdline: '',
      consolePath: 'c',
    };
    const plain = qemuArgs(base).join(' ');
    assert.match(plain, /memory-backend=ram/);
    assert.match(plain, /memory-backend-memfd,id=ram,size=256M,share=on/);
    assert.doesNotMatch(plain, /vhost-user|force-legacy/);
    const shared = qemuArgs({ ...base, shares: [{ tag: 'abode0', socket: '/run/fs0.sock' }] }).join(' ');
    assert.match(shared, /memory-backend=ram/);
    assert.match(shared, /memory-backend-memfd,id=ram,size=256M,share=on/);
    assert.match(shared, /virtio-mmio.force-legacy=false/);
    assert.match(
      shared,
      /socket,id=fs0,path=\/run\/fs0.sock -device vhost-user-fs-device,chardev=fs0,tag=abode0/,
    );
  });
});

describe('base disks', () => {
  it('the sweep removes the disks whose layers are gone, with their overlay and record; keeps the rest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'abode-disks-'));
    try {
      const layer = join(dir, 'layer');
      mkdirSync(layer);
      const disk = (name: string, lowerdirs?: string[]) => {
        const path = join(dir, `${name}.ext4`);
        writeFileSync(path, 'ext4');
        writeFileSync(`${path}.overlay.qcow2`, 'qcow2');
        if (lowerdirs) writeFileSync(`${path}.json`, JSON.stringify({ lowerdirs }));
        return path;
      };
      const kept = disk('kept', [layer]);
      const gone = disk('gone', [layer, join(dir, 'removed-layer')]);
      const unrecorded = disk('unrecorded');
      assert.deepEqual(await sweepBaseDisks(dir), [gone]);
      for (const f of [gone, `${gone}.overlay.qcow2`, `${gone}.json`]) assert.ok(!existsSync(f), f);
      for (const f of [kept, `${kept}.overlay.qcow2`, `${kept}.json`, unrecorded])
        assert.ok(existsSync(f), f);
      assert.deepEqual(await sweepBaseDisks(join(dir, 'none')), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('QMP client', () => {
  it('negotiates, skips events, returns results in order, reports errors', async () => {
    const { createServer } = await import('node:net');
    const dir = mkdtempSync(join(tmpdir(), 'abode-qmp-'));
    const socket = join(dir, 'qmp.sock');
    const seen: string[] = [];
    const server = createServer((conn) => {
      conn.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
      let buf = '';
      conn.on('data', (d) => {
        buf += d.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string };
          buf = buf.slice(nl + 1);
          seen.push(cmd.execute);
          conn.write('{"event": "RTC_CHANGE", "data": {}}\r\n');
          if (cmd.execute === 'query-status')
            conn.write('{"return": {"status": "running", "running": true}}\r\n');
          else if (cmd.execute === 'query-balloon') conn.write('{"return": {"actual": 268435456}}\r\n');
          else if (cmd.execute === 'qmp_capabilities') conn.write('{"return": {}}\r\n');
          else conn.write('{"error": {"class": "CommandNotFound", "desc": "no"}}\r\n');
        }
      });
    });
    await new Promise<void>((r) => server.listen(socket, r));
    try {
      const { qmpGuestMemory, qmpRun, qmpStatus } = await import('./qmp.js');
      assert.equal(await qmpStatus(socket), 'running');
      assert.equal(await qmpGuestMemory(socket), 268435456);
      await assert.rejects(qmpRun(socket, [{ execute: 'nope' }]), /CommandNotFound/);
      assert.deepEqual(seen.slice(0, 2), ['qmp_capabilities', 'query-status']);
      await assert.rejects(qmpStatus(join(dir, 'missing.sock')), /QMP/);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
