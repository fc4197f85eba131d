// Worker for distributed tests (run under mpirun -np 2): ZeRO-1. Five steps of ShardedAdamW (summed gradients,
// clipping, weight decay with exemptions, a frozen tensor) must give the parameters of plain AdamW on one
// process fed the sum of every rank's gradients; the gradients' reduce-scatter in many small chunks equals the
// one over the whole buffer. Prints "ok rank <r> <relative error>".
import assert from 'node:assert/strict';
import { nativeBackend as native } from '../../../src/backend/native.ts';
import { ShardedAdamW, initProcessGroup, reduceScatterGradients, shardRange } from '../../../src/distributed/index.ts';
import { FlatBuffer } from '../../../src/tensor/index.ts';
import { AdamW, clipScale, globalGradNorm } from '../../../src/train/adamw.ts';
import { gradsOf, initialParams, testLayout } from './layout.ts';

const pg = initProcessGroup();
const layout = testLayout();
const opts = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, noDecay: (n: string) => n.includes('norm') };
const frozen = (n: string): boolean => n === 'frozen.weight';
const maxNorm = 0.5;

// the sharded run: each rank feeds its own gradients
const params = new FlatBuffer(layout);
const grads = new FlatBuffer(layout);
native.write(params.storage.handle, 0, initialParams(layout));
const zero = new ShardedAdamW(params, grads, pg, { ...opts, gradOp: 'sum' });
assert.deepEqual(zero.shard, shardRange(layout, pg.rank, pg.size));
assert.ok(zero.shard.count < layout.size && zero.shard.start % 16 === 0);

// the reference: one process, the summed gradients, plain AdamW
const refParams = new FlatBuffer(layout);
const refGrads = new FlatBuffer(layout);
native.write(refParams.storage.handle, 0, initialParams(layout));
const ref = new AdamW(refParams, refGrads, opts);

for (let s = 0; s < 5; s++) {
  native.write(grads.storage.handle, 0, gradsOf(layout, pg.rank, s));
  zero.reduceGradients();
  const norm = zero.gradNorm();
  zero.update(opts.lr, clipScale(norm, maxNorm), frozen);

  const sum = new Float32Array(layout.size);
  for (let r = 0; r < pg.size; r++) gradsOf(layout, r, s).forEach((v, i) => (sum[i] = (sum[i] as number) + v));
  native.write(refGrads.storage.handle, 0, sum);
  const refNorm = globalGradNorm(refGrads);
  assert.ok(Math.abs(norm - refNorm) <= 1e-6 * refNorm, `step ${s}: norm ${norm} vs ${refNorm}`);
  ref.update(opts.lr, clipScale(refNorm, maxNorm), frozen);
}

const got = params.all.toArray();
const want = refParams.all.toArray();
let num = 0;
let den = 0;
got.forEach((v, i) => {
  num += (v - (want[i] as number)) ** 2;
  den += (want[i] as number) ** 2;
});
const rel = Math.sqrt(num / den);
assert.ok(rel <= 1e-6, `relative error ${rel}`);
// the frozen tensor is untouched; every rank holds the same parameters
const fz = params.get('frozen.weight').toArray();
const init = initialParams(layout);
assert.deepEqual(Array.from(fz), Array.from(init.subarray(layout.offsets[5] as number, (layout.offsets[5] as number) + 10)));
const checksum = Array.from(got).reduce((a, v, i) => a + v * (i + 1), 0);
const [lo, hi] = [pg.allReduceNumbers([checksum], 'min')[0], pg.allReduceNumbers([checksum], 'max')[0]];
assert.equal(lo, hi);
// the reduce-scatter in small chunks equals the whole-buffer one
native.write(grads.storage.handle, 0, gradsOf(layout, pg.rank, 7));
const shardSpan = (st: { handle: number }) => ({ backend: native, handle: st.handle, byteOffset: 0, count: zero.shard.count, dtype: 'float32' as const });
const whole = new FlatBuffer(layout);
const chunked = new FlatBuffer(layout);
reduceScatterGradients(grads, pg, shardSpan(whole.storage), 'sum', 1 << 30);
const w = whole.all.toArray().subarray(0, zero.shard.count);
// 64 bytes: chunks of 16 floats, each inside one shard; 192 bytes: 48 floats, some across a shard boundary.
for (const bytes of [64, 192]) {
  reduceScatterGradients(grads, pg, shardSpan(chunked.storage), 'avg', bytes);
  const c = chunked.all.toArray().subarray(0, zero.shard.count);
  w.forEach((v, i) => assert.ok(Math.abs(v / pg.size - (c[i] as number)) <= 1e-6 * Math.abs(v), `chunks of ${bytes} B: at ${i}: ${c[i]} vs ${v / pg.size}`));
}
assert.ok(w.some((v) => v !== 0));
// moments are sized to the shard
assert.equal(zero.readState().m.length, zero.shard.count);
console.log(`ok rank ${pg.rank} ${rel}`);
