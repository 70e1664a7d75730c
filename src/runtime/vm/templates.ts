/**
 * VM templates: a guest booted once per machine shape (QEMU, kernel, initramfs, RAM, vCPUs,
 * accelerator), snapshotted when its agent says READY, and restored for each later VM of that shape.
 * The template's RAM stays in a memfd that `abode-shim --hold-memory` holds and seals; every copy maps
 * it private, so what the copies only read is in the host's memory once, and a copy runs in tens of
 * milliseconds instead of booting. Holders end with the process that started them (the daemon).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { InternalError } from '../../core/errors.js';
import { unrefProcess } from '../../platform/shim.js';

/** A ready template: the memory file its copies map, and the device state they load. */
export interface Template {
  /** /proc/PID/fd/N of the holder's memfd. */
  memory: string;
  /** The snapshot's device state (QMP migrate with x-ignore-shared). */
  state: string;
}

/** The guest RAM of a template, in a memfd that its holder seals once the template's snapshot is taken. */
export class MemoryHolder {
  private constructor(
    private readonly child: ChildProcess,
    private readonly replies: AsyncIterator<string>,
    readonly pid: number,
    readonly fd: number,
  ) {}

  /** Starts `abode-shim --hold-memory BYTES`. */
  static async start(shimPath: string, bytes: number): Promise<MemoryHolder> {
    const child = spawn(shimPath, ['--hold-memory', String(bytes)], { stdio: ['pipe', 'pipe', 'ignore'] });
    // A holder that has died fails the next write: seal() reports that, the write must not throw.
    child.stdin!.on('error', () => undefined);
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const first = await Promise.race([
      lines.next(),
      new Promise<never>((_, reject) => child.once('error', reject)),
    ]);
    let hello: { pid?: number; fd?: number; error?: string } = {};
    try {
      hello = JSON.parse(first.done ? '{}' : first.value) as typeof hello;
    } catch {
      hello = { error: `the holder said ${JSON.stringify(first.value)}` };
    }
    if (hello.pid === undefined || hello.fd === undefined) {
      child.kill('SIGKILL');
      throw new InternalError(
        `cannot hold a VM template's memory: ${hello.error ?? 'the holder said nothing'}`,
      );
    }
    unrefProcess(child);
    return new MemoryHolder(child, lines, hello.pid, hello.fd);
  }

  /** The path a QEMU opens to map the memory. */
  get path(): string {
    return `/proc/${this.pid}/fd/${this.fd}`;
  }

  /** Forbids every further write to the memory (copies then map it private, and cannot punch holes in it). */
  async seal(): Promise<void> {
    this.child.stdin!.write('seal\n');
    // The holder's pipes do not keep the process alive, except while it waits for this answer.
    const stdout = this.child.stdout as unknown as { ref?: () => void; unref?: () => void };
    stdout.ref?.();
    const reply = await this.replies.next().finally(() => stdout.unref?.());
    if (reply.done || reply.value !== 'ok')
      throw new InternalError(
        `cannot seal a VM template's memory: ${reply.done ? 'the holder is gone' : reply.value}`,
      );
    this.child.stdin!.end();
  }

