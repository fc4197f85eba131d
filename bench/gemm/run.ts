// GEMM benchmark: GFLOP/s of sftkit's sgemm (through the addon) and of OpenBLAS's cblas_sgemm, same shapes,
// 2 threads each, medians of several runs, printed as a markdown table. Usage: npm run bench:gemm [-- --reps N]
// [--decode | --lora]: --decode times the few-row shapes of KV-cache decoding (x @ Wᵀ of the bench models' linears and
// lm_heads at 1-16 rows) and prints microseconds and the weight bytes streamed per second instead; --lora times a
// rank-16 adapter's narrow GEMMs at the M and L configs' shapes (kernels/simd/gemm_narrow.cc).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { emitFindings } from '../lib/report.ts';
import { exitIfMissing } from '../lib/requirements.ts';
import { median } from '../lib/stats.ts';

exitIfMissing('bench/gemm/run.ts', ['cc', 'openblas']);

const THREADS = 2;
// Untimed runs before each round (thread start-up, page faults, caches): at least 2, and about 4 GFLOP
// of work, so that short GEMMs find both thread pools awake.
function warmups(s: Shape): number {
  return Math.min(50, Math.max(2, Math.ceil(4e9 / (2 * s.M * s.N * s.K))));
}
const ROUND = 3;       // timed runs per round

interface Shape { M: number; K: number; N: number; transA: boolean; transB: boolean }

const SHAPES: Shape[] = [
  { M: 2048, K: 512, N: 2048, transA: false, transB: false },
  { M: 2048, K: 512, N: 2048, transA: false, transB: true },
  { M: 2048, K: 512, N: 2048, transA: true, transB: false },
  { M: 512, K: 512, N: 512, transA: false, transB: false },
  { M: 1024, K: 1024, N: 1024, transA: false, transB: false },
  { M: 2048, K: 2048, N: 2048, transA: false, transB: false },
];

// Decoding shapes: M rows of x against the (N, K) weights of bench/train/configs.json's M and L models (the
// HF linear layout, op(B) = Bᵀ), one NN shape for the other layout, and rows 8 / 16 to place the small-row cut.
const DECODE_SHAPES: Shape[] = [
  ...[1, 4].flatMap((M) => [
    [512, 512], [512, 1376], [1376, 512], [512, 8192], [768, 768], [768, 2048], [2048, 768], [768, 32000],
  ].map(([K, N]) => ({ M, K: K as number, N: N as number, transA: false, transB: true }))),
  { M: 1, K: 768, N: 2048, transA: false, transB: false },
  { M: 4, K: 768, N: 2048, transA: false, transB: false },
  ...[8, 16, 32].map((M) => ({ M, K: 768, N: 2048, transA: false, transB: true })),
];

// A rank-16 LoRA adapter's GEMMs on T tokens of a linear K -> N (bench/train/configs.json's M: T 2048; L: T 1024):
// x·Aᵀ (T×K·K×r, NT), g·B (T×N·N×r, NN), dB = gᵀ·(x·Aᵀ) (N×T·T×r, TN), dA = (g·B)ᵀ·x (r×T·T×K, TN).
const LORA_SHAPES: Shape[] = [
  [2048, 512, 512], [2048, 512, 1376], [2048, 1376, 512], [1024, 768, 768], [1024, 768, 2048], [1024, 2048, 768],
].flatMap(([T, K, N]) => {
  const t = T as number, k = K as number, n = N as number, r = 16;
  return [
    { M: t, K: k, N: r, transA: false, transB: true },
    { M: t, K: n, N: r, transA: false, transB: false },
    { M: n, K: t, N: r, transA: true, transB: false },
    { M: r, K: t, N: k, transA: true, transB: false },
  ];
}).filter((s, i, all) => all.findIndex((o) => o.M === s.M && o.K === s.K && o.N === s.N && o.transA === s.transA && o.transB === s.transB) === i);

function parseReps(argv: string[]): number {
  const i = argv.indexOf('--reps');
  const reps = i >= 0 ? Number(argv[i + 1]) : 15;
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`bench:gemm: --reps must be a positive integer, got ${argv[i + 1]}`);
  return reps;
}

function gflops(s: Shape, seconds: number): number {
  return (2 * s.M * s.N * s.K) / seconds / 1e9;
}

function randomBuffer(n: number, seed: number): number {
  const data = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = (x >>> 8) / 16777216 * 2 - 1;
  }
  const h = native.alloc(n * 4, false);
  native.write(h, 0, data);
  return h;
}

/** Seconds of each timed run of our sgemm at one shape (C = op(A) op(B), beta = 0). */
function timeOurs(s: Shape, reps: number): number[] {
  const a = randomBuffer(s.M * s.K, 1), b = randomBuffer(s.K * s.N, 2), c = randomBuffer(s.M * s.N, 3);
  const lda = s.transA ? s.M : s.K, ldb = s.transB ? s.K : s.N;
  const times: number[] = [];
  try {
    const warm = warmups(s);
    for (let r = 0; r < warm + reps; r++) {
      const t0 = process.hrtime.bigint();
      native.gemm(s.transA, s.transB, s.M, s.N, s.K, 1, a, 0, lda, b, 0, ldb, 0, c, 0, s.N, 1, 0, 0, 0);
      const t = Number(process.hrtime.bigint() - t0) / 1e9;
      if (r >= warm) times.push(t);
    }
  } finally {
    native.free(a);
    native.free(b);
    native.free(c);
  }
  return times;
}

/**
 * OpenBLAS environment: 2 pthreads, no forced L2 size, and its own CPU detection (no forced core type)
 * unless `coretype` is given.
 */
