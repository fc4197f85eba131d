// The continuous-batching cache: sequences that enter at different steps (alone and in padded groups), share
// decode steps at their own positions, leave (their row refilled by a move) and survive compaction each get
// the logits of a full forward over their own tokens (Llama with GQA, GPT-2); misuse is a typed error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShapeError } from '../../src/errors.ts';
import { logits } from '../../src/models/model.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { SlotKvCache } from '../../src/models/slot-kv-cache.ts';
import { Tensor, noGrad, scope } from '../../src/tensor/index.ts';
import * as T from '../../src/tensor/index.ts';
import { activeBackend } from '../../src/backend/select.ts';
import { relError } from '../helpers/native.ts';
import { fixtureModel } from '../generate/fixture-model.ts';

/** Logits of the last position of a full forward over `ids`. */
function lastLogits(model: CausalLM, ids: readonly number[]): Float32Array {
  const S = ids.length;
  return noGrad(() => scope(() => logits(model, T.slice(model.forward(Tensor.from(Int32Array.from(ids), [1, S], 'int32'), { positions: positionIds(1, S) }), 1, S - 1, S)).toArray() as Float32Array));
}

/** One cached forward; each row's last-position logits. */
function step(model: CausalLM, cache: SlotKvCache, ids: Int32Array, S: number, positions: Int32Array, segments: Int32Array | null): Float32Array {
  const B = ids.length / S;
  return noGrad(() => scope(() => logits(model, T.slice(model.forward(Tensor.from(ids, [B, S], 'int32'), { positions, segments, cache }), 1, S - 1, S)).toArray() as Float32Array));
}

interface Seq { ids: number[]; row: number }

for (const name of ['llama_gqa', 'gpt2', 'mistral_window', 'qwen2_window'] as const) {
  test(`${name}: sequences joining, leaving and compacted decode like full forwards of their own tokens`, () => {
    const { model } = fixtureModel(name);
    const V = model.config.vocabSize;
    // Capacity 10 columns: the steps below fill them and force a compaction.
    const cache = SlotKvCache.forConfig(model.config, 3, 10);
    const worst = { err: 0 };
    const check = (seq: Seq, got: Float32Array): void => {
      const err = relError(got, lastLogits(model, seq.ids));
      worst.err = Math.max(worst.err, err);
      assert.ok(err <= 1e-5, `${name} row ${seq.row} after ${seq.ids.length} tokens: relative error ${err.toExponential(2)}`);
    };
    const prefill = (seqs: Seq[], row0: number): void => {
      const S = Math.max(...seqs.map((s) => s.ids.length));
      const ids = new Int32Array(seqs.length * S);
      const segs = new Int32Array(seqs.length * S);
      const pos = new Int32Array(seqs.length * S);
      seqs.forEach((s, b) => {
        s.row = row0 + b;
        s.ids.forEach((id, t) => {
          const at = b * S + S - s.ids.length + t;
          ids[at] = id;
          segs[at] = 1;
          pos[at] = t;
        });
      });
      cache.planPrefill(row0, seqs.length, S);
      const padded = seqs.some((s) => s.ids.length !== S);
      const lg = step(model, cache, ids, S, pos, padded ? segs : null);
      seqs.forEach((s, b) => check(s, lg.subarray(b * V, (b + 1) * V)));
    };
    let compactions = 0;
    const decode = (active: Seq[]): void => {
      if (cache.full) {
        cache.compact(active.length);
        compactions++;
      }
      cache.planDecode(active.length);
      const next = active.map((s) => (s.ids.length * 7 + s.row * 3 + 1) % V);
      active.forEach((s, r) => {
        assert.equal(s.row, r);
        s.ids.push(next[r] as number);
      });
      const lg = step(model, cache, Int32Array.from(next), 1, Int32Array.from(active, (s) => s.ids.length - 1), null);
      active.forEach((s, r) => check(s, lg.subarray(r * V, (r + 1) * V)));
    };
    try {
      const a: Seq = { ids: [5, 9, 2], row: -1 };
      prefill([a], 0);
      for (let i = 0; i < 4; i++) decode([a]);
      // Two prompts, one padded, join while a is 7 tokens in (right-aligned against the columns).
      const b: Seq = { ids: [3, 1, 4], row: -1 };
      const c: Seq = { ids: [8, 8], row: -1 };
      prefill([b, c], 1);
      let active = [a, b, c];
      decode(active);
      // a leaves: c moves into row 0.
      cache.moveRow(2, 0);
      c.row = 0;
      active = [c, b];
      for (let i = 0; i < 5; i++) decode(active);
      assert.equal(compactions, 1);
      assert.ok(cache.columns <= cache.capacity);
      assert.equal(cache.count(1), b.ids.length, 'every fed token is cached, once');
      // A longer prompt joining after the compaction pushes the columns out; the others keep decoding.
      const d: Seq = { ids: [2, 7, 1, 8, 2, 8, 1, 8, 2], row: -1 };
      prefill([d], 2);
      decode([c, b, d]);
      assert.ok(worst.err <= 1e-5);
    } finally {
      cache.release();
      model.release();
    }
  });
}

test('slot cache: steps outside the plan are typed errors; the cache returns native memory', () => {
  const { model } = fixtureModel('gpt2');
  const before = activeBackend().memStats().liveBytes;
  const cache = SlotKvCache.forConfig(model.config, 2, 4);
  try {
    assert.throws(() => cache.planPrefill(1, 2, 3), ShapeError);
    assert.throws(() => cache.planPrefill(0, 1, 5), (e: unknown) => e instanceof ShapeError && /exceeds its 4 columns/.test(e.message));
    cache.planPrefill(0, 1, 4);
    assert.throws(() => noGrad(() => scope(() => step(model, cache, Int32Array.from([1, 2, 3]), 3, positionIds(1, 3), null))), ShapeError);
    cache.planPrefill(0, 1, 4);
    step(model, cache, Int32Array.from([1, 2, 3, 4]), 4, positionIds(1, 4), null);
    assert.ok(cache.full);
    assert.throws(() => cache.planDecode(1), (e: unknown) => e instanceof ShapeError && /columns in use/.test(e.message));
  } finally {
    cache.release();
    model.release();
  }
  assert.ok(activeBackend().memStats().liveBytes <= before);
});
