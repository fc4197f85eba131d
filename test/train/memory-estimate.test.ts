// The memory estimate's arithmetic: each kind from its own formula (trainable 16 bytes per weight, frozen at
// its dtype, ZeRO-1 dividing the moments, recompute keeping one block), so a change to one part shows here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from '../../src/models/config.ts';
import { RUNTIME_BYTES, estimateTrainingMemory, formatMemoryEstimate, suggestZeroStage } from '../../src/train/memory-estimate.ts';

const CFG = parseModelConfig(
  { model_type: 'llama', vocab_size: 1000, hidden_size: 64, intermediate_size: 160, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128 },
  'test',
);

test('the estimate counts trainable, optimizer, frozen, activations, workspace and runtime by their formulas', () => {
  const weights = { trainableParams: 1000, frozenParams: 5000, frozenBytes: 10000, frozenMappedBytes: 0 };
  const e = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: false });
  const tokens = 64;
  const kv = 2 * 16;
  const perLayer = 9 * 64 + 2 * kv + 3 * 160;
  assert.equal(e.trainable, 8000);
  assert.equal(e.optimizer, 8000);
  assert.equal(e.frozen, 10000);
  assert.equal(e.activations, (tokens * 3 * perLayer + tokens * (3 * 160 + 2 * 64)) * 4);
  assert.equal(e.workspace, tokens * 64 * 3 * 4 + tokens * 1000 * 4);
  assert.equal(e.runtime, RUNTIME_BYTES);
  assert.equal(e.total, e.trainable + e.optimizer + e.frozen + e.activations + e.workspace + e.runtime);
  // An fp32 base reaches the addon through JavaScript buffers: the largest weight's host copy (the embeddings,
  // 1000 x 64 floats) is counted until V8 collects it; a bf16 (above) or file-mapped base has none.
  const fp32 = estimateTrainingMemory({ config: CFG, weights: { ...weights, frozenBytes: 20000 }, batchSize: 2, seqLength: 32, recompute: false });
  assert.equal(fp32.runtime, RUNTIME_BYTES + 1000 * 64 * 4);
  const mapped = estimateTrainingMemory({ config: CFG, weights: { ...weights, frozenBytes: 20000, frozenMappedBytes: 20000 }, batchSize: 2, seqLength: 32, recompute: false });
  assert.equal(mapped.runtime, RUNTIME_BYTES);
  // ZeRO-1 over 4 ranks divides the moments only.
  const z = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: false, worldSize: 4, optimizerShard: true });
  assert.equal(z.optimizer, 2000);
  assert.equal(z.trainable, 8000);
  // Recompute keeps each block's input and one block.
  const r = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: true });
  assert.equal(r.activations, (tokens * (3 * 64 + perLayer) + tokens * (3 * 160 + 2 * 64)) * 4);
  // The loss block is capped at 32 MiB.
  const big = estimateTrainingMemory({ config: { ...CFG, vocabSize: 1 << 20 }, weights, batchSize: 2, seqLength: 32, recompute: false });
  assert.equal(big.workspace, tokens * 64 * 3 * 4 + 32 * 2 ** 20);
  assert.match(formatMemoryEstimate(e), /^estimated peak memory: .* GiB = trainable .* \+ optimizer .* \+ frozen .* \+ activations/);
});

test('a LoRA run: adapters are the trainable weights (with their moments), the base is frozen, adapter activations add up', () => {
  // Llama CFG, rank 8 on q_proj and down_proj of each of 3 layers: A (8, in) + B (out, 8).
  const mods = Array.from({ length: 3 }, () => [
    { inFeatures: 64, outFeatures: 64, rank: 8 },
    { inFeatures: 160, outFeatures: 64, rank: 8 },
  ]).flat();
  const adapterParams = mods.reduce((n, m) => n + m.rank * (m.inFeatures + m.outFeatures), 0);
  assert.equal(adapterParams, 3 * (8 * 128 + 8 * 224));
  const base = 1000 * 64 * 2 + 3 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 160 + 2 * 64) + 64;
  const weights = { trainableParams: adapterParams, frozenParams: base, frozenBytes: base * 2, frozenMappedBytes: 0 };
  const plain = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: false });
  const e = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: false, lora: { modules: mods, dropout: 0 } });
  const tokens = 64;
  assert.equal(e.trainable, adapterParams * 8);
  assert.equal(e.optimizer, adapterParams * 8);
  assert.equal(e.frozen, base * 2);
  // The loraLinear op keeps x·Aᵀ only (the adapter's term goes into the base's output).
  assert.equal(e.activations - plain.activations, tokens * 6 * 8 * 4);
  const d = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: false, lora: { modules: mods, dropout: 0.1 } });
  // With dropout the op keeps the dropped input too (the mask is regenerated from its keys in backward).
  assert.equal(d.activations - plain.activations, tokens * 3 * ((8 + 64) + (8 + 160)) * 4);
  const r = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: true, lora: { modules: mods, dropout: 0 } });
  const rPlain = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: true });
  assert.equal(r.activations - rPlain.activations, (tokens * 6 * 8 * 4) / 3);
  // GPT-2's Conv1D adapters are composed of ops: their out-wide delta, before and after the scale, stays too.
  const conv = estimateTrainingMemory({ config: CFG, weights, batchSize: 2, seqLength: 32, recompute: false, lora: { modules: mods.map((m) => ({ ...m, fanInFanOut: true })), dropout: 0 } });
  assert.equal(conv.activations - plain.activations, tokens * 6 * (8 + 2 * 64) * 4);
});

