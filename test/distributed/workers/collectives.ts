// Worker for distributed tests (run under mpirun): every collective of the MPI process group checked for exact
// values on any world size; prints "ok rank <r>" when all checks pass (an assertion failure aborts the job).
import assert from 'node:assert/strict';
import { initProcessGroup } from '../../../src/distributed/index.ts';
import { Tensor } from '../../../src/tensor/index.ts';

const pg = initProcessGroup();
const { rank, size } = pg;
assert.equal(pg.backend, 'mpi');
assert.equal(size, Number(process.env.OMPI_COMM_WORLD_SIZE));
assert.ok(pg.localRank >= 0 && pg.localRank < pg.localSize);
const ranks = Array.from({ length: size }, (_, r) => r);
const sumOver = (f: (r: number) => number): number => ranks.reduce((a, r) => a + f(r), 0);

// all-reduce, float32 sum and avg (values exact in binary: halves and small integers)
const n = 37;
const value = (r: number, i: number): number => (r + 1) * i + 0.5;
const x = Tensor.from(Array.from({ length: n }, (_, i) => value(rank, i)), [n]);
pg.allReduce(x, 'sum');
assert.deepEqual(Array.from(x.toArray()), Array.from({ length: n }, (_, i) => sumOver((r) => value(r, i))));
const y = Tensor.from(Array.from({ length: n }, (_, i) => value(rank, i) * size), [n]);
pg.allReduce(y, 'avg');
assert.deepEqual(Array.from(y.toArray()), Array.from({ length: n }, (_, i) => sumOver((r) => value(r, i))));

// all-reduce int32 sum and max
const ints = Tensor.from([rank, -rank, 7 * rank + 1], [3], 'int32');
pg.allReduce(ints, 'sum');
assert.deepEqual(Array.from(ints.toArray()), [sumOver((r) => r), -sumOver((r) => r), sumOver((r) => 7 * r + 1)]);
const mx = Tensor.from([rank, -rank], [2], 'int32');
pg.allReduce(mx, 'max');
assert.deepEqual(Array.from(mx.toArray()), [size - 1, 0]);

// numbers in double precision
assert.deepEqual(pg.allReduceNumbers([rank + 0.25, 1e15 + rank]), [sumOver((r) => r + 0.25), sumOver((r) => 1e15 + r)]);
assert.deepEqual(pg.allReduceNumbers([rank], 'max'), [size - 1]);

// reduce-scatter, equal blocks: send[k] = 100 r + k; this rank receives block `rank`
const block = 5;
const send = Tensor.from(Array.from({ length: block * size }, (_, k) => 100 * rank + k), [block * size]);
const recv = Tensor.zeros([block]);
pg.reduceScatter(send, recv);
assert.deepEqual(Array.from(recv.toArray()), Array.from({ length: block }, (_, j) => sumOver((r) => 100 * r + rank * block + j)));

// reduce-scatter, uneven blocks, averaged
const counts = ranks.map((r) => 2 * r + 3);
const total = counts.reduce((a, b) => a + b, 0);
const start = counts.slice(0, rank).reduce((a, b) => a + b, 0);
const send2 = Tensor.from(Array.from({ length: total }, (_, k) => size * (k + rank)), [total]);
const recv2 = Tensor.zeros([counts[rank] as number]);
pg.reduceScatter(send2, recv2, { counts, op: 'avg' });
assert.deepEqual(Array.from(recv2.toArray()), Array.from({ length: counts[rank] as number }, (_, j) => sumOver((r) => start + j + r)));

// all-gather in place, equal and uneven blocks: only this rank's block is set before
const g = Tensor.from(Array.from({ length: 4 * size }, (_, k) => (Math.floor(k / 4) === rank ? k * 3 : -1)), [4 * size]);
pg.allGather(g);
assert.deepEqual(Array.from(g.toArray()), Array.from({ length: 4 * size }, (_, k) => k * 3));
const g2 = Tensor.from(Array.from({ length: total }, (_, k) => (k >= start && k < start + (counts[rank] as number) ? k + 0.5 : -1)), [total]);
pg.allGather(g2, counts);
assert.deepEqual(Array.from(g2.toArray()), Array.from({ length: total }, (_, k) => k + 0.5));

// broadcast from the last rank, over a span of a bigger buffer
const b = Tensor.from(Array.from({ length: 10 }, (_, k) => (rank === size - 1 ? k * k : -k)), [10]);
pg.broadcast({ backend: b.storage.backend, handle: b.handle, byteOffset: 8, count: 6, dtype: 'float32' }, size - 1);
assert.deepEqual(Array.from(b.toArray()), Array.from({ length: 10 }, (_, k) => (k >= 2 && k < 8 ? k * k : rank === size - 1 ? k * k : -k)));

// bad arguments are typed errors, not crashes or hangs (checked before any communication)
assert.throws(() => pg.reduceScatter(send, Tensor.zeros([1]), { counts: [1] }), /block counts/);
assert.throws(() => pg.allGather(Tensor.zeros([3 * size + 1])), /equal blocks/);

pg.barrier();
console.log(`ok rank ${rank}`);
