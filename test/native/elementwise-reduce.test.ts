// Reductions over first/middle/last axes, softmax and log-softmax with backward, argmax, top-k and sumsq:
// every ISA path against float64 references, SIMD against naive, and determinism at 2 threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REDUCE_OP } from '../../src/backend/compute.ts';
import { host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, readF32, readI32, relError, randomF32, isaPaths, withIsa, ODD_SIZES, withBuffers } from '../helpers/native.ts';

/** Runs fn at the given pool size, restoring the previous size afterwards. */
function withThreads<T>(n: number, fn: () => T): T {
  const before = host.getThreads();
  host.setThreads(n);
  try {
    return fn();
  } finally {
    host.setThreads(before);
  }
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.length === ub.length && ua.every((v, i) => v === ub[i]);
}

/** float64 reference of x (outer, dim, inner) reduced over dim; max also gives its first index. */
function reduceRef(op: keyof typeof REDUCE_OP, x: Float32Array, outer: number, dim: number, inner: number) {
  const y = new Float64Array(outer * inner);
  const idx = new Int32Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = op === 'max' ? -Infinity : 0;
      let at = 0;
      for (let d = 0; d < dim; d++) {
        const v = x[(o * dim + d) * inner + i] as number;
        if (op === 'max') {
          if (v > acc || (Number.isNaN(v) && !Number.isNaN(acc))) {
            acc = v;
            at = d;
          }
        } else {
          acc += v;
        }
      }
      y[o * inner + i] = op === 'mean' ? acc / dim : acc;
      idx[o * inner + i] = at;
    }
  }
  return { y, idx };
}

interface ReduceShape {
  axis: string;
  outer: number;
  dim: number;
  inner: number;
}

function reduceShapes(): ReduceShape[] {
  const shapes: ReduceShape[] = [];
  for (const n of ODD_SIZES) {
    shapes.push({ axis: 'last', outer: 7, dim: n, inner: 1 });
    shapes.push({ axis: 'first', outer: 1, dim: 7, inner: n });
    shapes.push({ axis: 'middle', outer: 3, dim: n, inner: 65 });
  }
  shapes.push({ axis: 'last', outer: 65, dim: 257, inner: 1 });
  shapes.push({ axis: 'first', outer: 1, dim: 63, inner: 1031 });   // more than one inner tile
  shapes.push({ axis: 'all', outer: 1, dim: 70_001, inner: 1 });    // the fixed-chunk path
  shapes.push({ axis: 'middle', outer: 257, dim: 1, inner: 7 });
  return shapes;
}

test('reduce sum/mean/max over first, middle and last axes on every ISA path', () => {
  for (const s of reduceShapes()) {
    const nin = s.outer * s.dim * s.inner;
    const nout = s.outer * s.inner;
    withBuffers((keep) => {
      const x = randomF32(nin, nin + s.dim, -2, 2);
      const hx = keep(toNative(x));
      const hy = keep(native.alloc(nout * 4, false));
      const hi = keep(native.alloc(nout * 4, false));
      for (const op of ['sum', 'mean', 'max'] as const) {
        const ref = reduceRef(op, x, s.outer, s.dim, s.inner);
        let naive: Float32Array | null = null;
        for (const isa of isaPaths()) {
          withIsa(isa.level, () => {
            const what = `${op} over ${s.axis} axis (${s.outer},${s.dim},${s.inner}) on ${isa.name}`;
            native.reduce(REDUCE_OP[op], hx, 0, hy, 0, op === 'max' ? hi : 0, 0, s.outer, s.dim, s.inner);
            const y = readF32(hy, nout);
            // Float sums of n terms: allow ~sqrt(n) ulps against the float64 sum.
            const tol = op === 'max' ? 0 : 1e-7 * Math.max(1, Math.sqrt(s.dim));
            assert.ok(relError(y, ref.y) <= tol, `${what}: error ${relError(y, ref.y)}`);
            if (op === 'max') assert.deepEqual(readI32(hi, nout), ref.idx, `${what}: argmax indices`);
            if (naive) assert.ok(relError(y, naive) <= tol, `${what}: SIMD vs naive`);
            else naive = y;
          });
        }
      }
    });
  }
});

