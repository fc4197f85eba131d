// Distributed pieces that need no MPI: the single-process group, shard ranges, gradient buckets, and
// ShardedAdamW on one process matching plain AdamW exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nativeBackend as native } from '../../src/backend/native.ts';
import {
  GradientBuckets,
  ShardedAdamW,
  SingleProcessGroup,
  initProcessGroup,
  launchedWorldSize,
  planBuckets,
  shardCounts,
  shardRange,
  tensorsInShard,
} from '../../src/distributed/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { FlatBuffer, Tensor } from '../../src/tensor/index.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { gradsOf, initialParams, testLayout } from './workers/layout.ts';

test('the single-process group: collectives are the identity, reduce-scatter copies the block', () => {
  const pg = new SingleProcessGroup();
  assert.deepEqual([pg.rank, pg.size, pg.localRank, pg.localSize], [0, 1, 0, 1]);
  const x = Tensor.from([1, 2, 3], [3]);
  pg.allReduce(x, 'avg');
  pg.allGather(x);
  pg.broadcast(x, 0);
  assert.deepEqual(Array.from(x.toArray()), [1, 2, 3]);
  const out = Tensor.zeros([3]);
  pg.reduceScatter(x, out);
  assert.deepEqual(Array.from(out.toArray()), [1, 2, 3]);
  assert.deepEqual(pg.allReduceNumbers([1.5, 2]), [1.5, 2]);
  assert.throws(() => pg.broadcast(x, 1), /root 1/);
  const square = Tensor.zeros([2, 2]);
  assert.throws(() => pg.allReduce(new Tensor(square.storage, [2, 2], [1, 2], 0, 'float32')), /contiguous/);
});

test('launcher detection and the process group of a plain process', () => {
  assert.equal(launchedWorldSize({}), null);
  assert.equal(launchedWorldSize({ OMPI_COMM_WORLD_SIZE: '4' }), 4);
  assert.equal(launchedWorldSize({ PMIX_RANK: '0', SLURM_NTASKS: '8' }), 8);
  assert.equal(launchedWorldSize({ PMI_SIZE: 'x' }), null);
  if (launchedWorldSize() !== null) return; // the test itself runs under a launcher
  assert.throws(() => initProcessGroup({ worldSize: 2 }), (e: unknown) => e instanceof ConfigError && /2 processes/.test(e.message));
  const pg = initProcessGroup();
  assert.equal(pg.backend, 'single');
  assert.equal(initProcessGroup(), pg);
});

test('shards: aligned, in order, covering the buffer exactly, at any world size', () => {
  const layout = testLayout();
  assert.equal(layout.size, 336);
  assert.deepEqual(shardCounts(layout, 2), [176, 160]);
  assert.deepEqual(shardRange(layout, 1, 2), { start: 176, count: 160 });
  for (const size of [1, 2, 3, 5, 8, 64]) {
    let at = 0;
    for (let r = 0; r < size; r++) {
      const s = shardRange(layout, r, size);
      assert.equal(s.start % 16, 0);
      if (s.count > 0) assert.equal(s.start, at);
      at += s.count;
    }
    assert.equal(at, layout.size, `world ${size}`);
  }
  // the 2-rank boundary (176) cuts layers.0.mlp.weight (elements 128..192)
  assert.deepEqual(tensorsInShard(layout, shardRange(layout, 1, 2))[0], { name: 'layers.0.mlp.weight', start: 176, count: 16 });
  assert.throws(() => shardRange(layout, 2, 2), /rank 2/);
});

test('gradient buckets tile the flat buffer in backward order', () => {
  const layout = testLayout();
  for (const bytes of [1, 100, 400, 1 << 20]) {
    const buckets = planBuckets(layout, bytes);
    let end = layout.size;
    for (const b of buckets) {
      assert.equal(b.start + b.count, end);
      end = b.start;
    }
    assert.equal(end, 0);
    assert.deepEqual(buckets.flatMap((b) => b.names), [...layout.names].reverse());
  }
  assert.equal(planBuckets(layout, 1 << 20).length, 1);
  assert.equal(planBuckets(layout, 1).length, layout.names.length);
  const grads = new FlatBuffer(layout);
  const b = new GradientBuckets(grads, new SingleProcessGroup(), { bucketBytes: 64 });
  assert.throws(() => b.markReady('nope'), /no tensor named nope/);
  grads.release();
});

test('ShardedAdamW on one process equals AdamW bit for bit', () => {
  const layout = testLayout();
  const opts = { lr: 0.01, weightDecay: 0.1, noDecay: (n: string) => n.includes('norm') };
  const make = (): [FlatBuffer, FlatBuffer] => {
    const p = new FlatBuffer(layout);
    native.write(p.storage.handle, 0, initialParams(layout));
    return [p, new FlatBuffer(layout)];
  };
  const [p1, g1] = make();
  const [p2, g2] = make();
  const zero = new ShardedAdamW(p1, g1, new SingleProcessGroup(), opts);
  const plain = new AdamW(p2, g2, opts);
  assert.deepEqual(zero.shard, { start: 0, count: layout.size });
  for (let s = 0; s < 3; s++) {
    native.write(g1.storage.handle, 0, gradsOf(layout, 0, s));
    native.write(g2.storage.handle, 0, gradsOf(layout, 0, s));
    zero.reduceGradients();
    zero.update(opts.lr, 0.5, (n) => n === 'frozen.weight');
    plain.update(opts.lr, 0.5, (n) => n === 'frozen.weight');
  }
  assert.deepEqual(p1.all.toArray(), p2.all.toArray());
  assert.deepEqual(zero.readState().m, plain.m.all.toArray());
  const state = zero.readState();
  assert.throws(() => zero.loadState({ ...state, m: new Float32Array(3) }), /shard of 336/);
  for (const b of [p1, g1, p2, g2]) b.release();
  zero.release();
  plain.release();
});
