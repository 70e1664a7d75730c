import { CgroupFiles, nodeCgroupFs } from './fs.js';
import type { DriverOptions } from './common.js';
import { modeOf, parseMountinfo } from './mountinfo.js';
import type { CgroupDriver } from './types.js';
import { CgroupV1Driver } from './v1.js';
import { CgroupV2Driver } from './v2.js';

export interface DetectOptions extends DriverOptions {
  /** Where to read the mount table, /proc/self/mountinfo by default (read through `fs`). */
  mountinfoPath?: string;
}

/** Reads the mount table and returns the driver for this host's cgroup mode (v1, v2 or hybrid). */
export async function detectCgroups(opts: DetectOptions = {}): Promise<CgroupDriver> {
  const fs = opts.fs ?? nodeCgroupFs;
  const files = new CgroupFiles(fs);
  const mounts = parseMountinfo(await fs.readFile(opts.mountinfoPath ?? '/proc/self/mountinfo'));
  const mode = modeOf(mounts);
  const controllersOf = async (mountPoint: string): Promise<string[]> =>
    ((await files.read(`${mountPoint}/cgroup.controllers`)) ?? '').split(/\s+/).filter((c) => c !== '');
  if (mode === 'v2') {
    const mountPoint = mounts.v2!.mountPoint;
    return new CgroupV2Driver({ ...opts, mountPoint, controllers: await controllersOf(mountPoint) });
  }
  const unified =
    mode === 'hybrid'
      ? { mountPoint: mounts.v2!.mountPoint, controllers: await controllersOf(mounts.v2!.mountPoint) }
      : undefined;
  return new CgroupV1Driver({ ...opts, mounts: mounts.v1, ...(unified ? { unified } : {}) });
}
