// The one loss step: forward, fused loss and backward with the gradient scale of the global batch; gradients
// accumulate over micro-batches, and a GradTarget takes them instead of .grad (the seam sharded gradients use),
// bit for bit what .grad would have received, through the fused kernels (lm_head, embedding, norms) too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from '../../src/models/config.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { FlatBuffer, Rng, type Tensor, setGradTarget } from '../../src/tensor/index.ts';
import { lossStep, type MicroBatch } from '../../src/train/loss-step.ts';
import { createModel } from '../../src/train/model-io.ts';

const MODEL = {
  model_type: 'llama', vocab_size: 41, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64,
};
const S = 8;

function batches(): MicroBatch[] {
  const rng = new Rng(5);
  return [0, 1].map((k) => {
    const rows = 2;
    const ids = Int32Array.from({ length: rows * S }, () => rng.int(41));
    const targets = Int32Array.from({ length: rows * S }, (_, i) => (i % S < 2 + k ? -100 : rng.int(41)));
    return { rows, ids, targets };
  });
}

function trainedTokens(bs: MicroBatch[]): number {
  return bs.reduce((n, b) => n + b.targets.filter((t) => t !== -100).length, 0);
}

function gradsViaGrad(recompute: boolean): { losses: number[]; grads: Map<string, Float32Array> } {
  const m = createModel(parseModelConfig(MODEL, 'tiny'), 11);
  try {
    const bs = batches();
    m.params.zeroGrad();
    const losses = bs.map((b) => lossStep(m, b, { seqLength: S, normaliser: trainedTokens(bs), recompute }));
    return { losses, grads: new Map(m.params.trainableNames.map((n) => [n, m.params.get(n).grad?.toArray() as Float32Array])) };
  } finally {
    m.release();
  }
}

/** A sink that is not .grad: one separate flat block (as a ZeRO-2 bucket would be), and no .grad at all. */
function gradsViaTarget(m: CausalLM): FlatBuffer {
  const sink = new FlatBuffer(m.params.values.layout);
  for (const name of m.params.trainableNames) {
    const p = m.params.get(name);
    p.grad = null;
    setGradTarget(p, { into: (t: Tensor) => sink.get(t.name) });
  }
  return sink;
}

test('a GradTarget receives exactly the gradients .grad would, with accumulation, with and without recompute', () => {
  for (const recompute of [false, true]) {
    const ref = gradsViaGrad(recompute);
    const m = createModel(parseModelConfig(MODEL, 'tiny'), 11);
    const sink = gradsViaTarget(m);
    try {
      const bs = batches();
      const losses = bs.map((b) => lossStep(m, b, { seqLength: S, normaliser: trainedTokens(bs), recompute }));
      assert.deepEqual(losses, ref.losses);
      for (const name of m.params.trainableNames) {
        assert.equal(m.params.get(name).grad, null, `${name}: no .grad was made`);
        const got = sink.get(name).toArray() as Float32Array;
        const want = ref.grads.get(name) as Float32Array;
        assert.ok(want.some((v) => v !== 0), `${name} has a gradient`);
        assert.deepEqual(got, want, `${name} (recompute ${recompute})`);
      }
    } finally {
      for (const name of m.params.trainableNames) setGradTarget(m.params.get(name), null);
      sink.release();
      m.release();
    }
  }
});

test('the loss step backpropagates the loss sum divided by the global batch: two micro-batches equal one', () => {
  const bs = batches();
  const n = trainedTokens(bs);
  const two = gradsViaGrad(false);
  const m = createModel(parseModelConfig(MODEL, 'tiny'), 11);
  try {
    m.params.zeroGrad();
    const both: MicroBatch = { rows: 4, ids: Int32Array.from([...bs[0]!.ids, ...bs[1]!.ids]), targets: Int32Array.from([...bs[0]!.targets, ...bs[1]!.targets]) };
    const loss = lossStep(m, both, { seqLength: S, normaliser: n });
    assert.ok(Math.abs(loss - (two.losses[0]! + two.losses[1]!)) <= 1e-5 * Math.abs(loss));
    for (const name of m.params.trainableNames) {
      const a = m.params.get(name).grad!.toArray() as Float32Array;
      const b = two.grads.get(name)!;
      let num = 0;
      let den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i]! - b[i]!) ** 2;
        den += b[i]! ** 2;
      }
      assert.ok(Math.sqrt(num / den) < 1e-5, `${name}: rel ${Math.sqrt(num / den)}`);
    }
    // normaliser 0 (no trained token): the loss sum only, no backward.
    m.params.zeroGrad();
    const sum = lossStep(m, bs[0]!, { seqLength: S, normaliser: 0 });
    assert.ok(Number.isFinite(sum));
    assert.ok((m.params.grads.all.toArray() as Float32Array).every((v) => v === 0));
  } finally {
    m.release();
  }
});
