// ZeRO-3 on one process (the MPI runs are in zero3-mpi.test.ts): the weights kept as a shard and gathered layer
// group by layer group as the model reads them train exactly like ZeRO-1 (with and without recompute), at most
// a few groups are gathered at once under recompute, the gradients go through one bucket per group, and
// the full weights come back with finish().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShardedParameters, SingleProcessGroup, groupKey, planGroups } from '../../src/distributed/index.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { Rng, flatLayout } from '../../src/tensor/index.ts';
import { lossStep, type MicroBatch } from '../../src/train/loss-step.ts';
import { createModel } from '../../src/train/model-io.ts';
import { ZeroAdamW } from '../../src/train/optimizer.ts';

const MODEL = {
  model_type: 'llama', vocab_size: 41, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 3,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64,
};
const S = 8;
const opts = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, noDecay: (n: string) => n.includes('norm') };

function batches(seed: number): MicroBatch[] {
  const rng = new Rng(seed);
  return [0, 1].map(() => {
    const ids = Int32Array.from({ length: 2 * S }, () => rng.int(41));
    const targets = Int32Array.from({ length: 2 * S }, (_, i) => (i % S < 2 ? -100 : rng.int(41)));
    return { rows: 2, ids, targets };
  });
}
const trained = (bs: MicroBatch[]): number => bs.reduce((n, b) => n + b.targets.filter((t) => t !== -100).length, 0);

test('layer groups: a layer per group, the embeddings, final norm and lm_head one each; groups tile the buffer', () => {
  assert.equal(groupKey('model.layers.12.self_attn.q_proj.weight'), 'model.layers.12');
  assert.equal(groupKey('transformer.h.3.attn.c_attn.bias'), 'transformer.h.3');
  assert.equal(groupKey('model.embed_tokens.weight'), 'model.embed_tokens');
  assert.equal(groupKey('lm_head.weight'), 'lm_head');
  const layout = flatLayout([
    { name: 'model.embed_tokens.weight', shape: [5, 3] },
    { name: 'model.layers.0.a.weight', shape: [3] },
    { name: 'model.layers.0.b.weight', shape: [2, 3] },
    { name: 'model.layers.1.a.weight', shape: [3] },
    { name: 'model.norm.weight', shape: [3] },
  ]);
  const groups = planGroups(layout);
  assert.deepEqual(groups.map((g) => [g.key, g.names.length]), [['model.embed_tokens', 1], ['model.layers.0', 2], ['model.layers.1', 1], ['model.norm', 1]]);
  assert.equal(groups[0]!.start, 0);
  groups.forEach((g, i) => assert.equal(g.start + g.count, i + 1 < groups.length ? groups[i + 1]!.start : layout.size));
});

for (const recompute of [false, true]) {
  test(`stage 3 trains like stage 1 over 3 steps of 2 micro-batches (recompute ${recompute}), weights never held whole`, () => {
    const pg = new SingleProcessGroup();
    const results: { weights: Float32Array; norms: number[]; losses: number[] }[] = [];
    for (const stage of [1, 3] as const) {
      const m = createModel(parseModelConfig(MODEL, 'tiny'), 11, { gradients: stage === 1 });
      const P = m.params.layout.size;
      const opt = new ZeroAdamW(m.params, pg, opts, stage);
      const norms: number[] = [];
      const losses: number[] = [];
      try {
        if (stage === 3) {
          assert.equal(m.params.sharded, true);
          assert.equal(m.params.values.layout.size, 0, 'no full weight buffer');
          assert.equal(opt.sharded?.buckets.length, opt.weights?.groups.length, 'one gradient bucket per group');
          assert.equal(opt.weights?.groups.length, 3 + 3);
        }
        for (let s = 0; s < 3; s++) {
          const bs = batches(s + 1);
          opt.zeroGrad();
          let sum = 0;
          for (const b of bs) {
            sum += lossStep(m, b, { seqLength: S, normaliser: trained(bs), recompute });
            opt.microBatchDone();
          }
          losses.push(sum);
          opt.reduceGradients();
          const norm = opt.gradNorm();
          norms.push(norm);
          opt.update(0.01, 1, () => false);
        }
        if (stage === 3) {
          const w = opt.weights!;
          // Each micro-batch gathers every group for its forward; with recompute the layers again for backward,
          // but for the last one, still gathered when backward reaches it.
          const layers = MODEL.num_hidden_layers;
          const layerSize = w.groups.find((g) => g.key.includes('.layers.'))!.count;
          assert.equal(w.gathers, 3 * 2 * (w.groups.length + (recompute ? layers - 1 : 0)));
          assert.equal(w.gatheredElements, 3 * 2 * (P + (recompute ? (layers - 1) * layerSize : 0)));
          assert.equal(opt.sharded!.sentElements, 3 * 2 * P);
          const biggest = Math.max(...w.groups.map((g) => g.count)) * 4;
          if (recompute) assert.ok(w.peakGatheredBytes <= 4 * biggest && w.peakGatheredBytes < P * 4, `gathered at once: ${w.peakGatheredBytes} of ${P * 4}`);
          opt.finish();
          assert.equal(m.params.sharded, false);
        }
        results.push({ weights: m.params.values.all.toArray() as Float32Array, norms, losses });
      } finally {
        opt.release();
        m.release();
      }
    }
    const [z1, z3] = results as [(typeof results)[0], (typeof results)[0]];
    // The first step's forward is the same arithmetic; after that the micro-batches' gradients are summed in
    // another order (per bucket after each backward, instead of into one .grad), within float rounding.
    assert.equal(z3.losses[0], z1.losses[0]);
    z1.losses.forEach((l, i) => assert.ok(Math.abs(l - z3.losses[i]!) <= 1e-6 * Math.abs(l), `step ${i}: loss ${z3.losses[i]} vs ${l}`));
    z1.norms.forEach((n, i) => assert.ok(Math.abs(n - z3.norms[i]!) <= 1e-6 * n, `step ${i}: norm ${z3.norms[i]} vs ${n}`));
    let num = 0;
    let den = 0;
    z1.weights.forEach((v, i) => {
      num += (v - z3.weights[i]!) ** 2;
      den += v * v;
    });
    assert.ok(Math.sqrt(num / den) <= 1e-6, `weights differ by ${Math.sqrt(num / den)}`);
    assert.notDeepEqual(z3.weights, createModel(parseModelConfig(MODEL, 'tiny'), 11).params.values.all.toArray(), 'the weights were trained');
  });
}

