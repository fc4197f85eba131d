// The machine's GEMM peaks, fp32 and bf16, measured in the calling process at the shapes of a training step's
// linears: the denominators of model FLOP utilisation (DESIGN.md), taken where the training runs.
import { BF16_PATH, ISA, host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { bf16GemmPath } from '../../src/tensor/index.ts';

/** C (M, N) = op(A) (M, K) · op(B) (K, N). */
export interface GemmShape { M: number; K: number; N: number; transA: boolean; transB: boolean }

/**
 * A linear y = x Wᵀ over T rows, in → out features, runs three GEMMs a step: forward T×in×out NT, the input
 * gradient T×out×in NN and the weight gradient out×T×in TN (see src/tensor/ops/matmul.ts). Two such linears:
 * 2048 rows of 512 → 2048 (config M's 2048 tokens and width, the shape of the single fp32 peak measured before)
 * and 1024 rows of 768 → 2048 (config L's 1024 tokens, its MLP up-projection).
 */
export const PEAK_SHAPES: readonly GemmShape[] = [
  { M: 2048, K: 512, N: 2048, transA: false, transB: true },
  { M: 2048, K: 2048, N: 512, transA: false, transB: false },
  { M: 2048, K: 2048, N: 512, transA: true, transB: false },
  { M: 1024, K: 768, N: 2048, transA: false, transB: true },
  { M: 1024, K: 2048, N: 768, transA: false, transB: false },
  { M: 2048, K: 1024, N: 768, transA: true, transB: false },
];

export type Bf16PathName = 'native' | 'fallback' | 'emulated' | 'amx' | 'amx-emulated';

export interface DtypePeak {
  gflops: number;
  /** The shape that gave it, e.g. "2048×512×2048 NT". */
  shape: string;
}

export interface GemmPeaks {
  float32: DtypePeak;
  bfloat16: DtypePeak;
  /** The fp32 micro-kernel's ISA, e.g. "AVX-512 fp32 micro-kernel". */
  fp32Kernel: string;
  /** The bf16 GEMM path that ran (binding's getBf16Path), and in words (bf16GemmPath). */
  bf16Path: Bf16PathName;
  bf16Kernel: string;
  hasAvx512Bf16: boolean;
  /** How the peaks were taken, one line for the report. */
  method: string;
}

export const shapeName = (s: GemmShape): string => `${s.M}×${s.K}×${s.N} ${s.transA ? 'T' : 'N'}${s.transB ? 'T' : 'N'}`;

export function bf16PathName(path: number): Bf16PathName {
  if (path === BF16_PATH.amx) return 'amx';
  if (path === BF16_PATH.amxEmulated) return 'amx-emulated';
  if (path === BF16_PATH.native) return 'native';
  if (path === BF16_PATH.emulated) return 'emulated';
  return 'fallback';
}

function randomBuffer(n: number, seed: number): number {
  const data = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = ((x >>> 8) / 16777216) * 2 - 1;
  }
  const h = native.alloc(n * 4, false);
  native.write(h, 0, data);
  return h;
}

/**
 * Best GFLOP/s of one run of the fp32 and of the bf16 GEMM over `shapes`, `runs` timed runs each after `warmup`
 * untimed ones, the two dtypes alternating run by run so that load from other users of the machine falls on both.
 * The best run, not the median: the peak is what the kernel reaches when nothing else interferes.
 */
export function measureGemmPeaks(opts: { shapes?: readonly GemmShape[]; runs?: number; warmup?: number } = {}): GemmPeaks {
  const shapes = opts.shapes ?? PEAK_SHAPES;
  const runs = opts.runs ?? 8;
  const warmup = opts.warmup ?? 2;
  const most = (f: (s: GemmShape) => number): number => Math.max(...shapes.map(f));
  const a = randomBuffer(most((s) => s.M * s.K), 1);
  const b = randomBuffer(most((s) => s.K * s.N), 2);
  const c = native.alloc(most((s) => s.M * s.N) * 4, false);
  const best = { float32: { gflops: 0, shape: '' }, bfloat16: { gflops: 0, shape: '' } };
  try {
    for (const s of shapes) {
      const lda = s.transA ? s.M : s.K;
      const ldb = s.transB ? s.K : s.N;
      for (let r = 0; r < warmup + runs; r++) {
        for (const dtype of ['float32', 'bfloat16'] as const) {
          const t0 = performance.now();
          native.gemm(s.transA, s.transB, s.M, s.N, s.K, 1, a, 0, lda, b, 0, ldb, 0, c, 0, s.N, 1, 0, 0, 0, dtype === 'bfloat16');
          const gflops = (2 * s.M * s.N * s.K) / ((performance.now() - t0) / 1000) / 1e9;
          if (r >= warmup && gflops > best[dtype].gflops) best[dtype] = { gflops, shape: shapeName(s) };
        }
      }
    }
  } finally {
    native.free(a);
    native.free(b);
    native.free(c);
  }
  return {
    ...best,
    fp32Kernel: `${host.getIsa() >= ISA.avx512 ? 'AVX-512' : host.getIsa() >= ISA.avx2 ? 'AVX2' : 'scalar'} fp32 micro-kernel`,
    bf16Path: bf16PathName(host.getBf16Path()),
    bf16Kernel: bf16GemmPath(),
    hasAvx512Bf16: host.hasAvx512Bf16(),
    method: `best single run of ${runs} (after ${warmup} warm-up) at each of ${shapes.map(shapeName).join(', ')}; ${host.getThreads()} threads, fp32 and bf16 alternating`,
  };
}