function openblasEnv(coretype: string | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(THREADS), OMP_NUM_THREADS: String(THREADS) };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  delete env.OPENBLAS_VERBOSE;
  if (coretype) env.OPENBLAS_CORETYPE = coretype;
  return env;
}

function runOpenblas(exe: string, args: string[], coretype: string | null): string {
  const r = spawnSync(exe, args, { env: openblasEnv(coretype), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench:gemm: OpenBLAS harness failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

function timeOpenblas(exe: string, s: Shape, reps: number, coretype: string | null): number[] {
  const out = runOpenblas(exe, [s.M, s.K, s.N, s.transA ? 1 : 0, s.transB ? 1 : 0, warmups(s), reps].map(String), coretype);
  return out.split(/\s+/).map(Number);
}

// OpenBLAS core types whose sgemm kernels are AVX-512.
const AVX512_CORES = ['SkylakeX', 'Cooperlake', 'SapphireRapids'];

/**
 * The core type to force, or null to let OpenBLAS detect it. OpenBLAS 0.3.21 does not know every AVX-512
 * CPU (e.g. a KVM guest reporting a generic "Intel Xeon Processor" with a newer model number) and then
 * falls back to SSE3 (Prescott) kernels; on an AVX-512 CPU we force SkylakeX so it runs its AVX-512 kernels.
 */
function chooseCoretype(exe: string): { coretype: string | null; note: string } {
  const detected = runOpenblas(exe, ['--info'], null).split(' | ')[0] ?? '';
  if (AVX512_CORES.includes(detected)) return { coretype: null, note: `detected ${detected}` };
  const flags = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '';
  if (!/\bavx512f\b/.test(flags)) return { coretype: null, note: `detected ${detected} (no AVX-512 on this CPU)` };
  return { coretype: 'SkylakeX', note: `detected ${detected}, not an AVX-512 core: forced OPENBLAS_CORETYPE=SkylakeX` };
}

function cpuModel(): string {
  const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
  return line?.split(':')[1]?.trim() ?? 'unknown CPU';
}

function main(): void {
  const reps = parseReps(process.argv.slice(2));
  const decode = process.argv.includes('--decode');
  const lora = process.argv.includes('--lora');
  const shapes = decode ? DECODE_SHAPES : lora ? LORA_SHAPES : SHAPES;
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-bench-gemm-'));
  try {
    const exe = join(dir, 'openblas-sgemm');
    const src = join(import.meta.dirname, 'openblas.c');
    const cc = spawnSync('cc', ['-O2', '-o', exe, src, '-lopenblas'], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`bench:gemm: cannot build the OpenBLAS harness (needs libopenblas-dev): ${cc.stderr}`);

    host.setThreads(THREADS);
    const isa = ['scalar', 'avx2', 'avx512'][host.getIsa()];
    console.log(`CPU: ${cpuModel()}; sftkit ISA ${isa}, ${host.getThreads()} threads`);
    const { coretype, note } = chooseCoretype(exe);
    console.log(`OpenBLAS: ${runOpenblas(exe, ['--info'], coretype)}, ${THREADS} threads (${note})`);
    console.log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    console.log(`medians (and bests) of ${reps} runs each, in rounds of ${ROUND} alternating the two, each round after >= 2 warm-up runs (~4 GFLOP), beta = 0\n`);
    if (decode) {
      console.log('| M×K×N | op | sftkit µs | OpenBLAS µs | ratio (speed) | sftkit GB/s of B | OpenBLAS GB/s of B |');
    } else {
      console.log('| M×K×N | op | sftkit GFLOP/s | OpenBLAS GFLOP/s | ratio | sftkit best | OpenBLAS best |');
    }
    console.log('|---|---|---:|---:|---:|---:|---:|');
    const ratios: number[] = [];
    for (const s of shapes) {
      // Alternate the two in short rounds so that load from other users of the machine hits both alike.
      const ours: number[] = [];
      const theirs: number[] = [];
      for (let done = 0; done < reps; done += ROUND) {
        const n = Math.min(ROUND, reps - done);
        ours.push(...timeOurs(s, n));
        theirs.push(...timeOpenblas(exe, s, n, coretype));
      }
      const g1 = gflops(s, median(ours)), g2 = gflops(s, median(theirs));
      const b1 = gflops(s, Math.min(...ours)), b2 = gflops(s, Math.min(...theirs));
      ratios.push(g1 / g2);
      const op = `${s.transA ? 'T' : 'N'}${s.transB ? 'T' : 'N'}`;
      if (decode) {
        const t1 = median(ours), t2 = median(theirs), gb = (t: number) => ((4 * s.K * s.N) / t / 1e9).toFixed(1);
        console.log(`| ${s.M}×${s.K}×${s.N} | ${op} | ${(t1 * 1e6).toFixed(0)} | ${(t2 * 1e6).toFixed(0)} | ${(t2 / t1).toFixed(2)} | ${gb(t1)} | ${gb(t2)} |`);
        continue;
      }
      console.log(`| ${s.M}×${s.K}×${s.N} | ${op} | ${g1.toFixed(1)} | ${g2.toFixed(1)} | ${(g1 / g2).toFixed(2)} | ${b1.toFixed(1)} | ${b2.toFixed(1)} |`);
    }
    const geo = Math.exp(ratios.reduce((a, r) => a + Math.log(r), 0) / ratios.length);
    console.log(`\ngeometric mean ratio: ${geo.toFixed(2)}; load average at end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    if (decode || lora) return;
    emitFindings([{ figure: 'fp32 GEMM vs OpenBLAS, geometric mean over the shapes', target: '≥ 1.00×', measured: `${geo.toFixed(2)}×`, met: geo >= 1.0 }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
