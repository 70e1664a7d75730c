/** QEMU's command line and the guest kernel's, for an abode microVM (pure: everything comes in as values). */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';

export interface VmMachine {
  qemu: string;
  accel: 'kvm' | 'tcg';
  memoryMiB: number;
  cpus: number;
  /** Uncompressed vmlinux (PVH boot) or a bzImage. */
  kernel: string;
  initrd: string;
  cmdline: string;
  /** TCG's translation cache in MiB (default TCG_CACHE_MIB). */
  tcgCacheMiB?: number;
  /** The root disk (qcow2), absent for a disk-less VM (benchmarks). */
  disk?: string;
  /** The disk is thrown away after the run (--rm): the guest's flushes need not reach the host's disk (cache=unsafe). */
  diskDisposable?: boolean;
  /** The serial console's file. */
  consolePath: string;
  qmpSocket?: string;
  /** virtio-fs shares: each a vhost-user socket served by a virtiofsd (needs guest RAM QEMU can share). */
  shares?: { tag: string; socket: string }[];
  /**
   * Guest RAM in a template's memory file instead of a memfd of its own: `shared` for the template's
   * own boot (what it writes lands in the file), private for a copy restored from it (its writes stay
   * its own). A copy also waits for its device state (-incoming defer; QMP migrate-incoming).
   */
  template?: { memory: string; role: 'boot' | 'copy' };
}

/**
 * TCG's translation cache in MiB (the default; ABODE_TCG_CACHE_MIB sets another). A boot to the first
 * process translates ~43 MiB of code: a cache that holds it all is never flushed, and a smaller one
 * translates again after each flush. Measured end to end (run --rm true, interleaved, 10 runs): 16 MiB
 * 1.31x the floor, 24 1.18x, 32 1.17x, 48 1.09x, 64 1.09x. What the guest's code takes of it stays
 * resident: ~43 MiB of an idle VM's RSS with 48, 16 with 16.
 */
export const TCG_CACHE_MIB = 48;

/** The least guest RAM the cloud kernel and the agent boot in (below it the guest runs out of memory at boot). */
export const MIN_GUEST_MIB = 128;

/** Boot-time initialisations of the cloud kernel that an abode guest never uses. */
export const SKIPPED_INITCALLS = ['tracer_init_tracefs', 'init_kprobe_trace'];

/** The guest kernel's command line: quiet, fast under TCG, with the host's TSC so calibration never hangs. */
export function kernelCmdline(opts: { tscKhz?: number; hz?: number; extra?: string[] } = {}): string {
  const hz = opts.hz ?? 250;
  const args = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    '8250.nr_uarts=1',
    'tsc=reliable',
    'no_timer_check',
    'i8042.noaux',
    'i8042.nomux',
    'i8042.nopnp',
    'i8042.dumbkbd',
    'reboot=t',
    'cryptomgr.notests',
    'mitigations=off',
    'audit=0',
    'random.trust_cpu=on',
    'pci=off',
    // Debian zeroes every page the guest kernel allocates (hardening against leaks between the guest's own
    // allocations; the VM boundary is what isolates it here). Under TCG that zeroing is slow, and it puts
    // into the host's RAM pages the guest allocated but never wrote.
    'init_on_alloc=0',
    // tracefs makes an inode for every file of every trace event at boot (~9 MiB of slab, and under
    // TCG ~50 ms that init_kprobe_trace waits for); nothing in a guest reads it.
    `initcall_blacklist=${SKIPPED_INITCALLS.join(',')}`,
  ];
  if (opts.tscKhz && opts.tscKhz > 0) {
    args.push(`lpj=${Math.round((opts.tscKhz * 1000) / hz)}`, `tsc_early_khz=${Math.round(opts.tscKhz)}`);
  }
  return [...args, ...(opts.extra ?? [])].join(' ');
}

/** A template's command line: its agent waits for RESUME before it touches the root disk. */
export function templateCmdline(cmdline: string): string {
  return `${cmdline} abode.template`;
}

