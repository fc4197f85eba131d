// The memory plan made before loading (issue 16): the weight counts and frozen bytes it derives from config.json
// alone equal those of the model as built (full, freeze, LoRA; float32/bfloat16/int8/nf4 base), and the
// cheapest setting that fits is found in order for the seed's Llama-2-7B (LoRA, then a lower-precision base, with
// recompute), and a run refused before loading says so with that setting and its estimate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { RecordsWriter } from '../../src/data/records.ts';
import { emptyReport } from '../../src/data/report.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { attachLora } from '../../src/nn/lora.ts';
import { Rng } from '../../src/tensor/index.ts';
import { type MemorySettings, cheapestFit, planTrainingMemory, plannedWeights } from '../../src/train/memory-plan.ts';
import { createModel } from '../../src/train/model-io.ts';
import { frozenSet } from '../../src/train/freeze.ts';
import { expectedTensors } from '../../src/models/tensor-table.ts';

const root = join(import.meta.dirname, '..', '..');
const LLAMA = parseModelConfig(
  { model_type: 'llama', vocab_size: 300, hidden_size: 128, intermediate_size: 200, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64 },
  'tiny',
);
const GPT2 = parseModelConfig({ model_type: 'gpt2', vocab_size: 300, n_embd: 128, n_head: 4, n_layer: 2, n_positions: 64, layer_norm_epsilon: 1e-5 }, 'tiny');
const LLAMA_7B = parseModelConfig(JSON.parse(readFileSync(join(root, 'configs', 'llama2', 'llama2_7b.json'), 'utf8')) as Record<string, unknown>, 'llama2_7b.json');

const settings = (over: Partial<MemorySettings> = {}): MemorySettings => ({
  batchSize: 1, seqLength: 16, recompute: false, baseDtype: 'float32', lora: { rank: 0, targets: 'all-linear', dropout: 0 },
  freeze: { include: [], exclude: [] }, worldSize: 1, zeroStage: 0, ...over,
});

for (const [family, config] of [['llama', LLAMA], ['gpt2', GPT2]] as const) {
  for (const dtype of ['float32', 'bfloat16', 'int8', 'nf4'] as const) {
    test(`planned weights equal the built model's (${family}, ${dtype} base): freeze and LoRA`, () => {
      const names = expectedTensors(config).filter((t) => t.optional !== 'tied').map((t) => t.name);
      // freeze: embeddings and the attention's linears
      const freeze = { include: ['embed_tokens', 'wte', 'self_attn', 'attn'], exclude: [] };
      const frozen = frozenSet(names, freeze);
      const m = createModel(config, 0, { frozen: (n) => frozen.has(n), frozenDtype: dtype });
      try {
        assert.deepEqual(plannedWeights(config, settings({ baseDtype: dtype, freeze })).weights, { ...m.params.counts(), frozenMappedBytes: 0 });
      } finally {
        m.release();
      }
      // LoRA r=4 on q/v (Llama) or c_attn (GPT-2): every base weight frozen
      const targets = family === 'llama' ? ['q_proj', 'v_proj'] : ['c_attn'];
      const l = createModel(config, 0, { frozen: () => true, frozenDtype: dtype });
      try {
        attachLora(l.params, { rank: 4, alpha: 8, dropout: 0, target_modules: targets, use_rslora: false }, new Rng(1), family === 'gpt2');
        const plan = plannedWeights(config, settings({ baseDtype: dtype, lora: { rank: 4, targets, dropout: 0 } }));
        assert.deepEqual(plan.weights, { ...l.params.counts(), frozenMappedBytes: 0 });
        assert.deepEqual(plan.lora?.modules, [...(l.params.lora?.modules.values() ?? [])].map((x) => ({ inFeatures: x.inFeatures, outFeatures: x.outFeatures, rank: x.rank, fanInFanOut: x.fanInFanOut })));
      } finally {
        l.release();
      }
    });
  }
}

