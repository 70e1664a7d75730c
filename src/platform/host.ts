import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { promisify } from 'node:util';
import { PROCESS_TABLE_TITLES, type ProcessTable } from '../core/runtime.js';

const run = promisify(execFile);

/** This process's hard rlimits by docker's ulimit names (-1 = unlimited), from /proc/self/limits. */
export async function hardLimits(): Promise<Record<string, number>> {
  const names: Record<string, string> = {
    'Max cpu time': 'cpu',
    'Max file size': 'fsize',
    'Max data size': 'data',
    'Max stack size': 'stack',
    'Max core file size': 'core',
    'Max resident set': 'rss',
    'Max processes': 'nproc',
    'Max open files': 'nofile',
    'Max locked memory': 'memlock',
    'Max file locks': 'locks',
    'Max pending signals': 'sigpending',
    'Max msgqueue size': 'msgqueue',
    'Max nice priority': 'nice',
    'Max realtime priority': 'rtprio',
    'Max realtime timeout': 'rttime',
  };
  const limits: Record<string, number> = {};
  const text = await readFile('/proc/self/limits', 'utf8');
  for (const line of text.split('\n').slice(1)) {
    const label = Object.keys(names).find((name) => line.startsWith(name));
    if (!label) continue;
    const fields = line.slice(label.length).trim().split(/\s+/);
    limits[names[label]] = fields[1] === 'unlimited' ? -1 : Number(fields[1]);
  }
  return limits;
}

/** Total CPU time of the host in ns (from /proc/stat) and the number of CPUs. */
export async function hostCpu(): Promise<{ totalNs: number; onlineCpus: number }> {
  const first = (await readFile('/proc/stat', 'utf8')).split('\n')[0];
  const ticks = first
    .split(/\s+/)
    .slice(1, 9)
    .reduce((sum, value) => sum + Number(value || 0), 0);
  return { totalNs: (ticks * 1e9) / 100, onlineCpus: cpus().length };
}

/** ps-style rows (docker top's default columns) for the given host pids. */
export async function processTable(pids: number[]): Promise<ProcessTable> {
  const titles = PROCESS_TABLE_TITLES;
  if (pids.length === 0) return { Titles: titles, Processes: [] };
  const { stdout } = await run('ps', [
    '-o',
    'user,pid,ppid,c,stime,tty,time,args',
    '--no-headers',
    '-p',
    pids.join(','),
  ]).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
  const rows = stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const fields = line.trim().split(/\s+/);
      return [...fields.slice(0, 7), fields.slice(7).join(' ')];
    });
  return { Titles: titles, Processes: rows };
}

/** The host's resolv.conf, without loopback name servers unless the instance shares the host's network. */
export async function instanceResolvConf(hostNetwork = false): Promise<string> {
  let text = '';
  try {
    text = await readFile('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
  return (
    text
      .split('\n')
      .filter((line) => hostNetwork || !/^\s*nameserver\s+(127\.|::1)/.test(line))
      .join('\n')
      .trim() + '\n'
  );
}

/** Hardware virtualization as the VM runtime will use it: KVM only with real VT-x/AMD-V. */
export async function accelerator(): Promise<{ name: 'kvm' | 'tcg'; reason: string }> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const hasFlags = /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo);
  const pvm = await access('/sys/module/kvm_pvm').then(
    () => true,
    () => false,
  );
  const kvm = await access('/dev/kvm').then(
    () => true,
    () => false,
  );
  if (kvm && hasFlags && !pvm)
    return { name: 'kvm', reason: '/dev/kvm with hardware virtualization (vmx/svm)' };
  if (kvm && pvm)
    return { name: 'tcg', reason: '/dev/kvm is backed by PVM (kvm_pvm), not hardware virtualization' };
  if (kvm) return { name: 'tcg', reason: '/dev/kvm exists but the CPU shows no vmx/svm' };
  return { name: 'tcg', reason: 'no /dev/kvm' };
}

export const host = { release, totalmem };
