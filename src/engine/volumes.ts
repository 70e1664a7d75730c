import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstanceRecord } from '../core/instance.js';
import { AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError } from '../core/errors.js';
import type { StateStore, VolumeRecord } from './state-store.js';

const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

/** Named volumes (driver "local"): a directory per volume under the state root. */
export class VolumeService {
  constructor(
    private readonly store: StateStore,
    private readonly root: string,
    private readonly instances: () => InstanceRecord[],
  ) {}

  async create(name: string, labels: Record<string, string> = {}, mustBeNew = false): Promise<VolumeRecord> {
    if (!VOLUME_NAME.test(name)) {
      throw new InvalidArgumentError(
        `create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed`,
      );
    }
    const existing = this.store.getVolume(name);
    if (existing) {
      if (mustBeNew) throw new AlreadyExistsError(`volume ${name} already exists`);
      return existing;
    }
    const mountpoint = join(this.root, name, '_data');
    await mkdir(mountpoint, { recursive: true });
    const volume: VolumeRecord = {
      name,
      driver: 'local',
      mountpoint,
      created: new Date().toISOString(),
      labels,
    };
    this.store.insertVolume(volume);
    return volume;
  }

  /** The named volume, created on first use as docker does for -v name:/path. */
  ensure(name: string): Promise<VolumeRecord> {
    return this.create(name);
  }

  get(name: string): VolumeRecord {
    const volume = this.store.getVolume(name);
    if (!volume) throw new NotFoundError(`get ${name}: no such volume`);
    return volume;
  }

  list(): VolumeRecord[] {
    return this.store.listVolumes();
  }

  usedBy(name: string): string[] {
    return this.instances()
      .filter((r) => r.mounts.some((m) => m.type === 'volume' && m.name === name))
      .map((r) => r.id);
  }

  async remove(name: string, force: boolean): Promise<void> {
    const volume = this.get(name);
    const users = this.usedBy(name);
    if (users.length > 0 && !force) {
      throw new ConflictError(`remove ${name}: volume is in use - [${users.join(', ')}]`);
    }
    await rm(join(this.root, volume.name), { recursive: true, force: true });
    this.store.deleteVolume(name);
  }

  async prune(): Promise<string[]> {
    const removed: string[] = [];
    for (const volume of this.list()) {
      if (this.usedBy(volume.name).length === 0) {
        await this.remove(volume.name, false);
        removed.push(volume.name);
      }
    }
    return removed;
  }
}
