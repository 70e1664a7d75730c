import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UnavailableError } from '../../core/errors.js';
import { modeOf, parseMountinfo } from './mountinfo.js';

/** This host: separate cpu and cpuacct mounts plus a controller-less cgroup2 at /sys/fs/cgroup/unified. */
const HYBRID = `22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

/** Classic systemd v1 layout: combined cpu,cpuacct and net_cls,net_prio, optional fields before the separator. */
const V1 = `25 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 25 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
27 26 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
30 26 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
31 26 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
32 26 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
33 26 0:30 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,net_cls,net_prio
34 26 0:31 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
35 26 0:32 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
36 25 0:28 /docker /mnt/memory\\040copy rw,relatime - cgroup cgroup rw,memory
`;

/** Pure v2 (systemd with unified hierarchy). */
const V2 = `24 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

describe('parseMountinfo', () => {
  it('reads a hybrid host with separate cpu and cpuacct mounts', () => {
    const mounts = parseMountinfo(HYBRID);
    assert.deepEqual(mounts.v2, { mountPoint: '/sys/fs/cgroup/unified', root: '/' });
    assert.deepEqual(
      mounts.v1.map((m) => [m.mountPoint, m.controllers]),
      [
        ['/sys/fs/cgroup/cpu', ['cpu']],
        ['/sys/fs/cgroup/cpuacct', ['cpuacct']],
        ['/sys/fs/cgroup/cpuset', ['cpuset']],
        ['/sys/fs/cgroup/memory', ['memory']],
        ['/sys/fs/cgroup/devices', ['devices']],
        ['/sys/fs/cgroup/freezer', ['freezer']],
        ['/sys/fs/cgroup/blkio', ['blkio']],
        ['/sys/fs/cgroup/pids', ['pids']],
      ],
    );
    assert.equal(modeOf(mounts), 'hybrid');
  });

  it('reads pure v1 with combined mounts, ignoring named hierarchies and second mounts', () => {
    const mounts = parseMountinfo(V1);
    assert.equal(mounts.v2, undefined);
    assert.deepEqual(mounts.v1[0], {
      mountPoint: '/sys/fs/cgroup/cpu,cpuacct',
      root: '/',
      controllers: ['cpu', 'cpuacct'],
    });
    assert.deepEqual(mounts.v1.find((m) => m.controllers.includes('net_cls'))?.controllers, [
      'net_cls',
      'net_prio',
    ]);
    assert.deepEqual(mounts.v1.find((m) => m.controllers.includes('cpuset'))?.controllers, ['cpuset']);
    assert.equal(mounts.v1.filter((m) => m.controllers.includes('memory')).length, 1);
    assert.equal(
      mounts.v1.find((m) => m.controllers.includes('memory'))?.mountPoint,
      '/sys/fs/cgroup/memory',
    );
    assert.equal(modeOf(mounts), 'v1');
  });

  it('reads pure v2', () => {
    const mounts = parseMountinfo(V2);
    assert.deepEqual(mounts, { v1: [], v2: { mountPoint: '/sys/fs/cgroup', root: '/' } });
    assert.equal(modeOf(mounts), 'v2');
  });

  it('decodes octal escapes in mount points', () => {
    const mounts = parseMountinfo('36 25 0:28 /docker /mnt/memory\\040copy rw - cgroup cgroup rw,memory\n');
    assert.deepEqual(mounts.v1, [
      { mountPoint: '/mnt/memory copy', root: '/docker', controllers: ['memory'] },
    ]);
  });

  it('a v1 named hierarchy alone is not a cgroup mode; no cgroups at all is UnavailableError', () => {
    const named = parseMountinfo(
      '27 26 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n' + V2.split('\n')[0],
    );
    assert.deepEqual(named.v1, []);
    assert.throws(() => modeOf(named), UnavailableError);
    assert.throws(() => modeOf(parseMountinfo('')), /no cgroup hierarchy is mounted/);
  });
});
