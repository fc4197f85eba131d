// ZeRO-2 on one process (the MPI runs are in train-dp.test.ts): gradients redirected into small buckets and
// reduce-scattered into the shard equal the .grad accumulation over two micro-batches, no full gradient buffer
// exists meanwhile, and the optimizer's update matches ZeRO-1's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleProcessGroup } from '../../src/distributed/index.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { Rng } from '../../src/tensor/index.ts';
import { lossStep, type MicroBatch } from '../../src/train/loss-step.ts';
import { createModel } from '../../src/train/model-io.ts';
import { ZeroAdamW } from '../../src/train/optimizer.ts';

const MODEL = {
  model_type: 'llama', vocab_size: 41, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
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

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  a.forEach((v, i) => {
    num += (v - (b[i] as number)) ** 2;
    den += (b[i] as number) ** 2;
  });
  return Math.sqrt(num / den);
}

test('stage 2 (small buckets) trains like stage 1 over 3 steps of 2 micro-batches, with no full gradient buffer', () => {
  const pg = new SingleProcessGroup();
  const results: { weights: Float32Array; norms: number[] }[] = [];
  for (const stage of [1, 2] as const) {
    const m = createModel(parseModelConfig(MODEL, 'tiny'), 11, { gradients: stage === 1 });
    // 1 KiB buckets: many buckets, reduced as backward makes them ready.
    const opt = new ZeroAdamW(m.params, pg, opts, stage, 1024);
    const norms: number[] = [];
    try {
      if (stage === 2) {
        assert.ok((opt.sharded?.buckets.length ?? 0) > 5, 'several buckets');
        assert.equal(m.params.hasGradients, false);
        assert.equal(m.params.grads.layout.size, 0);
        assert.equal(m.params.get(m.params.trainableNames[0]!).grad, null, 'built without a gradient buffer');
      }
      for (let s = 0; s < 3; s++) {
        const bs = batches(s + 1);
        opt.zeroGrad();
        for (const b of bs) {
          lossStep(m, b, { seqLength: S, normaliser: trained(bs) });
          opt.microBatchDone();
        }
        for (const name of m.params.trainableNames) assert.equal(stage === 2 ? m.params.get(name).grad : null, null);
        opt.reduceGradients();
        const norm = opt.gradNorm();
        norms.push(norm);
        opt.update(0.01, 1, () => false);
      }
      if (stage === 2) {
        const sh = opt.sharded!;
        // Never more than a few buckets alive: far below the full buffer.
        assert.ok(sh.peakBucketBytes < m.params.values.layout.size * 4, `peak bucket bytes ${sh.peakBucketBytes}`);
        assert.equal(sh.sentElements, 3 * 2 * m.params.values.layout.size);
      }
      results.push({ weights: m.params.values.all.toArray() as Float32Array, norms });
    } finally {
      opt.release();
      if (stage === 2) {
        assert.equal(m.params.hasGradients, false);
        // A later optimizer that needs full gradients makes the buffer again.
        const plain = new ZeroAdamW(m.params, pg, opts, 1);
        assert.equal(m.params.hasGradients, true);
        assert.equal(m.params.get(m.params.trainableNames[0]!).grad?.size, m.params.get(m.params.trainableNames[0]!).size);
        plain.release();
      }
      m.release();
    }
  }
  const [z1, z2] = results as [{ weights: Float32Array; norms: number[] }, { weights: Float32Array; norms: number[] }];
  z1.norms.forEach((n, i) => assert.ok(Math.abs(n - (z2.norms[i] as number)) <= 1e-6 * n, `step ${i}: norm ${z2.norms[i]} vs ${n}`));
  assert.ok(relDiff(z2.weights, z1.weights) <= 1e-6, `weights differ by ${relDiff(z2.weights, z1.weights)}`);
});
