// What a benchmark report says about where it ran: CPU identity (model name, vendor family/model, the ISA flags
// that matter), cores, versions of node / PyTorch / OpenBLAS / sentencepiece / OpenMPI, the commit, the load.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { PYTHON } from './torch-env.ts';

/** The ISA flags the kernels (and the targets of DESIGN.md) depend on. */
export const RELEVANT_FLAGS = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_tile'] as const;

export interface CpuInfo {
  /** `model name`, e.g. "Intel(R) Xeon(R) Processor" (KVM guests often report only that). */
  model: string;
  /** `vendor_id`, e.g. GenuineIntel, AuthenticAMD. */
  vendor: string;
  /** `cpu family` and `model` numbers: they name the microarchitecture where the model name does not. */
  family: number | null;
  modelNumber: number | null;
  flags: Record<string, boolean>;
}

/** CPU model, vendor, family/model numbers and the relevant flags of the first processor of a /proc/cpuinfo text. */
export function parseCpuinfo(text: string): CpuInfo {
  const first = text.split(/\n\s*\n/)[0] ?? '';
  const fields = new Map<string, string>();
  for (const line of first.split('\n')) {
    const colon = line.indexOf(':');
    // Keys are padded with tabs ("model\t\t: 143"); "model" and "model name" must not be confused.
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const number = (key: string): number | null => {
    const v = fields.get(key);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
  };
  const have = new Set((fields.get('flags') ?? '').split(/\s+/));
  return {
    model: fields.get('model name') || 'unknown CPU',
    vendor: fields.get('vendor_id') || 'unknown vendor',
    family: number('cpu family'),
    modelNumber: number('model'),
    flags: Object.fromEntries(RELEVANT_FLAGS.map((f) => [f, have.has(f)])),
  };
}

/** "avx2 yes, fma yes, avx512f yes, …" */
export function formatFlags(flags: Record<string, boolean>): string {
  return Object.entries(flags).map(([f, on]) => `${f} ${on ? 'yes' : 'no'}`).join(', ');
}

/**
 * Which CPU a set of results belongs to. Two machines share a key when they would run the same kernels on the
 * same microarchitecture: same model name, same family/model numbers, same SIMD level and AVX512_BF16 or not.
 */
export interface CpuIdentity {
  /** Marker key in docs/BENCHMARKS.md, e.g. "intel-xeon-processor-f6-m207-avx512". */
  key: string;
  /** Heading, e.g. "Intel(R) Xeon(R) Processor (GenuineIntel family 6 model 207; AVX-512, no AVX512_BF16)". */
  label: string;
}

/** The kernels' SIMD level on this CPU, as the key spells it and in words. */
function isaLevel(flags: Record<string, boolean>): { tag: string; words: string } {
  if (flags['avx512f'] && flags['avx512_bf16']) return { tag: 'avx512-bf16', words: 'AVX-512, AVX512_BF16' };
  if (flags['avx512f']) return { tag: 'avx512', words: 'AVX-512, no AVX512_BF16' };
  if (flags['avx2'] && flags['fma']) return { tag: 'avx2', words: 'AVX2, no AVX-512' };
  return { tag: 'scalar', words: 'no AVX2' };
}

export function cpuIdentity(cpu: CpuInfo): CpuIdentity {
  const slug = cpu.model.toLowerCase().replace(/\((r|tm)\)/g, '').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '') || 'unknown-cpu';
  const numbers = cpu.family !== null && cpu.modelNumber !== null;
  const isa = isaLevel(cpu.flags);
  const key = [slug, ...(numbers ? [`f${cpu.family}`, `m${cpu.modelNumber}`] : []), isa.tag].join('-');
  const where = numbers ? `${cpu.vendor} family ${cpu.family} model ${cpu.modelNumber}` : cpu.vendor;
  return { key, label: `${cpu.model} (${where}; ${isa.words})` };
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
  /** The CPU's heading and key in docs/BENCHMARKS.md. */
  identity: CpuIdentity;
  /** Model name, vendor and family/model numbers as /proc/cpuinfo gives them. */
  cpu: string;
  vendor: string;
  family: number | null;
  modelNumber: number | null;
  cores: number;
  flags: string;
  versions: string;
  commit: string;
}

export function describeMachine(): Machine {
  const info = parseCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'));
  const dpkg = (pkg: string): string => output('dpkg-query', ['-W', '-f', '${Version}', pkg]) || 'not installed';
  const torch = output(PYTHON, ['-c', 'import torch; print(torch.__version__)']) || 'not importable';
  const mpi = output('mpirun', ['--version']).split('\n')[0] ?? '';
  const commit = output('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = output('git', ['status', '--porcelain', '--untracked-files=no']) !== '';
  return {
    identity: cpuIdentity(info),
    cpu: info.model,
    vendor: info.vendor,
    family: info.family,
    modelNumber: info.modelNumber,
    cores: cpus().length,
    flags: formatFlags(info.flags),
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
