// The environment bench runs give PyTorch 1.13 (Debian), tuned as DESIGN.md asks: 2 threads, no OpenMP/OpenBLAS
// oversubscription, tcmalloc preloaded when installed, and OpenBLAS's AVX-512 kernels on an AVX-512 CPU.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export const PYTHON = '/usr/bin/python3';
export const TCMALLOC = '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4';
// OpenBLAS core types whose sgemm kernels are AVX-512.
const AVX512_CORES = ['SkylakeX', 'Cooperlake', 'SapphireRapids'];

export interface TorchEnv {
  env: NodeJS.ProcessEnv;
  /** Whether tcmalloc is preloaded. */
  tcmalloc: boolean;
  /** The OPENBLAS_CORETYPE forced, or null where OpenBLAS detects an AVX-512 core (or the CPU has none). */
  coretype: string | null;
  /** One line saying how PyTorch runs, for the report. */
  note: string;
}

/** The core OpenBLAS (the one PyTorch links: libopenblas.so.0) detects here without any override. */
export function detectedOpenblasCore(base: NodeJS.ProcessEnv = process.env): string {
  const env = { ...base };
  delete env['OPENBLAS_CORETYPE'];
  const code = "import ctypes; l = ctypes.CDLL('libopenblas.so.0'); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())";
  const r = spawnSync(PYTHON, ['-c', code], { env, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

function hasAvx512(): boolean {
  return /\bavx512f\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
}

/**
 * PyTorch's environment for `threads` threads. `tcmalloc: false` leaves the allocator alone (to measure what
 * tcmalloc changes); by default it is preloaded when the library is installed.
 */
export function torchEnv(base: NodeJS.ProcessEnv, opts: { threads: number; tcmalloc?: boolean }): TorchEnv {
  const env: NodeJS.ProcessEnv = { ...base, BENCH_THREADS: String(opts.threads), OMP_NUM_THREADS: String(opts.threads), OPENBLAS_NUM_THREADS: String(opts.threads) };
  // Both force 256-bit (or older) kernels when set by the environment.
  delete env['OPENBLAS_CORETYPE'];
  delete env['OPENBLAS_L2_SIZE'];
  // ATen's OpenMP threads and OpenBLAS's own pthreads take turns on the same cores: passive waiting keeps
  // idle OpenMP threads from spinning through OpenBLAS's GEMMs.
  env['OMP_WAIT_POLICY'] = 'PASSIVE';
  const notes = [`${opts.threads} threads, OMP_WAIT_POLICY=PASSIVE`];
  // OpenBLAS 0.3.21 does not know recent Xeons (e.g. this KVM guest's Emerald Rapids) and falls back to SSE3
  // (Prescott) kernels; on an AVX-512 CPU whose core it does not recognise we force SkylakeX, its AVX-512
  // kernels. Where it detects the core correctly, nothing is forced.
  let coretype: string | null = null;
  const detected = detectedOpenblasCore(env);
  if (hasAvx512() && !AVX512_CORES.includes(detected)) {
    coretype = 'SkylakeX';
    env['OPENBLAS_CORETYPE'] = coretype;
    notes.push(`OpenBLAS detects ${detected}: forced OPENBLAS_CORETYPE=SkylakeX (AVX-512 kernels)`);
  } else {
    notes.push(`OpenBLAS core ${detected} (detected, not forced)`);
  }
  const tcmalloc = (opts.tcmalloc ?? true) && existsSync(TCMALLOC);
  if (tcmalloc) {
    env['LD_PRELOAD'] = [TCMALLOC, base['LD_PRELOAD']].filter(Boolean).join(':');
    notes.push('tcmalloc preloaded');
  } else {
    notes.push(opts.tcmalloc === false ? 'glibc malloc (tcmalloc off)' : `glibc malloc (${TCMALLOC} not installed)`);
  }
  return { env, tcmalloc, coretype, note: `PyTorch: ${notes.join('; ')}` };
}
