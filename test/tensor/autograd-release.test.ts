// Backward's memory: gradients straight into .grad, intermediate gradients freed as they are consumed, and
// releaseActivations freeing the forward's activations during backward, all without changing a bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { activeBackend } from '../../src/backend/select.ts';
import { type LlamaConfig, parseModelConfig } from '../../src/models/config.ts';
import { Llama } from '../../src/models/llama.ts';
import { lossSum } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor, backward, scope } from '../../src/tensor/index.ts';

const [B, S, V] = [2, 16, 96];

function tinyLlama(): Llama {
  const cfg = parseModelConfig(
    {
      model_type: 'llama', vocab_size: V, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 3,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: S, rms_norm_eps: 1e-5,
    },
    'tiny',
  ) as LlamaConfig;
  return new Llama(cfg, { seed: 3 });
}

/** One forward + backward; returns the loss, every gradient's bits, and live native bytes after backward. */
function run(model: Llama, opts: { releaseActivations?: boolean; recompute?: boolean }): { loss: number; grads: Uint32Array; live: number } {
  const ids = Int32Array.from({ length: B * S }, (_, i) => (i * 37 + 5) % V);
  const labels = Int32Array.from({ length: B * S }, (_, i) => (i % 5 === 0 ? -100 : (i * 11 + 1) % V));
  model.params.zeroGrad();
  let live = 0;
  const loss = scope(() => {
    const hidden = model.forward(Tensor.from(ids, [B, S], 'int32'), { positions: positionIds(B, S), recompute: opts.recompute ?? false });
    const { lossSum: sum, count } = lossSum(model, hidden, Tensor.from(labels, [B, S], 'int32'));
    const value = sum.item() / count;
    backward(T.scale(sum, 1 / count), undefined, { releaseActivations: opts.releaseActivations ?? false });
    live = activeBackend().memStats().liveBytes;
    return value;
  });
  const grads = new Uint32Array((model.params.grads.all.toArray() as Float32Array).buffer);
  return { loss, grads, live };
}

test('releaseActivations frees activations during backward and changes no gradient bit', () => {
  const model = tinyLlama();
  try {
    run(model, {}); // warm-up: the RoPE tables are made once
    const base = activeBackend().memStats().liveBytes;
    const kept = run(model, {});
    const freed = run(model, { releaseActivations: true });
    const recomputed = run(model, { recompute: true, releaseActivations: true });
    assert.equal(freed.loss, kept.loss);
    assert.deepEqual(freed.grads, kept.grads);
    assert.deepEqual(recomputed.grads, kept.grads);
    assert.ok(kept.grads.some((x) => x !== 0));
    // Kept: every activation and every consumed gradient is still alive at the end of backward.
    assert.ok(freed.live - base < (kept.live - base) / 3, `live bytes after backward: ${freed.live - base} freed vs ${kept.live - base} kept`);
    assert.equal(activeBackend().memStats().liveBytes, base, 'the step scope frees the rest');
  } finally {
    model.release();
  }
});

test('fused rules accumulate into an existing .grad (two backward passes give twice the gradient)', () => {
  const model = tinyLlama();
  try {
    const once = run(model, {});
    const onceF = new Float32Array(once.grads.buffer.slice(0));
    // A second pass without zeroGrad in between: every gradient (embedding, norms, lm_head included) doubles.
    const ids = Int32Array.from({ length: B * S }, (_, i) => (i * 37 + 5) % V);
    const labels = Int32Array.from({ length: B * S }, (_, i) => (i % 5 === 0 ? -100 : (i * 11 + 1) % V));
    scope(() => {
      const hidden = model.forward(Tensor.from(ids, [B, S], 'int32'), { positions: positionIds(B, S) });
      const { lossSum: sum, count } = lossSum(model, hidden, Tensor.from(labels, [B, S], 'int32'));
      backward(T.scale(sum, 1 / count));
    });
    const twice = model.params.grads.all.toArray() as Float32Array;
    for (const name of ['model.embed_tokens.weight', 'model.norm.weight', 'model.layers.1.input_layernorm.weight', 'lm_head.weight']) {
      const g = model.params.grads.get(name);
      const off = g.offset;
      for (let i = 0; i < g.size; i++) assert.equal(twice[off + i], 2 * (onceF[off + i] as number), `${name}[${i}]`);
    }
  } finally {
    model.release();
  }
});

test('steady-state steps with releaseActivations take no new memory from the OS', () => {
  const model = tinyLlama();
  try {
    run(model, { releaseActivations: true });
    run(model, { releaseActivations: true });
    const { osAllocs, liveBytes } = activeBackend().memStats();
    for (let i = 0; i < 3; i++) run(model, { releaseActivations: true });
    assert.equal(activeBackend().memStats().osAllocs, osAllocs, 'blocks freed mid-step are reused from the cache');
    assert.equal(activeBackend().memStats().liveBytes, liveBytes);
  } finally {
    model.release();
  }
});