test('reduce max: first index among ties, NaN wins and propagates', () => {
  // (outer 1, dim 19, inner 1) and the same data as (1, 19, 1) columns of an inner-3 layout.
  const row = [1, 5, 2, 5, -1, 5, 0, 3, 4, 5, 1, 2, 5, 0, 1, 2, 3, 4, 5];
  const nanRow = [1, 5, NaN, 5, NaN, 7, 0, 3, 4, 5, 1, 2, 5, 0, 1, 2, 3, 4, 5];
  withBuffers((keep) => {
    for (const isa of isaPaths()) {
      withIsa(isa.level, () => {
        for (const [data, value, at] of [[row, 5, 1], [nanRow, NaN, 2]] as const) {
          const hx = keep(toNative(Float32Array.from(data)));
          const hy = keep(native.alloc(4, false));
          const hi = keep(native.alloc(4, false));
          native.reduce(REDUCE_OP.max, hx, 0, hy, 0, hi, 0, 1, data.length, 1);
          assert.deepEqual([readF32(hy, 1)[0], readI32(hi, 1)[0]], [value, at], `row on ${isa.name}`);
          // Same values down the reduced axis of a (1, 19, 3) tensor.
          const cols = new Float32Array(data.length * 3);
          data.forEach((v, d) => cols.fill(v, d * 3, d * 3 + 3));
          const hc = keep(toNative(cols));
          const hy3 = keep(native.alloc(12, false));
          const hi3 = keep(native.alloc(12, false));
          native.reduce(REDUCE_OP.max, hc, 0, hy3, 0, hi3, 0, 1, data.length, 3);
          assert.deepEqual(Array.from(readF32(hy3, 3)), [value, value, value], `columns on ${isa.name}`);
          assert.deepEqual(Array.from(readI32(hi3, 3)), [at, at, at], `column indices on ${isa.name}`);
        }
      });
    }
  });
});

test('reduce and sumsq are bit-identical run to run at 2 threads; the full reduction at any thread count', () => {
  const n = 300_021;  // = 1031 * 291
  withBuffers((keep) => {
    const x = randomF32(n, 77, -3, 3);
    const hx = keep(toNative(x));
    const hy = keep(native.alloc(n * 4, false));
    const run = (outer: number, dim: number, inner: number) => {
      native.reduce(REDUCE_OP.sum, hx, 0, hy, 0, 0, 0, outer, dim, inner);
      return readF32(hy, outer * inner);
    };
    for (const isa of isaPaths()) {
      withIsa(isa.level, () => {
        const [full2, rows2, cols2, sq2a, sq2b] = withThreads(2, () => {
          const a = run(1, n, 1);
          assert.ok(sameBits(a, run(1, n, 1)), `full sum repeat on ${isa.name}`);
          const rows = run(1031, 291, 1);
          assert.ok(sameBits(rows, run(1031, 291, 1)), `row sums repeat on ${isa.name}`);
          const cols = run(1, 291, 1031);
          assert.ok(sameBits(cols, run(1, 291, 1031)), `column sums repeat on ${isa.name}`);
          return [a, rows, cols, native.sumsq(hx, 0, n), native.sumsq(hx, 0, n)] as const;
        });
        assert.equal(sq2a, sq2b, `sumsq repeat on ${isa.name}`);
        const ref = Array.from(x).reduce((s, v) => s + v * v, 0);
        assert.ok(Math.abs(sq2a - ref) <= 1e-12 * ref, `sumsq ${sq2a} vs ${ref} on ${isa.name}`);
        // Fixed chunks and one thread per output: the same bits at 1 thread too.
        withThreads(1, () => {
          assert.ok(sameBits(full2, run(1, n, 1)), `full sum 1 vs 2 threads on ${isa.name}`);
          assert.ok(sameBits(rows2, run(1031, 291, 1)), `row sums 1 vs 2 threads on ${isa.name}`);
          assert.ok(sameBits(cols2, run(1, 291, 1031)), `column sums 1 vs 2 threads on ${isa.name}`);
        });
      });
    }
  });
});