/** The host's TSC frequency in kHz (the guest's under TCG and KVM alike), or undefined when unknown. */
export async function hostTscKhz(): Promise<number | undefined> {
  const sysfs = await readFile('/sys/devices/system/cpu/cpu0/tsc_freq_khz', 'utf8').catch(() => '');
  if (Number(sysfs.trim()) > 0) return Number(sysfs.trim());
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo);
  return mhz ? Math.round(Number(mhz[1]) * 1000) : undefined;
}

/** QEMU's arguments: microvm with ACPI, direct kernel boot, the agent port on QEMU's stdio. */
export function qemuArgs(m: VmMachine): string[] {
  // Guest RAM in a memfd: shared memory, which vhost-user (virtiofsd) needs to map, and which the
  // host backs with small pages (QEMU asks for transparent huge pages on anonymous RAM, and a guest
  // page in use then holds 2 MiB of the host's) so free page reporting can give back what it reports.
  const machine = [
    'microvm',
    'x-option-roms=off',
    'isa-serial=on',
    'rtc=on',
    'acpi=on',
    'memory-backend=ram',
  ];
  const shares = m.shares ?? [];
  const args = [
    '-M',
    machine.join(','),
    ...(m.accel === 'kvm'
      ? ['-accel', 'kvm', '-cpu', 'host']
      : ['-accel', `tcg,tb-size=${m.tcgCacheMiB ?? TCG_CACHE_MIB}`]),
    '-m',
    `${m.memoryMiB}`,
    '-smp',
    `${m.cpus}`,
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-object',
    m.template
      ? `memory-backend-file,id=ram,size=${m.memoryMiB}M,mem-path=${m.template.memory},share=${m.template.role === 'boot' ? 'on' : 'off'}`
      : `memory-backend-memfd,id=ram,size=${m.memoryMiB}M,share=on`,
    '-sandbox',
    'on',
    '-kernel',
    m.kernel,
    '-initrd',
    m.initrd,
    '-append',
    m.cmdline,
    '-serial',
    `file:${m.consolePath}`,
    '-device',
    'virtio-serial-device,max_ports=2',
    '-chardev',
    'stdio,id=agent,signal=off',
    '-device',
    'virtserialport,chardev=agent,name=org.abode.agent',
  ];
  if (shares.length > 0) {
    // virtiofsd's libvhost-user speaks virtio 1.0 only: microvm's virtio-mmio defaults to legacy.
    args.push('-global', 'virtio-mmio.force-legacy=false');
    for (const [i, share] of shares.entries()) {
      args.push(
        '-chardev',
        `socket,id=fs${i},path=${share.socket}`,
        '-device',
        `vhost-user-fs-device,chardev=fs${i},tag=${share.tag}`,
      );
    }
  }
  if (m.disk) {
    args.push(
      '-drive',
      `id=root,file=${m.disk},format=qcow2,if=none,discard=unmap${m.diskDisposable ? ',cache=unsafe' : ''}`,
      '-device',
      'virtio-blk-device,drive=root',
    );
  }
  args.push('-device', 'virtio-balloon-device,free-page-reporting=on');
  if (m.qmpSocket) args.push('-qmp', `unix:${m.qmpSocket},server=on,wait=off`);
  if (m.template?.role === 'copy') args.push('-incoming', 'defer');
  return args;
}

/**
 * vCPUs when --cpus is not given: two, as a container may use every host CPU, and the cloud kernel
 * boots ~0.1 s faster under TCG with a second vCPU (its boot work queues run beside the boot CPU).
 */
export const DEFAULT_VCPUS = 2;

/** Guest RAM in MiB from --memory (bytes), default 256 (create refuses less than MIN_GUEST_MIB); vCPUs from --cpus (nano CPUs), rounded up, default DEFAULT_VCPUS but never more than the host has. */
export function machineSize(
  memoryBytes: number | undefined,
  nanoCpus: number | undefined,
  hostCpus = availableParallelism(),
): { memoryMiB: number; cpus: number } {
  const memoryMiB = memoryBytes ? Math.max(64, Math.floor(memoryBytes / (1 << 20))) : 256;
  const cpus = nanoCpus
    ? Math.max(1, Math.ceil(nanoCpus / 1e9))
    : Math.max(1, Math.min(DEFAULT_VCPUS, hostCpus));
  return { memoryMiB, cpus };
}
