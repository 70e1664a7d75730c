import Database from 'better-sqlite3';
import type { InstanceRecord } from '../core/instance.js';
import { AlreadyExistsError } from '../core/errors.js';

export interface VolumeRecord {
  name: string;
  driver: string;
  mountpoint: string;
  created: string;
  labels: Record<string, string>;
}

/** The engine's durable state: instances and volumes in one SQLite file, each write atomic. */
export class StateStore {
  private db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, data TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS volumes (name TEXT PRIMARY KEY, data TEXT NOT NULL);
    `);
  }

  /** Adds an instance; a taken name is an AlreadyExistsError naming the holder. */
  insertInstance(record: InstanceRecord): void {
    const holder = this.db.prepare('SELECT id FROM instances WHERE name = ?').get(record.name) as
      { id: string } | undefined;
    if (holder) {
      throw new AlreadyExistsError(
        `Conflict. The container name "/${record.name}" is already in use by container "${holder.id}". You have to remove (or rename) that container to be able to reuse that name.`,
      );
    }
    this.db
      .prepare('INSERT INTO instances (id, name, data) VALUES (?, ?, ?)')
      .run(record.id, record.name, JSON.stringify(record));
  }

  updateInstance(record: InstanceRecord): void {
    this.db
      .prepare('UPDATE instances SET name = ?, data = ? WHERE id = ?')
      .run(record.name, JSON.stringify(record), record.id);
  }

  deleteInstance(id: string): void {
    this.db.prepare('DELETE FROM instances WHERE id = ?').run(id);
  }

  listInstances(): InstanceRecord[] {
    const rows = this.db.prepare('SELECT data FROM instances').all() as { data: string }[];
    return rows.map((row) => JSON.parse(row.data) as InstanceRecord);
  }

  insertVolume(volume: VolumeRecord): void {
    this.db
      .prepare('INSERT INTO volumes (name, data) VALUES (?, ?)')
      .run(volume.name, JSON.stringify(volume));
  }

  getVolume(name: string): VolumeRecord | undefined {
    const row = this.db.prepare('SELECT data FROM volumes WHERE name = ?').get(name) as
      { data: string } | undefined;
    return row ? (JSON.parse(row.data) as VolumeRecord) : undefined;
  }

  listVolumes(): VolumeRecord[] {
    const rows = this.db.prepare('SELECT data FROM volumes ORDER BY name').all() as { data: string }[];
    return rows.map((row) => JSON.parse(row.data) as VolumeRecord);
  }

  deleteVolume(name: string): void {
    this.db.prepare('DELETE FROM volumes WHERE name = ?').run(name);
  }

  close(): void {
    this.db.close();
  }
}