test('sumsq matches a float64 sum on odd sizes on every ISA path', () => {
  for (const n of [0, ...ODD_SIZES, 20_001]) {
    withBuffers((keep) => {
      const x = randomF32(n, n + 9, -5, 5);
      const hx = keep(toNative(x));
      const ref = Array.from(x).reduce((s, v) => s + v * v, 0);
      for (const isa of isaPaths()) {
        withIsa(isa.level, () => {
          const got = native.sumsq(hx, 0, n);
          assert.ok(Math.abs(got - ref) <= 1e-13 * ref, `sumsq n=${n} on ${isa.name}: ${got} vs ${ref}`);
        });
      }
    });
  }
});

function softmaxRef(x: Float32Array, rows: number, cols: number, log: boolean): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const m = Math.max(...row);
    const s = row.reduce((acc, v) => acc + Math.exp(v - m), 0);
    row.forEach((v, c) => {
      y[r * cols + c] = log ? v - m - Math.log(s) : Math.exp(v - m) / s;
    });
  }
  return y;
}

function softmaxBwdRef(y: Float32Array, dy: Float32Array, rows: number, cols: number, log: boolean): Float64Array {
  const dx = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += log ? (dy[r * cols + c] as number) : (dy[r * cols + c] as number) * (y[r * cols + c] as number);
    for (let c = 0; c < cols; c++) {
      const yi = y[r * cols + c] as number;
      const gi = dy[r * cols + c] as number;
      dx[r * cols + c] = log ? gi - Math.exp(yi) * s : yi * (gi - s);
    }
  }
  return dx;
}

test('softmax and log-softmax forward and backward on every ISA path', () => {
  for (const cols of [...ODD_SIZES, 4099]) {
    const rows = cols > 1000 ? 9 : 5;
    const n = rows * cols;
    withBuffers((keep) => {
      const x = randomF32(n, cols, -6, 6);
      x.fill(1000, 0, Math.min(cols, 3));  // a row with large logits: max subtraction must keep it finite
      const dy = randomF32(n, cols + 1);
      const hx = keep(toNative(x));
      const hdy = keep(toNative(dy));
      const hy = keep(native.alloc(n * 4, false));
      const hdx = keep(native.alloc(n * 4, false));
      for (const log of [false, true]) {
        const ref = softmaxRef(x, rows, cols, log);
        let naive: Float32Array[] | null = null;
        for (const isa of isaPaths()) {
          withIsa(isa.level, () => {
            const what = `${log ? 'log-softmax' : 'softmax'} (${rows},${cols}) on ${isa.name}`;
            native.softmax(hx, 0, hy, 0, rows, cols, log);
            const y = readF32(hy, n);
            assert.ok(relError(y, ref) <= 1e-6, `${what}: forward error ${relError(y, ref)}`);
            native.softmaxBackward(hy, 0, hdy, 0, hdx, 0, rows, cols, log);
            const dx = readF32(hdx, n);
            const dref = softmaxBwdRef(y, dy, rows, cols, log);
            assert.ok(relError(dx, dref) <= 1e-5, `${what}: backward error ${relError(dx, dref)}`);
            if (naive) {
              assert.ok(relError(y, naive[0] as Float32Array) <= 1e-6, `${what}: SIMD vs naive forward`);
              assert.ok(relError(dx, naive[1] as Float32Array) <= 1e-5, `${what}: SIMD vs naive backward`);
            } else {
              naive = [y, dx];
            }
          });
        }
      }
    });
  }
});

