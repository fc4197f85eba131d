// bench/train/lora-linear: one LoRA linear (rank 16, fp32 frozen base) forward + backward at the shapes of the
// M and L configs: composed of ops (base GEMM, x·Aᵀ, ·Bᵀ, scale, add; autograd's backward) against the one
// loraLinear op nn/linear.ts calls (scale in the GEMMs' alpha, sums by beta = 1, no out-wide temporaries), and
// the frozen base GEMM alone. Decides whether the fused op pays (docs/LORA.md).
// Usage: node --import tsx bench/train/lora-linear.ts [--reps N]
import { cpus } from 'node:os';
import { attachLora } from '../../src/nn/lora.ts';
import { linear } from '../../src/nn/linear.ts';
import { ParameterSet } from '../../src/nn/parameters.ts';
import { Rng, Tensor, add, backward, matmul, mT, scale, scope } from '../../src/tensor/index.ts';
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
console.log('| config | M×K→N | frozen base alone | LoRA, composed ops | LoRA, loraLinear op | op / composed | x·Aᵀ alone |');
console.log('|---|---|---:|---:|---:|---:|---:|');
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
  const W = p.weight('m.weight');
  const A = p.weight('m.lora_A.weight');
  const B = p.weight('m.lora_B.weight');
  // What nn/linear.ts composed before ops/lora-linear.ts: base GEMM, x·Aᵀ, ·Bᵀ, scale, add (and their backward).
  const composed = time(() =>
    scope(() => {
      p.zeroGrad();
      x.grad = null;
      backward(add(matmul(x, mT(W)), scale(matmul(matmul(x, mT(A)), mT(B)), 2)), g);
    }),
  );
  const fused = time(() =>
    scope(() => {
      p.zeroGrad();
      x.grad = null;
      backward(linear(x, p, 'm'), g);
    }),
  );
  const baseOnly = time(() =>
    scope(() => {
      x.grad = null;
      backward(matmul(x, mT(W)), g);
    }),
  );
  // What a concatenated x·[W;A]ᵀ GEMM could save at most: the separate x·Aᵀ pass over x (forward only).
  const projOnly = time(() => scope(() => void matmul(x, mT(A))));
  console.log(`| ${config} | ${M}×${K}→${N} | ${baseOnly.toFixed(2)} | ${composed.toFixed(2)} | ${fused.toFixed(2)} | ${(fused / composed).toFixed(2)} | ${projOnly.toFixed(2)} |`);
  p.release();
}
