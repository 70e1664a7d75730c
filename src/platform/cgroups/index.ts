export { detectCgroups, type DetectOptions } from './detect.js';
export type { DriverOptions } from './common.js';
export { nodeCgroupFs, type CgroupFs, type KillFn } from './fs.js';
export { parseMountinfo, modeOf, type CgroupMounts, type V1Mount } from './mountinfo.js';
export {
  MIN_MEMORY,
  checkCgroupPath,
  cpusToQuota,
  planMemory,
  sharesToWeight,
  validateResources,
  type MemoryPlan,
} from './resources.js';
export type { Cgroup, CgroupDriver, CgroupHierarchy, CgroupInfo, CgroupMode, CgroupStats } from './types.js';
export { CgroupV1Driver, type V1DriverOptions } from './v1.js';
export { CgroupV2Driver, type V2DriverOptions } from './v2.js';
