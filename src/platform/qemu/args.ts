/** QEMU's command line and the guest kernel's, for an abode microVM (pure: everything comes in as values). */
import { readFile } from 'node:fs/promises';

export interface VmMachine {
  qemu: string;
  accel: 'kvm' | 'tcg';
  memoryMiB: number;
  cpus: number;
  /** Uncompressed vmlinux (PVH boot) or a bzImage. */
  kernel: string;
  initrd: string;
  cmdline: string;
  /** The root disk (qcow2), absent for a disk-less VM (benchmarks). */
  disk?: string;
  /** The disk is thrown away after the run (--rm): the guest's flushes need not reach the host's disk (cache=unsafe). */
  diskDisposable?: boolean;
  /** The serial console's file. */
  consolePath: string;
  qmpSocket?: string;
  /** virtio-fs shares: each a vhost-user socket served by a virtiofsd (needs guest RAM QEMU can share). */
  shares?: { tag: string; socket: string }[];
}

/**
 * TCG's translation cache in MiB, resident in full once the guest has booted (QEMU asks for huge
 * pages). Booting the cloud kernel to the agent's READY takes as long with 16 as with 32 (measured:
 * 1.34 s against 1.42 s, interleaved); with 8 the cache thrashes (+0.28 s).
 */
export const TCG_CACHE_MIB = 16;

/** The least guest RAM the cloud kernel and the agent boot in (below it the guest runs out of memory at boot). */
export const MIN_GUEST_MIB = 128;

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
  ];
  if (opts.tscKhz && opts.tscKhz > 0) {
    args.push(`lpj=${Math.round((opts.tscKhz * 1000) / hz)}`, `tsc_early_khz=${Math.round(opts.tscKhz)}`);
  }
  return [...args, ...(opts.extra ?? [])].join(' ');
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
  const machine = ['microvm', 'x-option-roms=off', 'isa-serial=on', 'rtc=on', 'acpi=on'];
  const shares = m.shares ?? [];
  // vhost-user (virtiofsd) maps the guest's RAM: it must be a shared memfd.
  if (shares.length > 0) machine.push('memory-backend=ram');
  const args = [
    '-M',
    machine.join(','),
    ...(m.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', `tcg,tb-size=${TCG_CACHE_MIB}`]),
    '-m',
    `${m.memoryMiB}`,
    '-smp',
    `${m.cpus}`,
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
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
    args.push('-object', `memory-backend-memfd,id=ram,size=${m.memoryMiB}M,share=on`);
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
  return args;
}

/** Guest RAM in MiB from --memory (bytes), default 256 (create refuses less than MIN_GUEST_MIB); vCPUs from --cpus (nano CPUs), rounded up, default 1. */
export function machineSize(
  memoryBytes: number | undefined,
  nanoCpus: number | undefined,
): { memoryMiB: number; cpus: number } {
  const memoryMiB = memoryBytes ? Math.max(64, Math.floor(memoryBytes / (1 << 20))) : 256;
  const cpus = nanoCpus ? Math.max(1, Math.ceil(nanoCpus / 1e9)) : 1;
  return { memoryMiB, cpus };
}
