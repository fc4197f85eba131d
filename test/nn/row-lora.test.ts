// Per-row LoRA adapters (nn/row-lora.ts) on tiny Llama and GPT-2 models: a batch whose rows name the base or
// one of two adapters (different ranks and targets) gives, row by row, the logits of that row run alone through
// the model with its adapter attached as training attaches it (linear()'s own LoRA path); no rows set, nothing
// changes; gradients are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from '../../src/models/config.ts';
import { logits, type CausalLM } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { type LoraOptions, attachLora } from '../../src/nn/lora.ts';
import { type RowAdapter, type RowAdapterModule, withRowAdapters } from '../../src/nn/row-lora.ts';
import { ConfigError } from '../../src/errors.ts';
import { Rng, Tensor, noGrad, scope } from '../../src/tensor/index.ts';
import { createModel } from '../../src/train/model-io.ts';
import { relError } from '../helpers/native.ts';

const LLAMA = {
  model_type: 'llama', vocab_size: 37, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64,
};
const GPT2 = { model_type: 'gpt2', vocab_size: 37, n_embd: 16, n_head: 4, n_layer: 2, n_positions: 32, layer_norm_epsilon: 1e-5 };

/** The model with an adapter attached (seeded A, non-zero B), and the same adapter as a RowAdapter. */
function adapted(raw: Record<string, unknown>, opts: LoraOptions, seed: number): { model: CausalLM; row: RowAdapter } {
  const model = createModel(parseModelConfig(raw, 'tiny'), 3);
  const rng = new Rng(seed);
  const lora = attachLora(model.params, opts, rng, model.config.family === 'gpt2');
  const modules = new Map<string, RowAdapterModule>();
  for (const m of lora.modules.values()) {
    const a = model.params.read(`${m.module}.lora_A.weight`);
    const b = rng.fillUniform(new Float32Array(m.outFeatures * m.rank), -0.5, 0.5);
    model.params.load(`${m.module}.lora_B.weight`, b);
    modules.set(m.module, {
      a: Tensor.from(a, [m.rank, m.inFeatures], 'float32', { persistent: true }),
      scaledB: Tensor.from(b.map((v) => v * m.scale), [m.outFeatures, m.rank], 'float32', { persistent: true }),
    });
  }
  return { model, row: { name: `seed${seed}`, modules } };
}

function forwardLogits(model: CausalLM, ids: Int32Array, B: number, S: number, rows?: (RowAdapter | null)[]): Float32Array {
  return noGrad(() =>
    scope(() => {
      const run = (): Float32Array => logits(model, model.forward(Tensor.from(ids, [B, S], 'int32'), { positions: positionIds(B, S) })).toArray() as Float32Array;
      return rows ? withRowAdapters(rows, run) : run();
    }),
  );
}


for (const [family, raw, narrow] of [['llama', LLAMA, ['q_proj', 'v_proj']], ['gpt2', GPT2, ['c_attn']]] as const) {
  test(`${family}: rows of the base and two adapters in one forward each give their own logits`, () => {
    const base = createModel(parseModelConfig(raw, 'tiny'), 3);
    const one = adapted(raw, { rank: 2, alpha: 4, dropout: 0, target_modules: [...narrow], use_rslora: false }, 1);
    const two = adapted(raw, { rank: 4, alpha: 4, dropout: 0, target_modules: 'all-linear', use_rslora: true }, 2);
    const S = 5;
    const choice = [one.row, null, two.row, one.row, two.row, null];
    const solos = [one.model, base, two.model, one.model, two.model, base];
    const B = choice.length;
    const rng = new Rng(7);
    const ids = Int32Array.from({ length: B * S }, () => rng.int(37));
    const V = base.config.vocabSize;
    const mixed = forwardLogits(base, ids, B, S, choice);
    for (let b = 0; b < B; b++) {
      const alone = forwardLogits(solos[b] as CausalLM, ids.subarray(b * S, (b + 1) * S), 1, S);
      const err = relError(mixed.subarray(b * S * V, (b + 1) * S * V), alone);
      assert.ok(err < 1e-5, `row ${b}: relative error ${err.toExponential(2)}`);
    }
    // The adapters matter, so the comparison above could fail.
    assert.ok(relError(forwardLogits(one.model, ids, B, S), forwardLogits(base, ids, B, S)) > 1e-2);
    // All rows of one adapter (the ungathered path), and no adapter at all.
    assert.ok(relError(forwardLogits(base, ids, B, S, choice.map(() => two.row)), forwardLogits(two.model, ids, B, S)) < 1e-5);
    assert.deepEqual(forwardLogits(base, ids, B, S, choice.map(() => null)), forwardLogits(base, ids, B, S));
    assert.throws(() => withRowAdapters([one.row], () => 0), ConfigError, 'outside noGrad()');
    for (const m of [base, one.model, two.model]) m.release();
    for (const r of [one.row, two.row]) for (const m of r.modules.values()) [m.a, m.scaledB].forEach((t) => t.release());
  });
}