  /** True while the holder runs. */
  alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** What a ready template's `template.json` says (RUN/templates/KEY), for whoever looks: tests, benchmarks, a user. */
export interface TemplateRecord extends Template {
  holderPid: number;
  memoryMiB: number;
  cpus: number;
}

/** Writes a ready template's record into its directory. */
export function writeTemplateRecord(dir: string, record: TemplateRecord): Promise<void> {
  return writeFile(join(dir, 'template.json'), JSON.stringify(record));
}

/** The records of the ready templates under `runRoot`, each with its directory. */
export function readTemplateRecords(runRoot: string): (TemplateRecord & { dir: string })[] {
  const root = join(runRoot, 'templates');
  return (existsSync(root) ? readdirSync(root) : []).flatMap((key) => {
    try {
      const record = JSON.parse(readFileSync(join(root, key, 'template.json'), 'utf8')) as TemplateRecord;
      return [{ ...record, dir: join(root, key) }];
    } catch {
      return []; // not ready yet
    }
  });
}

/** What a build gives: the template, its holder, and the machine it is of (for `abode info`). */
export interface BuiltTemplate {
  template: Template;
  holder: MemoryHolder;
  memoryMiB: number;
  cpus: number;
}

/** A shape whose template could not be built boots for this long before a build is tried again. */
export const RETRY_BUILD_AFTER_MS = 5 * 60_000;

/** Templates by machine shape: ready ones, and one build at a time per shape. */
export class VmTemplates {
  private readonly ready = new Map<string, BuiltTemplate>();
  private readonly building = new Map<string, Promise<void>>();
  /** When a shape's last build failed: it is not tried again for a while (every boot would try). */
  private readonly failedAt = new Map<string, number>();

  /** `log` hears of a build that failed and of a template dropped (the daemon's log). */
  constructor(private readonly log: (message: string) => void = () => undefined) {}

  /** The ready template of `key`, if its holder still runs. */
  get(key: string): Template | undefined {
    const entry = this.ready.get(key);
    if (entry && !entry.holder.alive()) this.ready.delete(key);
    return entry?.holder.alive() ? entry.template : undefined;
  }

  /** Builds `key`'s template in the background unless it is ready, being built, or failed to build lately. */
  prepare(key: string, build: () => Promise<BuiltTemplate>, now = Date.now()): void {
    if (this.get(key) || this.building.has(key)) return;
    if (now - (this.failedAt.get(key) ?? -Infinity) < RETRY_BUILD_AFTER_MS) return;
    const done = build()
      .then((entry) => {
        this.ready.set(key, entry);
        this.failedAt.delete(key);
        this.log(`VM template ${key} ready: ${entry.memoryMiB} MiB × ${entry.cpus} vCPUs`);
      })
      .catch((error: unknown) => {
        this.failedAt.set(key, Date.now());
        this.log(`VM template ${key}: not built: ${(error as Error).message}`);
      })
      .finally(() => this.building.delete(key));
    this.building.set(key, done);
  }

  /** The ready templates: their machines, and the host memory each holds (its memfd's pages). */
  async describe(): Promise<{ memoryMiB: number; cpus: number; heldBytes: number }[]> {
    const entries = [...this.ready.values()].filter((entry) => entry.holder.alive());
    return Promise.all(
      entries.map(async ({ holder, memoryMiB, cpus }) => ({
        memoryMiB,
        cpus,
        heldBytes: await stat(holder.path)
          .then((s) => s.blocks * 512)
          .catch(() => 0),
      })),
    );
  }

  /** Waits for the builds under way (tests, benchmarks). */
  async settled(): Promise<void> {
    await Promise.all(this.building.values());
  }

  /** Forgets `key`'s template (a copy of it failed: `why`) and ends its holder. */
  drop(key: string, why?: string): void {
    if (why && this.ready.has(key)) this.log(`VM template ${key}: dropped: ${why}`);
    this.ready.get(key)?.holder.kill();
    this.ready.delete(key);
  }

  /** Ends every holder. */
  close(): void {
    for (const key of [...this.ready.keys()]) this.drop(key);
  }
}

/** What makes two VMs' boots the same: the files by path, size and time, and the machine's settings. */
export async function templateKey(shape: {
  qemu: string;
  kernel: string;
  initrd: string;
  [setting: string]: unknown;
}): Promise<string> {
  const files = await Promise.all(
    [shape.qemu, shape.kernel, shape.initrd].map(async (path) => {
      const s = await stat(path);
      return `${path}:${s.size}:${s.mtimeMs}`;
    }),
  );
  return createHash('sha256')
    .update(JSON.stringify({ format: 1, files, shape }))
    .digest('hex')
    .slice(0, 16);
}
