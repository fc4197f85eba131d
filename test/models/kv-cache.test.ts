// KV-cache decoding gives the logits of a full forward pass over the whole sequence (Llama with GQA, GPT-2),
// also for left-padded rows masked by segment ids, and refuses misuse with typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, ShapeError } from '../../src/errors.ts';
import { KvCache } from '../../src/models/kv-cache.ts';
import { logits } from '../../src/models/model.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { Tensor, noGrad, scope } from '../../src/tensor/index.ts';
import { relError } from '../helpers/native.ts';
import { fixtureModel } from '../generate/fixture-model.ts';

/** Logits (B, S, V) of one forward pass over ids (B, S). */
function fullLogits(model: CausalLM, ids: number[][]): Float32Array {
  const B = ids.length;
  const S = (ids[0] as number[]).length;
  return noGrad(() => scope(() => logits(model, model.forward(Tensor.from(ids.flat(), [B, S], 'int32'), { positions: positionIds(B, S) })).toArray() as Float32Array));
}

/** Logits (B, S, V) decoding ids with a cache: a prefill of `prefill` tokens, then one token per step. */
function cachedLogits(model: CausalLM, ids: number[][], prefill: number): Float32Array {
  const B = ids.length;
  const S = (ids[0] as number[]).length;
  const V = model.config.vocabSize;
  const cache = KvCache.forConfig(model.config, B, S + 3);
  const out = new Float32Array(B * S * V);
  try {
    for (let start = 0; start < S; ) {
      const n = start === 0 ? prefill : 1;
      const step = ids.flatMap((row) => row.slice(start, start + n));
      const lg = noGrad(() => scope(() => logits(model, model.forward(Tensor.from(step, [B, n], 'int32'), { positions: positionIds(B, n, { offset: start }), cache })).toArray() as Float32Array));
      for (let b = 0; b < B; b++) out.set(lg.subarray(b * n * V, (b + 1) * n * V), (b * S + start) * V);
      start += n;
    }
    assert.equal(cache.length, S);
  } finally {
    cache.release();
  }
  return out;
}

// mistral_window, qwen2_window: sliding windows of 4 and 3 over 9 tokens, so decoding goes past the window.
for (const name of ['llama_gqa', 'gpt2', 'qwen2_tied', 'mistral_window', 'qwen2_window'] as const) {
  test(`${name}: decoding token by token with a KV cache gives the full forward's logits`, () => {
    const { model, meta } = fixtureModel(name);
    try {
      const ids = meta.ids;
      const full = fullLogits(model, ids);
      for (const prefill of [1, 4]) {
        const err = relError(cachedLogits(model, ids, prefill), full);
        assert.ok(err <= 1e-5, `prefill ${prefill}: relative error ${err.toExponential(2)}`);
      }
    } finally {
      model.release();
    }
  });
}

test('llama_gqa: a left-padded row masked by segment ids decodes like the unpadded row', () => {
  const { model, meta } = fixtureModel('llama_gqa');
  const cache = KvCache.forConfig(model.config, 2, 16);
  try {
    const row = (meta.ids[0] as number[]).slice(0, 7);
    const V = model.config.vocabSize;
    const alone = fullLogits(model, [row]);
    // Row 0: 3 pads (segment 0) then the prompt's first 4 tokens; row 1: another 7-token prompt.
    const pad = 0;
    const ids = [pad, pad, pad, ...row.slice(0, 4), ...(meta.ids[1] as number[]).slice(0, 7)];
    const segs = Int32Array.from([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    const positions = positionIds(2, 7, { segments: segs });
    const got: Float32Array[] = [];
    noGrad(() => scope(() => {
      const lg = logits(model, model.forward(Tensor.from(ids, [2, 7], 'int32'), { positions, segments: segs, cache })).toArray() as Float32Array;
      got.push(lg.subarray(3 * V, 7 * V));
    }));
    for (let t = 4; t < 7; t++) {
      noGrad(() => scope(() => {
        const step = [row[t] as number, 5];
        const lg = logits(model, model.forward(Tensor.from(step, [2, 1], 'int32'), { positions: Int32Array.from([t, t + 3]), segments: Int32Array.from([1, 1]), cache })).toArray() as Float32Array;
        got.push(lg.slice(0, V));
      }));
    }
    const flat = new Float32Array(7 * V);
    let at = 0;
    for (const g of got) {
      flat.set(g, at);
      at += g.length;
    }
    const err = relError(flat, alone);
    assert.ok(err <= 1e-5, `relative error ${err.toExponential(2)}`);
  } finally {
    cache.release();
    model.release();
  }
});

test('KV cache: overflow, wrong batch and use with gradients are typed errors', () => {
  const { model } = fixtureModel('gpt2');
  const cache = KvCache.forConfig(model.config, 1, 4);
  try {
    const fwd = (n: number, B = 1): unknown => model.forward(Tensor.from(new Array(B * n).fill(1), [B, n], 'int32'), { positions: positionIds(B, n, { offset: cache.length }), cache });
    assert.throws(() => scope(() => fwd(2)), ConfigError);
    noGrad(() => scope(() => fwd(3)));
    assert.throws(() => noGrad(() => scope(() => fwd(2))), (e: unknown) => e instanceof ShapeError && /exceed its 4 rows/.test(e.message));
    assert.throws(() => noGrad(() => scope(() => fwd(1, 2))), ShapeError);
  } finally {
    cache.release();
    model.release();
  }
});