test('ZeRO-2 divides the gradients too (plus two buckets in flight); the suggested stage is the lowest that fits', () => {
  const P = 100 * 2 ** 20;
  const weights = { trainableParams: P, frozenParams: 0, frozenBytes: 0, frozenMappedBytes: 0 };
  const base = { config: CFG, weights, batchSize: 2, seqLength: 32, recompute: false, worldSize: 4 };
  const s0 = estimateTrainingMemory({ ...base, zeroStage: 0 });
  const s1 = estimateTrainingMemory({ ...base, zeroStage: 1 });
  const s2 = estimateTrainingMemory({ ...base, zeroStage: 2 });
  assert.deepEqual([s0.trainable, s0.optimizer], [8 * P, 8 * P]);
  assert.deepEqual([s1.trainable, s1.optimizer], [8 * P, 2 * P]);
  assert.deepEqual([s2.trainable, s2.optimizer], [4 * P + P + 50 * 2 ** 20, 2 * P]);
  assert.equal(estimateTrainingMemory({ ...base, zeroStage: 2, bucketBytes: 2 ** 20 }).trainable, 4 * P + P + 2 * 2 ** 20);
  assert.deepEqual(estimateTrainingMemory({ ...base, optimizerShard: true }), s1);
  assert.equal(suggestZeroStage(base, s0.total)?.stage, 0);
  assert.equal(suggestZeroStage(base, s0.total - 1)?.stage, 1);
  assert.equal(suggestZeroStage(base, s1.total - 1)?.stage, 2);
  assert.equal(suggestZeroStage(base, s2.total)?.estimate.total, s2.total);
  assert.equal(suggestZeroStage(base, s2.total - 1), null);
});

test('ZeRO-3 divides the weights too, plus the gathered groups: with recompute two layers and the embeddings, without it every layer', () => {
  const deep = parseModelConfig(
    { model_type: 'llama', vocab_size: 1000, hidden_size: 64, intermediate_size: 160, num_hidden_layers: 24, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128 },
    'test',
  );
  const P = 100 * 2 ** 20;
  const weights = { trainableParams: P, frozenParams: 0, frozenBytes: 0, frozenMappedBytes: 0 };
  const base = { config: deep, weights, batchSize: 2, seqLength: 32, recompute: true, worldSize: 8 };
  const vocab = 1000 * 64;
  const layer = (P - 2 * vocab) / 24;
  const s2 = estimateTrainingMemory({ ...base, zeroStage: 2 });
  const s3 = estimateTrainingMemory({ ...base, zeroStage: 3 });
  assert.equal(s3.optimizer, P);
  assert.equal(s3.trainable, (4 * P) / 8 + (2 * vocab + 2 * layer) * 4 + (4 * P) / 8 + 2 * layer * 4);
  assert.ok(s3.total < s2.total);
  assert.equal(suggestZeroStage(base, s2.total - 1)?.stage, 3);
  assert.equal(suggestZeroStage(base, s3.total - 1), null);
  // Without recompute the graph keeps every layer gathered: no better than stage 2.
  const plain = { ...base, recompute: false };
  const n3 = estimateTrainingMemory({ ...plain, zeroStage: 3 });
  assert.equal(n3.trainable, (4 * P) / 8 + 4 * P + (4 * P) / 8 + 2 * layer * 4);
  assert.ok(n3.total > estimateTrainingMemory({ ...plain, zeroStage: 2 }).total);
});
