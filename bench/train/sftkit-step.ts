// One side of bench/train: sftkit training steps (forward, backward, AdamW) on random tokens for one
// config of DESIGN.md; prints a JSON line {steps, median_s, tokens_per_s, fwd_tokens_per_s, peak_rss_mb,
// gemm_peak_gflops}, the last being the best fp32 GEMM rate at a training shape in this process, the
// denominator of model FLOP utilisation.
// `--dtype bfloat16` runs forward and backward under T.autocast (bf16 GEMMs, fp32 everything else).
import { readFileSync } from 'node:fs';
import { type LlamaConfig, parseModelConfig } from '../../src/models/config.ts';
import { Llama } from '../../src/models/llama.ts';
import { lossSum, logits } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { native } from '../../src/backend/binding.ts';
import * as T from '../../src/tensor/index.ts';
import { Rng, Tensor, backward, noGrad, scope } from '../../src/tensor/index.ts';
import { AdamW, clipScale, globalGradNorm } from '../../src/train/adamw.ts';
import { formatProfile, profileRows, resetProfile, startProfile, stopProfile } from '../../src/backend/profile.ts';
import { median } from '../lib/stats.ts';

const dtypeAt = process.argv.indexOf('--dtype');
const dtype: T.ComputeDtype = dtypeAt >= 0 && process.argv[dtypeAt + 1] === 'bfloat16' ? 'bfloat16' : 'float32';
const name = process.argv[2] ?? 'S';
const steps = Number(process.argv[3] ?? 5);
const c = (JSON.parse(readFileSync(new URL('./configs.json', import.meta.url), 'utf8')) as Record<string, Record<string, number>>)[name];
if (!c) throw new Error(`unknown config ${name}`);
const cfg = parseModelConfig(
  {
    model_type: 'llama', vocab_size: c['vocab'], hidden_size: c['dim'], intermediate_size: c['ffn'], num_hidden_layers: c['layers'],
    num_attention_heads: c['heads'], num_key_value_heads: c['heads'], max_position_embeddings: c['seq'], rms_norm_eps: 1e-5,
  },
  name,
) as LlamaConfig;
const B = c['batch'] as number;
const S = c['seq'] as number;
const model = new Llama(cfg, { seed: 0 });
const opt = new AdamW(model.params.values, model.params.grads, { lr: 1e-4, weightDecay: 0.1 });
const rng = new Rng(1);
const ids = Int32Array.from({ length: B * S }, () => rng.int(cfg.vocabSize));
const labels = Int32Array.from({ length: B * S }, () => rng.int(cfg.vocabSize));
const positions = positionIds(B, S);

function step(): void {
  model.params.zeroGrad();
  scope(() =>
    T.autocast(dtype, () => {
      const hidden = model.forward(Tensor.from(ids, [B, S], 'int32'), { positions });
      // Every label is trained: the loss scale is known up front, so loss and gradients come in one sweep.
      const { lossSum: sum } = lossSum(model, hidden, Tensor.from(labels, [B, S], 'int32'), { gradScale: 1 / (B * S) });
      backward(T.scale(sum, 1 / (B * S)), undefined, { releaseActivations: true });
    }),
  );
  opt.update(1e-4, clipScale(globalGradNorm(model.params.grads), 1.0));
}

function forward(): void {
  scope(() => T.autocast(dtype, () => noGrad(() => logits(model, model.forward(Tensor.from(ids, [B, S], 'int32'), { positions })).size)));
}

/** Best GFLOP/s of the fp32 GEMM at 2048×512×2048 (NN, NT, TN: the shapes of a linear's forward and backward). */
function gemmPeak(): number {
  const [M, K, N] = [2048, 512, 2048];
  const rng = new Rng(2);
  const a = Tensor.from(rng.fillNormal(new Float32Array(M * K)), [M * K]);
  const b = Tensor.from(rng.fillNormal(new Float32Array(K * N)), [K * N]);
  const out = Tensor.empty([M * N]);
  let best = 0;
  for (const [ta, tb] of [[false, false], [false, true], [true, false]] as const) {
    for (let r = 0; r < 12; r++) {
      const t0 = performance.now();
      native.gemm(ta, tb, M, N, K, 1, a.handle, 0, ta ? M : K, b.handle, 0, tb ? K : N, 0, out.handle, 0, N, 1, 0, 0, 0);
      const s = (performance.now() - t0) / 1000;
      if (r >= 2) best = Math.max(best, (2 * M * N * K) / s / 1e9);
    }
  }
  a.release();
  b.release();
  out.release();
  return best;
}

const peak = gemmPeak();
step(); // warm-up
const times: number[] = [];
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  step();
  times.push((performance.now() - t0) / 1000);
}
forward();
const ftimes: number[] = [];
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  forward();
  ftimes.push((performance.now() - t0) / 1000);
}
const med = median(times);
if (process.argv.includes('--profile')) {
  // A separate pass, so the timing above is free of the profiler's overhead.
  startProfile();
  resetProfile();
  for (let i = 0; i < steps; i++) step();
  stopProfile();
  console.error(`training step by kernel, config ${name}:\n${formatProfile(profileRows(), steps)}`);
}
const params = model.params.values.layout.names.reduce((n, k) => n + model.params.get(k).size, 0);
console.log(
  JSON.stringify({
    engine: dtype === 'bfloat16' ? 'sftkit bf16' : 'sftkit', config: name, ...(dtype === 'bfloat16' ? { gemm: T.bf16GemmPath() } : {}), params, steps, median_s: med, tokens_per_s: (B * S) / med,
    fwd_tokens_per_s: (B * S) / median(ftimes), peak_rss_mb: process.resourceUsage().maxRSS / 1024, gemm_peak_gflops: peak,
  }),
);
