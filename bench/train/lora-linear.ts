// bench/train/lora-linear: one LoRA linear (rank 16, fp32 frozen base) forward + backward at the shapes of the
// M and L configs, as nn/linear.ts computes it (base GEMM, x·Aᵀ, ·Bᵀ, scale, add; autograd's backward) against
// the same arithmetic as raw GEMMs with the scale folded into alpha and the sums into beta = 1 (what a fused
// LoRA-linear op would run), and the base GEMM alone. Decides whether fusing pays (docs/LORA.md).
// Usage: node --import tsx bench/train/lora-linear.ts [--reps N]
import { cpus } from 'node:os';
import { attachLora } from '../../src/nn/lora.ts';
import { linear } from '../../src/nn/linear.ts';
import { ParameterSet } from '../../src/nn/parameters.ts';
import { Rng, Tensor, backward, scope } from '../../src/tensor/index.ts';
import { median } from '../lib/stats.ts';

const repsAt = process.argv.indexOf('--reps');
const reps = repsAt >= 0 ? Number(process.argv[repsAt + 1]) : 9;
const R = 16;
const SHAPES: { config: string; M: number; K: number; N: number }[] = [
  { config: 'M', M: 2048, K: 512, N: 512 },
  { config: 'M', M: 2048, K: 512, N: 1376 },
  { config: 'M', M: 2048, K: 1376, N: 512 },
  { config: 'L', M: 1024, K: 768, N: 768 },
  { config: 'L', M: 1024, K: 768, N: 2048 },
  { config: 'L', M: 1024, K: 2048, N: 768 },
];

function time(fn: () => void): number {
  fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}

console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores), SFTKIT_THREADS=${process.env['SFTKIT_THREADS'] ?? '(default)'}, median of ${reps}; rank ${R}; forward + backward (dx, dA, dB) in ms`);
console.log('| config | M×K→N | base only | LoRA as autograd ops | LoRA as fused GEMMs | fused / ops |');
console.log('|---|---|---:|---:|---:|---:|');
for (const { config, M, K, N } of SHAPES) {
  const rng = new Rng(1);
  const p = new ParameterSet([{ name: 'm.weight', shape: [N, K], init: { kind: 'normal', std: 0.02 } }], rng, { frozen: () => true });
  attachLora(p, { rank: R, alpha: 2 * R, dropout: 0, target_modules: 'all-linear', use_rslora: false }, rng, false);
  p.load('m.lora_B.weight', rng.fillNormal(new Float32Array(N * R), 0, 0.02));
  const xData = rng.fillNormal(new Float32Array(M * K), 0, 1);
  const gData = rng.fillNormal(new Float32Array(M * N), 0, 1);
  const x = Tensor.from(xData, [M, K]);
  x.requiresGrad = true;
  const g = Tensor.from(gData, [M, N]);
  const ops = time(() =>
    scope(() => {
      p.zeroGrad();
      x.grad = null;
      backward(linear(x, p, 'm'), g);
    }),
  );
  const baseOnly = time(() =>
    scope(() => {
      x.grad = null;
      const lora = p.lora;
      p.lora = null;
      try {
        backward(linear(x, p, 'm'), g);
      } finally {
        p.lora = lora;
      }
    }),
  );
  // The fused op's arithmetic: y = x·Wᵀ; xa = x·Aᵀ; y += s·xa·Bᵀ; dB = s·gᵀ·xa; dxa = s·g·B; dA = dxaᵀ·x; dx = g·W; dx += dxa·A.
  const W = p.weight('m.weight');
  const A = p.weight('m.lora_A.weight');
  const B = p.weight('m.lora_B.weight');
  const be = x.backend;
  const s = 2;
  const fused = time(() =>
    scope(() => {
      const y = Tensor.empty([M, N]);
      const xa = Tensor.empty([M, R]);
      const dxa = Tensor.empty([M, R]);
      const dA = Tensor.empty([R, K]);
      const dB = Tensor.empty([N, R]);
      const dx = Tensor.empty([M, K]);
      const gemm = (ta: boolean, tb: boolean, m: number, n: number, k: number, alpha: number, a: Tensor, lda: number, b: Tensor, ldb: number, beta: number, c: Tensor, ldc: number): void =>
        be.gemm(ta, tb, m, n, k, alpha, a.handle, a.byteOffset, lda, b.handle, b.byteOffset, ldb, beta, c.handle, c.byteOffset, ldc, 1, 0, 0, 0, false);
      gemm(false, true, M, N, K, 1, x, K, W, K, 0, y, N);
      gemm(false, true, M, R, K, 1, x, K, A, K, 0, xa, R);
      gemm(false, true, M, N, R, s, xa, R, B, R, 1, y, N);
      gemm(true, false, N, R, M, s, g, N, xa, R, 0, dB, R);
      gemm(false, false, M, R, N, s, g, N, B, R, 0, dxa, R);
      gemm(true, false, R, K, M, 1, dxa, R, x, K, 0, dA, K);
      gemm(false, false, M, K, N, 1, g, N, W, K, 0, dx, K);
      gemm(false, false, M, K, R, 1, dxa, R, A, K, 1, dx, K);
    }),
  );
  console.log(`| ${config} | ${M}×${K}→${N} | ${baseOnly.toFixed(2)} | ${ops.toFixed(2)} | ${fused.toFixed(2)} | ${(fused / ops).toFixed(2)} |`);
  p.release();
}
