// One side of bench/train: sftkit training steps (forward, backward, AdamW) on random tokens for one
// config of DESIGN.md; prints a JSON line {steps, median_s, tokens_per_s, fwd_tokens_per_s, peak_rss_mb,
// gemm_peak_gflops, bf16_gemm_peak_gflops, bf16_path, …}: the best fp32 and bf16 GEMM rates at training shapes
// in this process (bench/lib/gemm-peak.ts), the denominators of model FLOP utilisation for each dtype.
// `--dtype bfloat16` runs forward and backward under T.autocast (bf16 GEMMs, fp32 everything else).
// `--lora R` freezes the base and trains rank-R LoRA adapters on every linear (alpha 2R): no weight gradients,
// AdamW over the adapters only.
import { benchModel } from '../lib/bench-model.ts';
import { Llama } from '../../src/models/llama.ts';
import { logits } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import * as T from '../../src/tensor/index.ts';
import { Rng, Tensor, noGrad, scope } from '../../src/tensor/index.ts';
import { lossStep } from '../../src/train/loss-step.ts';
import { AdamW, clipScale, globalGradNorm } from '../../src/train/adamw.ts';
import { formatProfile, profileRows, resetProfile, startProfile, stopProfile } from '../../src/backend/profile.ts';
import { measureGemmPeaks } from '../lib/gemm-peak.ts';
import { attachLora } from '../../src/nn/lora.ts';
import { median } from '../lib/stats.ts';

const dtypeAt = process.argv.indexOf('--dtype');
const dtype: T.ComputeDtype = dtypeAt >= 0 && process.argv[dtypeAt + 1] === 'bfloat16' ? 'bfloat16' : 'float32';
const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !(all[i - 1] ?? '').startsWith('--'));
const name = positional[0] ?? 'S';
const steps = Number(positional[1] ?? 5);
const { cfg, batch: B, seq: S } = benchModel(name);
const loraAt = process.argv.indexOf('--lora');
const loraRank = loraAt >= 0 ? Number(process.argv[loraAt + 1]) : 0;
// LoRA: the whole base frozen from the start (as `sftkit run` loads it), so its peak RSS never holds a base gradient.
const model = new Llama(cfg, { seed: 0, weights: { frozen: () => loraRank > 0 } });
if (loraRank > 0) attachLora(model.params, { rank: loraRank, alpha: 2 * loraRank, dropout: 0, target_modules: 'all-linear', use_rslora: false }, new Rng(0), false);
const opt = new AdamW(model.params.values, model.params.grads, { lr: 1e-4, weightDecay: 0.1 });
const rng = new Rng(1);
const ids = Int32Array.from({ length: B * S }, () => rng.int(cfg.vocabSize));
const labels = Int32Array.from({ length: B * S }, () => rng.int(cfg.vocabSize));
const positions = positionIds(B, S);

function step(): void {
  model.params.zeroGrad();
  // Every label is trained: the loss is the mean over B·S tokens (the trainer's own loss step).
  lossStep(model, { rows: B, ids, targets: labels }, { seqLength: S, normaliser: B * S, dtype });
  opt.update(1e-4, clipScale(globalGradNorm(model.params.grads), 1.0));
}

function forward(): void {
  scope(() => T.autocast(dtype, () => noGrad(() => logits(model, model.forward(Tensor.from(ids, [B, S], 'int32'), { positions })).size)));
}

// Measured before the model's first step, in this process and on its threads, for both dtypes whichever runs.
const peaks = measureGemmPeaks();
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
// Every weight the forward pass uses (a LoRA run's frozen base included): model FLOPs count the whole model, so
// a LoRA row's MFU reads against the 6N of full training although it skips the weight gradients.
const counts = model.params.counts();
const params = counts.trainableParams + counts.frozenParams;
console.log(
  JSON.stringify({
    engine: `${dtype === 'bfloat16' ? 'sftkit bf16' : 'sftkit'}${loraRank > 0 ? ` LoRA r${loraRank}` : ''}`, config: name, dtype, params, steps, median_s: med,
    tokens_per_s: (B * S) / med, fwd_tokens_per_s: (B * S) / median(ftimes), peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    gemm_peak_gflops: peaks.float32.gflops, gemm_peak_shape: peaks.float32.shape, fp32_kernel: peaks.fp32Kernel, bf16_gemm_peak_gflops: peaks.bfloat16.gflops,
    bf16_gemm_peak_shape: peaks.bfloat16.shape, bf16_path: peaks.bf16Path, bf16_kernel: peaks.bf16Kernel, has_avx512_bf16: peaks.hasAvx512Bf16, peak_method: peaks.method,
  }),
);
