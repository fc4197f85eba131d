// Worker for distributed tests (mpirun -np 2 or 4): ZeRO-3 (weights sharded, gathered by layer group; argv[2]
// 'recompute' turns activation recompute on) on a tiny llama, each rank 2 micro-batches of its own, 5 steps
// with clipping, against one process running plain AdamW over every rank's micro-batches (1 rank × N batch).
// Checks that no rank ever held the whole weights at once under recompute. Prints "ok rank <r> <rel>".
import assert from 'node:assert/strict';
import { mpi } from '../../../src/backend/collectives.ts';
import { SingleProcessGroup, initProcessGroup } from '../../../src/distributed/index.ts';
import { parseModelConfig } from '../../../src/models/config.ts';
import { Rng } from '../../../src/tensor/index.ts';
import { clipScale } from '../../../src/train/adamw.ts';
import { lossStep, type MicroBatch } from '../../../src/train/loss-step.ts';
import { createModel } from '../../../src/train/model-io.ts';
import { ReplicatedAdamW, type TrainOptimizer, ZeroAdamW } from '../../../src/train/optimizer.ts';

const pg = initProcessGroup();
const MODEL = {
  model_type: 'llama', vocab_size: 41, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 4,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64,
};
const S = 8;
const recompute = process.argv[2] === 'recompute';
const opts = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, noDecay: (n: string) => n.includes('norm') };

/** Rank r's 2 micro-batches of step s (targets partly masked, differently per rank). */
function batches(r: number, s: number): MicroBatch[] {
  const rng = new Rng(1000 * s + r + 1);
  return [0, 1].map((k) => {
    const ids = Int32Array.from({ length: 2 * S }, () => rng.int(41));
    const targets = Int32Array.from({ length: 2 * S }, (_, i) => (i % S < 1 + ((r + k) % 3) ? -100 : rng.int(41)));
    return { rows: 2, ids, targets };
  });
}
const trained = (bs: MicroBatch[]): number => bs.reduce((n, b) => n + b.targets.filter((t) => t !== -100).length, 0);

function train(opt: TrainOptimizer, model: ReturnType<typeof createModel>, group: { allReduceNumbers(v: number[]): number[] }, mine: (s: number) => MicroBatch[]): { losses: number[] } {
  const losses: number[] = [];
  for (let s = 0; s < 5; s++) {
    const bs = mine(s);
    const n = group.allReduceNumbers([trained(bs)])[0] as number;
    opt.zeroGrad();
    let sum = 0;
    for (const b of bs) {
      sum += lossStep(model, b, { seqLength: S, normaliser: n, recompute });
      opt.microBatchDone();
    }
    losses.push((group.allReduceNumbers([sum])[0] as number) / n);
    opt.reduceGradients();
    opt.update(opts.lr, clipScale(opt.gradNorm(), 0.5), (name) => name.endsWith('layers.0.input_layernorm.weight'));
  }
  return { losses };
}

const model = createModel(parseModelConfig(MODEL, 'tiny'), 11);
// Without recompute also reduce-scatter in chunks of 1 KiB (each group's bucket is cut up).
const zero = new ZeroAdamW(model.params, pg, opts, 3, recompute ? undefined : 1024);
const P = model.params.layout.size;
assert.equal(model.params.values.layout.size, 0, 'no full weight buffer');
const got = train(zero, model, pg, (s) => batches(pg.rank, s));
const w = zero.weights!;
// The collectives wrapper counted every byte ZeRO-3 handed to MPI: the group gathers and the bucket reduce-scatters.
const traffic = mpi.traffic();
assert.equal(traffic.allGather.bytes, w.gatheredElements * 4);
assert.equal(traffic.allGather.calls, w.gathers);
assert.equal(traffic.reduceScatter.bytes, zero.sharded!.sentElements * 4);
if (!recompute) assert.ok(traffic.reduceScatter.calls > 5 * 2 * w.groups.length, `${traffic.reduceScatter.calls} reduce-scatters: the buckets were not cut up`);
if (recompute) assert.ok(w.peakGatheredBytes < P * 4, `gathered at once: ${w.peakGatheredBytes} of ${P * 4}`);
assert.ok(zero.sharded!.peakBucketBytes < P * 4);
// Every micro-batch gathers every group at least once and reduce-scatters every element once.
assert.ok(w.gatheredElements >= 5 * 2 * P);
assert.equal(zero.sharded!.sentElements, 5 * 2 * P);
zero.finish();

const refModel = createModel(parseModelConfig(MODEL, 'tiny'), 11);
const ref = new ReplicatedAdamW(refModel.params, new SingleProcessGroup(), opts);
const want = train(ref, refModel, new SingleProcessGroup(), (s) => Array.from({ length: pg.size }, (_, r) => batches(r, s)).flat());

got.losses.forEach((l, i) => assert.ok(Math.abs(l - (want.losses[i] as number)) <= 1e-6 * Math.abs(l), `step ${i}: loss ${l} vs ${want.losses[i]}`));
const a = model.params.values.all.toArray() as Float32Array;
const b = refModel.params.values.all.toArray() as Float32Array;
let num = 0;
let den = 0;
a.forEach((v, i) => {
  num += (v - (b[i] as number)) ** 2;
  den += (b[i] as number) ** 2;
});
const rel = Math.sqrt(num / den);
assert.ok(rel <= 1e-6, `weights: relative error ${rel}`);
const checksum = Array.from(a).reduce((acc, v, i) => acc + v * (i + 1), 0);
assert.equal(pg.allReduceNumbers([checksum], 'min')[0], pg.allReduceNumbers([checksum], 'max')[0]);
zero.release();
ref.release();
console.log(`ok rank ${pg.rank} ${rel}`);
