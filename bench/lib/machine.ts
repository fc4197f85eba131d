// What a benchmark report says about where it ran: CPU model, cores and the ISA flags that matter, versions
// of node / PyTorch / OpenBLAS / sentencepiece / OpenMPI, the commit, and the load average.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { PYTHON } from './torch-env.ts';

/** The ISA flags the kernels (and the targets of DESIGN.md) depend on. */
export const RELEVANT_FLAGS = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_tile'] as const;

/** CPU model and which relevant flags the first processor of a /proc/cpuinfo text has. */
export function parseCpuinfo(text: string): { model: string; flags: Record<string, boolean> } {
  const field = (name: string): string => text.split('\n').find((l) => l.startsWith(name))?.split(':')[1]?.trim() ?? '';
  const have = new Set(field('flags').split(/\s+/));
  return { model: field('model name') || 'unknown CPU', flags: Object.fromEntries(RELEVANT_FLAGS.map((f) => [f, have.has(f)])) };
}

/** "avx512f ✓, avx512_bf16 ✗, …" */
export function formatFlags(flags: Record<string, boolean>): string {
  return Object.entries(flags).map(([f, on]) => `${f} ${on ? 'yes' : 'no'}`).join(', ');
}

function output(cmd: string, args: string[]): string {
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
    return r.status === 0 ? r.stdout.trim() : '';
  } catch {
    return '';
  }
}

/** The one-minute load average. */
export function loadAverage(): string {
  return (loadavg()[0] ?? 0).toFixed(2);
}

export interface Machine {
  cpu: string;
  cores: number;
  flags: string;
  versions: string;
  commit: string;
}

export function describeMachine(): Machine {
  const { model, flags } = parseCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'));
  const dpkg = (pkg: string): string => output('dpkg-query', ['-W', '-f', '${Version}', pkg]) || 'not installed';
  const torch = output(PYTHON, ['-c', 'import torch; print(torch.__version__)']) || 'not importable';
  const mpi = output('mpirun', ['--version']).split('\n')[0] ?? '';
  const commit = output('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = output('git', ['status', '--porcelain', '--untracked-files=no']) !== '';
  return {
    cpu: model,
    cores: cpus().length,
    flags: formatFlags(flags),
    versions: [
      `node ${process.version}`,
      `PyTorch ${torch} (Debian python3-torch ${dpkg('python3-torch')})`,
      `OpenBLAS ${dpkg('libopenblas0')}`,
      `sentencepiece ${dpkg('sentencepiece')}`,
      mpi === '' ? 'no MPI' : mpi,
    ].join('; '),
    commit: commit === '' ? 'unknown' : `${commit}${dirty ? ' (with uncommitted changes)' : ''}`,
  };
}
