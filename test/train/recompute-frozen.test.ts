// Recompute over blocks whose input needs no gradient: a LoRA model (frozen embeddings, adapters inside every
// block) and a full fine-tune with frozen embeddings. The first block's input comes from a frozen embedding, so
// only the block's own trainable weights ask for its backward; with recompute on, the losses and every
// gradient must be bit for bit those of the run without recompute. With LoRA dropout, the first pass draws the
// masks (it stands for the training forward) and backward's replay rewinds the stream to draw the same ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from '../../src/models/config.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { attachLora } from '../../src/nn/lora.ts';
import { activeBackend } from '../../src/backend/select.ts';
import { Rng } from '../../src/tensor/index.ts';
import { lossStep, type MicroBatch } from '../../src/train/loss-step.ts';
import { createModel } from '../../src/train/model-io.ts';

const LLAMA = {
  model_type: 'llama', vocab_size: 41, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64,
};
const GPT2 = { model_type: 'gpt2', vocab_size: 41, n_embd: 16, n_head: 4, n_layer: 2, n_positions: 32, layer_norm_epsilon: 1e-5 };
const S = 8;

function batch(): MicroBatch {
  const rng = new Rng(5);
  const rows = 2;
  return { rows, ids: Int32Array.from({ length: rows * S }, () => rng.int(41)), targets: Int32Array.from({ length: rows * S }, (_, i) => (i % S < 2 ? -100 : rng.int(41))) };
}

type Setup = (m: CausalLM) => void;

/** LoRA r=2 on every linear, B drawn non-zero so that A's gradient is not zero either. */
const lora = (conv1d: boolean, dropout = 0): Setup => (m) => {
  attachLora(m.params, { rank: 2, alpha: 4, dropout, target_modules: 'all-linear', use_rslora: false }, new Rng(3), conv1d);
  const rng = new Rng(9);
  for (const name of m.params.trainableNames) {
    if (name.endsWith('lora_B.weight')) m.params.load(name, rng.fillUniform(new Float32Array(m.params.get(name).size), -0.5, 0.5));
  }
};
const frozenEmbeddings: Setup = (m) => m.params.freeze((n) => /embed_tokens|wte|wpe/.test(n));

function run(config: object, setup: Setup, recompute: boolean): { loss: number; grads: Map<string, Float32Array>; rngAfter: unknown } {
  const m = createModel(parseModelConfig(config, 'tiny'), 11);
  try {
    setup(m);
    m.params.zeroGrad();
    const b = batch();
    // Two steps: the dropout stream must continue from the same place after a recomputed step.
    let loss = 0;
    for (let k = 0; k < 2; k++) loss = lossStep(m, b, { seqLength: S, normaliser: b.targets.filter((t) => t !== -100).length, recompute });
    const grads = new Map(m.params.trainableNames.map((n) => [n, m.params.get(n).grad?.toArray() as Float32Array]));
    return { loss, grads, rngAfter: m.params.lora?.rng.getState() ?? null };
  } finally {
    m.release();
  }
}

const cases: Array<[string, object, Setup]> = [
  ['Llama + LoRA (all linears)', LLAMA, lora(false)],
  ['GPT-2 + LoRA (all linears, Conv1D)', GPT2, lora(true)],
  ['Llama + LoRA with dropout 0.3 (the replay draws the same masks)', LLAMA, lora(false, 0.3)],
  ['GPT-2 + LoRA with dropout 0.3', GPT2, lora(true, 0.3)],
  ['Llama, embeddings frozen', LLAMA, frozenEmbeddings],
  ['GPT-2, embeddings frozen', GPT2, frozenEmbeddings],
];

for (const [what, config, setup] of cases) {
  test(`recompute: ${what} gets the same loss and gradients as without recompute`, () => {
    const plain = run(config, setup, false);
    const rec = run(config, setup, true);
    assert.equal(rec.loss, plain.loss);
    assert.deepEqual(rec.rngAfter, plain.rngAfter, 'the dropout stream ends where it would without recompute');
    assert.ok(plain.grads.size > 0);
    let nonZero = 0;
    for (const [name, g] of plain.grads) {
      const r = rec.grads.get(name);
      assert.ok(g && r, `${name}: a gradient with and without recompute`);
      assert.deepEqual(r, g, name);
      if (g.some((v) => v !== 0)) nonZero++;
    }
    // Every block's weights got a gradient (not only the head's): the bug was blocks skipped under recompute.
    const blockNames = [...plain.grads.keys()].filter((n) => /layers\.1\.|h\.1\./.test(n));
    assert.ok(blockNames.length > 0 && blockNames.every((n) => (plain.grads.get(n) as Float32Array).some((v) => v !== 0)), 'the last block has gradients');
    assert.ok(nonZero > 0);
  });
}

test('recompute holds one block of activations at a time: peak memory grows by the block inputs only, per layer', () => {
  // The native allocator's live-byte peak of one step, at 2 and 6 layers, with and without recompute.
  const be = activeBackend();
  const peak = (layers: number, recompute: boolean): number => {
    const m = createModel(parseModelConfig({ ...LLAMA, hidden_size: 64, intermediate_size: 160, num_hidden_layers: layers, max_position_embeddings: 256 }, 'tiny'), 11);
    try {
      const rows = 2;
      const seq = 128;
      const rng = new Rng(4);
      const ids = Int32Array.from({ length: rows * seq }, () => rng.int(41));
      m.params.zeroGrad();
      const before = be.memStats().liveBytes;
      be.resetPeak();
      lossStep(m, { rows, ids, targets: ids }, { seqLength: seq, normaliser: rows * seq, recompute });
      return be.memStats().peakBytes - before;
    } finally {
      m.release();
    }
  };
  const perLayer = (recompute: boolean): number => (peak(6, recompute) - peak(2, recompute)) / 4;
  const tokens = 2 * 128;
  const input = tokens * 64 * 4; // one block's input, kept for its replay
  const plain = perLayer(false);
  const rec = perLayer(true);
  // Without recompute every block's activations stay (many times its input); with it, its input and little else.
  assert.ok(plain > 8 * input, `without recompute: ${plain} bytes per layer`);
  assert.ok(rec <= 2 * input, `with recompute: ${rec} bytes per layer (a block input is ${input})`);
});
