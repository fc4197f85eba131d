// Worker for distributed tests (run under mpirun): bucketed gradient all-reduce equals the sum (or average)
// of every rank's gradients, whether reduced at the end or bucket by bucket as tensors become ready in a
// different order on each rank. Prints "ok rank <r>".
import assert from 'node:assert/strict';
import { GradientBuckets, allReduceGradients, initProcessGroup, planBuckets } from '../../../src/distributed/index.ts';
import { nativeBackend as native } from '../../../src/backend/native.ts';
import { FlatBuffer } from '../../../src/tensor/index.ts';
import { gradsOf, testLayout } from './layout.ts';

const pg = initProcessGroup();
const layout = testLayout();
const grads = new FlatBuffer(layout);
const ranks = Array.from({ length: pg.size }, (_, r) => r);
const expectedSum = (s: number): number[] => {
  const all = ranks.map((r) => gradsOf(layout, r, s));
  return Array.from({ length: layout.size }, (_, i) => all.reduce((a, g) => a + (g[i] as number), 0));
};
const read = (): number[] => Array.from(grads.all.toArray());

const load = (s: number): void => native.write(grads.storage.handle, 0, gradsOf(layout, pg.rank, s));

// at the end of backward, small buckets (many collectives), summed
assert.ok(planBuckets(layout, 100).length >= 4);
load(0);
allReduceGradients(grads, pg, { bucketBytes: 100, op: 'sum' });
assert.deepEqual(read(), expectedSum(0));

// bucket by bucket as tensors become ready: rank 0 in backward order, the others in a rotated order
load(1);
const buckets = new GradientBuckets(grads, pg, { bucketBytes: 200, op: 'avg' });
const order = [...layout.names].reverse();
const rotated = pg.rank === 0 ? order : [...order.slice(pg.rank % order.length), ...order.slice(0, pg.rank % order.length)];
for (const name of rotated) buckets.markReady(name);
buckets.finish();
assert.deepEqual(read(), expectedSum(1).map((v) => Math.fround(Math.fround(v) * Math.fround(1 / pg.size))));

// reusable for the next step; unmarked tensors are reduced by finish()
load(2);
buckets.markReady(order[0] as string);
buckets.finish();
assert.deepEqual(read(), expectedSum(2).map((v) => Math.fround(Math.fround(v) * Math.fround(1 / pg.size))));

pg.barrier();
console.log(`ok rank ${pg.rank}`);
