// LoRA against our own full fine-tuning, interleaved: one process holds both models of a config of DESIGN.md
// (the same base weights: full fine-tuning trains all of them; LoRA freezes them and trains rank-R adapters on
// every linear, alpha 2R) and alternates their training steps (forward, backward, AdamW), so each LoRA step
// has a full step right before it under the same load. On a shared machine the load moves both numbers ±15%
// from one process to the next; the ratio of adjacent steps moves far less. Prints one JSON line:
// {config, rank, pairs, full_tokens_per_s, lora_tokens_per_s, ratio_median, ratios, load_before, load_after}.
// Usage: node --import tsx bench/train/lora-vs-full.ts M [pairs] [--lora R]
import { loadavg } from 'node:os';
import { benchModel } from '../lib/bench-model.ts';
import { Llama } from '../../src/models/llama.ts';
import { attachLora } from '../../src/nn/lora.ts';
import { Rng } from '../../src/tensor/index.ts';
import { AdamW, clipScale, globalGradNorm } from '../../src/train/adamw.ts';
import { lossStep } from '../../src/train/loss-step.ts';
import { median } from '../lib/stats.ts';

const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !(all[i - 1] ?? '').startsWith('--'));
const name = positional[0] ?? 'M';
const pairs = Number(positional[1] ?? 8);
const loraAt = process.argv.indexOf('--lora');
const rank = loraAt >= 0 ? Number(process.argv[loraAt + 1]) : 16;
const { cfg, batch: B, seq: S } = benchModel(name);
const rng = new Rng(1);
const ids = Int32Array.from({ length: B * S }, () => rng.int(cfg.vocabSize));
const labels = Int32Array.from({ length: B * S }, () => rng.int(cfg.vocabSize));

/** One training step of a fresh model (LoRA: base frozen from the start, as `sftkit run` loads it). */
function trainer(lora: boolean): () => number {
  const model = new Llama(cfg, { seed: 0, weights: { frozen: () => lora } });
  if (lora) attachLora(model.params, { rank, alpha: 2 * rank, dropout: 0, target_modules: 'all-linear', use_rslora: false }, new Rng(0), false);
  const opt = new AdamW(model.params.values, model.params.grads, { lr: 1e-4, weightDecay: 0.1 });
  return () => {
    const t0 = performance.now();
    model.params.zeroGrad();
    lossStep(model, { rows: B, ids, targets: labels }, { seqLength: S, normaliser: B * S, dtype: 'float32' });
    opt.update(1e-4, clipScale(globalGradNorm(model.params.grads), 1.0));
    return (performance.now() - t0) / 1000;
  };
}

const loadBefore = loadavg()[0] as number;
const full = trainer(false);
const lora = trainer(true);
full(); // warm-up, each
lora();
const fullTimes: number[] = [];
const loraTimes: number[] = [];
const ratios: number[] = [];
for (let i = 0; i < pairs; i++) {
  const f = full();
  const l = lora();
  fullTimes.push(f);
  loraTimes.push(l);
  ratios.push(f / l);
}
console.log(
  JSON.stringify({
    config: name, rank, pairs, full_tokens_per_s: (B * S) / median(fullTimes), lora_tokens_per_s: (B * S) / median(loraTimes),
    ratio_median: median(ratios), ratios: ratios.map((r) => Number(r.toFixed(3))), load_before: loadBefore, load_after: loadavg()[0],
  }),
);