/** Row-wise top-k reference: descending, NaN first, lower index first on ties. */
function topkRef(x: Float32Array, rows: number, cols: number, k: number) {
  const values: number[] = [];
  const indices: number[] = [];
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: cols }, (_, c) => c);
    const v = (c: number) => x[r * cols + c] as number;
    order.sort((a, b) => {
      const na = Number.isNaN(v(a));
      const nb = Number.isNaN(v(b));
      if (na !== nb) return na ? -1 : 1;
      if (!na && v(a) !== v(b)) return v(b) - v(a);
      return a - b;
    });
    for (const c of order.slice(0, k)) {
      values.push(v(c));
      indices.push(c);
    }
  }
  return { values: Float32Array.from(values), indices: Int32Array.from(indices) };
}

test('argmax and topk pick the largest values, first index on ties', () => {
  for (const cols of ODD_SIZES) {
    const rows = 6;
    withBuffers((keep) => {
      // Quantised values make ties common; one row holds a NaN.
      const x = Float32Array.from(randomF32(rows * cols, cols + 3, -4, 4), (v) => Math.round(v * 2) / 2);
      if (cols > 3) x[2 * cols + 3] = NaN;
      const hx = keep(toNative(x));
      const ha = keep(native.alloc(rows * 4, false));
      native.argmax(hx, 0, ha, 0, rows, cols);
      const best = topkRef(x, rows, cols, 1);
      assert.deepEqual(readI32(ha, rows), best.indices, `argmax cols=${cols}`);
      for (const k of new Set([1, Math.min(3, cols), cols])) {
        const hv = keep(native.alloc(rows * k * 4, false));
        const hi = keep(native.alloc(rows * k * 4, false));
        native.topk(hx, 0, hv, 0, hi, 0, rows, cols, k);
        const ref = topkRef(x, rows, cols, k);
        assert.deepEqual(readF32(hv, rows * k), ref.values, `topk values cols=${cols} k=${k}`);
        assert.deepEqual(readI32(hi, rows * k), ref.indices, `topk indices cols=${cols} k=${k}`);
      }
    });
  }
});

test('reductions reject bad arguments naming the op', () => {
  withBuffers((keep) => {
    const h = keep(native.alloc(64, false));
    assert.throws(() => native.reduce(REDUCE_OP.sum, h, 0, h, 0, 0, 0, 2, 3, 3), /reduce\(sum\): buffer 'x' too small: needs 72 bytes/);
    assert.throws(() => native.reduce(REDUCE_OP.max, h, 0, h, 0, h, 0, 1, 0, 4), /reduce\(max\): max over an empty dimension/);
    assert.throws(() => native.reduce(REDUCE_OP.mean, h, 0, h, 0, h, 0, 1, 4, 1), /only produced by max/);
    assert.throws(() => native.reduce(7, h, 0, h, 0, 0, 0, 1, 4, 1), /reduce: unknown op code 7/);
    assert.throws(() => native.softmax(h, 0, h, 0, 5, 4, false), /softmax: buffer 'x' too small/);
    assert.throws(() => native.softmaxBackward(h, 0, h, 0, h, 32, 2, 5, true), /softmaxBackward: buffer 'dx' too small/);
    assert.throws(() => native.topk(h, 0, h, 0, h, 0, 2, 4, 5), /topk: k 5 is larger than the row length 4/);
    assert.throws(() => native.topk(h, 0, h, 32, h, 0, 4, 4, 3), /topk: buffer 'values' too small/);
    assert.throws(() => native.argmax(h, 0, h, 0, 3, 0), /argmax: argmax of empty rows/);
    assert.throws(() => native.argmax(h, 0, h, 0, 17, 1), /argmax: buffer 'x' too small/);
    assert.throws(() => native.sumsq(h, 0, 17), /sumsq: buffer 'x' too small/);
  });
});