test('stage 3: read() and load() go through the shard; a save streams every group; after release without finish the model still reads its shard', () => {
  const pg = new SingleProcessGroup();
  const m = createModel(parseModelConfig(MODEL, 'tiny'), 11, { gradients: false });
  const name = 'model.layers.1.mlp.up_proj.weight';
  const before = m.params.read(name);
  const opt = new ZeroAdamW(m.params, pg, opts, 3);
  try {
    assert.deepEqual(m.params.read(name), before);
    const changed = before.map((v, i) => v + i);
    m.params.load(name, changed);
    m.params.beginSave();
    for (const n of m.params.trainableNames) m.params.read(n);
    m.params.endSave();
    assert.deepEqual(m.params.read(name), changed);
    assert.throws(() => m.params.freeze((n) => n === name), /ZeRO-3/);
  } finally {
    opt.release();
  }
  assert.equal(m.params.sharded, true);
  assert.equal(m.params.weight(name).size, before.length);
  m.release();
  assert.throws(() => m.params.weight(name), /released/);
});

test('a model built sharded (WeightOptions.shard) never holds its trainable weights whole, has the same values, and ZeroAdamW adopts its shard', () => {
  const pg = new SingleProcessGroup();
  const config = parseModelConfig(MODEL, 'tiny');
  const plain = createModel(config, 11);
  let made: ShardedParameters | null = null;
  const m = createModel(config, 11, {
    gradients: false,
    shard: { worldSize: 1, make: (layout, backend) => (made = new ShardedParameters({ layout, backend }, pg)) },
  });
  try {
    assert.equal(m.params.sharded, true);
    assert.equal(m.params.values.layout.size, 0);
    assert.equal(m.params.layout.size, plain.params.layout.size);
    for (const n of plain.params.trainableNames) assert.deepEqual(m.params.read(n), plain.params.read(n), n);
    const opt = new ZeroAdamW(m.params, pg, opts, 3);
    assert.equal(opt.weights, made);
    const bs = batches(1);
    opt.zeroGrad();
    for (const b of bs) {
      lossStep(m, b, { seqLength: S, normaliser: trained(bs), recompute: true });
      opt.microBatchDone();
    }
    opt.update(0.01, 1, () => false);
    opt.finish();
    assert.equal(m.params.sharded, false);
    assert.notDeepEqual(m.params.values.all.toArray(), plain.params.values.all.toArray());
    opt.release();
  } finally {
    m.release();
    plain.release();
  }
});

test('stage 3 on GPT-2 (lm_head tied to the token embeddings: one group read at both ends) trains exactly like stage 2', () => {
  const GPT2 = { model_type: 'gpt2', vocab_size: 41, n_embd: 16, n_head: 4, n_layer: 3, n_positions: 32, layer_norm_epsilon: 1e-5 };
  const pg = new SingleProcessGroup();
  const out: Float32Array[] = [];
  // Stage 2 sums the micro-batches' gradients in the same order (per bucket, into the shard): bit for bit.
  for (const stage of [2, 3] as const) {
    const m = createModel(parseModelConfig(GPT2, 'tiny'), 5, { gradients: false });
    const opt = new ZeroAdamW(m.params, pg, opts, stage);
    try {
      if (stage === 3) assert.deepEqual(opt.weights!.groups.map((g) => g.key), ['transformer.wte', 'transformer.wpe', 'transformer.h.0', 'transformer.h.1', 'transformer.h.2', 'transformer.ln_f']);
      for (let s = 0; s < 2; s++) {
        const bs = batches(s + 7);
        opt.zeroGrad();
        for (const b of bs) {
          lossStep(m, b, { seqLength: S, normaliser: trained(bs), recompute: true });
          opt.microBatchDone();
        }
        opt.reduceGradients();
        assert.ok(opt.gradNorm() > 0);
        opt.update(0.01, 1, () => false);
      }
      opt.finish();
      out.push(m.params.values.all.toArray() as Float32Array);
    } finally {
      opt.release();
      m.release();
    }
  }
  assert.deepEqual(out[1], out[0]);
});