test('Llama-2-7B: the cheapest setting that fits, in order', () => {
  const GiB = 2 ** 30;
  const full = settings({ batchSize: 2, seqLength: 512 });
  // Full fine-tuning: 6.7e9 parameters × 16 bytes is past any single machine here.
  assert.ok(planTrainingMemory(LLAMA_7B, full).total > 100 * GiB);
  const LORA = 'use lora (lora.rank 16 on all linears: --lora.rank 16 --lora.target_modules all-linear)';
  const fits = (available: number): string => {
    const f = cheapestFit(LLAMA_7B, full, available);
    assert.ok(f && f.estimate.total <= available, `a setting fits in ${available / GiB} GiB`);
    return f.change;
  };
  // 22 GiB: LoRA over a bf16 base with recompute (an fp32 base alone is 25 GiB).
  assert.match(fits(22 * GiB), new RegExp(`^${LORA.replace(/[()]/g, '\\$&')}, set model\\.base_dtype bfloat16, set model\\.recompute true`));
  // 9 GiB: an int8 base (6.3 GiB of weights) comes before a 4-bit one; 6 GiB: only NF4 fits.
  assert.match(fits(9 * GiB), /, set model\.base_dtype int8, set model\.recompute true/);
  assert.match(fits(6 * GiB), /, set model\.base_dtype nf4, set model\.recompute true/);
  // A LoRA run already over bf16 that needs recompute and batch 1.
  const lora = settings({ batchSize: 4, seqLength: 1024, baseDtype: 'bfloat16', lora: { rank: 16, targets: 'all-linear', dropout: 0 } });
  const fit = cheapestFit(LLAMA_7B, lora, 16 * GiB);
  assert.equal(fit?.change, 'set model.recompute true, set runner_config.batch_size 1 (gradient_accumulation_steps 4 keeps the global batch)');
  assert.ok((fit?.estimate.total ?? Infinity) <= 16 * GiB);
  // Nothing fits in 2 GiB.
  assert.equal(cheapestFit(LLAMA_7B, full, 2 * GiB), null);
  // Several ranks: a ZeRO stage first (the training itself unchanged).
  const ranks = cheapestFit(LLAMA_7B, { ...full, worldSize: 8, recompute: true }, 40 * GiB);
  assert.match(ranks?.change ?? '', /^set parallel_config\.zero_stage [123]$/);
});

test('sftkit run refuses a Llama-2-7B full fine-tune before loading a byte, naming the setting that fits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-plan-'));
  try {
    // config.json only: were the weights read, the run would fail on their absence instead.
    const model = join(dir, 'llama2_7b');
    cpSync(join(root, 'configs', 'llama2', 'llama2_7b.json'), join(model, 'config.json'), { recursive: true });
    const records = join(dir, 'records');
    mkdirSync(records);
    const w = new RecordsWriter(records, { seqLength: 512, segments: false });
    for (let r = 0; r < 4; r++) w.push(Int32Array.from({ length: 513 }, (_, i) => 3 + ((i * 31 + r) % 31000)), Int32Array.from({ length: 513 }, (_, i) => 3 + ((i * 31 + r) % 31000)));
    w.finish({ seq_length: 512, dataset_type: 'text', template: null, packed: false, pad_id: 0, ignore_id: -100, tokenizer: { identity: 'x', kind: 'sentencepiece', vocab_size: 32000, bos_id: 1, eos_id: 2 } }, { ...emptyReport(), max_token_id: 31002 });
    const r = spawnSync(process.execPath, [join(root, 'bin', 'sftkit.js'), 'run', '--load_checkpoint', model, '--train_dataset_dir', records, '--output_dir', join(dir, 'out'), '--batch_size', '2'], { cwd: root, encoding: 'utf8' });
    if (freemem() > 120 * 2 ** 30) return; // a machine where it fits: nothing to refuse
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /training needs about \d+\.\d GiB, more than the \d+\.\d GiB available/);
    assert.match(r.stderr, /hint: (use lora .*\(about \d+\.\d GiB\), or pass --force to try anyway|no setting fits)/);
    assert.doesNotMatch(r.stderr, /safetensors|no weights/i);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
