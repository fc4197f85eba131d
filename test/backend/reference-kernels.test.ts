// The reference backend (src/backend/reference) against the native addon, kernel by kernel, on random inputs of
// odd sizes. Two yardsticks per kernel: the addon's scalar path (ISA scalar: the naive C++ kernels the reference
// is written to), where results must be bit-exact for pure fp32/fp64 arithmetic and copies, and within
// TRANSCENDENTAL_TOL where libm's expf/logf/tanhf/powf and V8's Math functions may round an ulp apart; and the
// addon's active ISA (SIMD), whose different summation order and vectorized exp give small relative differences
// (SIMD_TOL, per tensor: ‖ref − native‖ / ‖native‖). One planned difference: the cross-entropy gradients add
// each vocab chunk's dw once (a second pass doubles dw exactly), so dw is compared within TRANSCENDENTAL_TOL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BINARY_OP, DTYPE_CODE, ISA, REDUCE_OP, UNARY_OP, native } from '../../src/backend/binding.ts';
import { REFERENCE_COVERS, REFERENCE_LEAVES, reference as ref } from '../../src/backend/reference/index.ts';
import { ShapeError } from '../../src/errors.ts';
import { closeRel, isaPaths, randomF32, withIsa } from '../helpers/native.ts';

type Arr = Float32Array | Int32Array | Uint16Array | Uint32Array | Uint8Array;
type Kernels = Pick<typeof native, (typeof REFERENCE_COVERS)[number]>;

/** libm vs V8 Math on exp/log/tanh/pow: an ulp or two in a few elements, relative to the tensor's norm. */
const TRANSCENDENTAL_TOL = 1e-6;
/** SIMD paths sum in another order (fp32 accumulators, 8/16 lanes) and use polynomial exp: a few fp32 ulps per element. */
const SIMD_TOL = 1e-5;
/**
 * bf16 cross-entropy backward rounds each dlogit to bf16: where SIMD's exp lands a dlogit on the other side of
 * a bf16 rounding boundary, that term moves by a bf16 ulp (2^-8 relative). Measured here: ≤ 3e-7 over these cases.
 */
const BF16_SIMD_TOL = 1e-4;

const ACTIVE = native.detectedIsa();

/** What one run of a kernel left behind: every buffer's contents (same names and types as the inputs) and its return value. */
interface Run<K extends string> {
  out: Record<K, Arr>;
  ret: unknown;
}

/**
 * Runs `fn` on a backend with fresh copies of `bufs` (handles by name) and reads every buffer back. Buffers are
 * allocated with at least 4 bytes so that empty tensors still get a live handle.
 */
function runOn<K extends string>(be: Kernels, bufs: Record<K, Arr>, fn: (be: Kernels, h: Record<K, number>) => unknown): Run<K> {
  const h = {} as Record<K, number>;
  const names = Object.keys(bufs) as K[];
  try {
    for (const k of names) {
      const data = bufs[k];
      h[k] = be.alloc(Math.max(data.byteLength, 4), false);
      be.write(h[k], 0, data);
    }
    const ret = fn(be, h);
    const out = {} as Record<K, Arr>;
    for (const k of names) {
      const data = bufs[k];
      const copy = new (data.constructor as new (n: number) => Arr)(data.length);
      be.read(h[k], 0, copy);
      out[k] = copy;
    }
    return { out, ret };
  } finally {
    for (const k of names) if (h[k] !== undefined) be.free(h[k]);
  }
}

/** The kernel on the reference backend, the addon's scalar path and its active ISA. */
function runAll<K extends string>(bufs: Record<K, Arr>, fn: (be: Kernels, h: Record<K, number>) => unknown): { ref: Run<K>; scalar: Run<K>; simd: Run<K> } {
  return {
    ref: runOn(ref, bufs, fn),
    scalar: withIsa(ISA.scalar, () => runOn(native, bufs, fn)),
    simd: withIsa(ACTIVE, () => runOn(native, bufs, fn)),
  };
}

function asBits(a: Arr): Uint32Array | Uint16Array | Uint8Array | Int32Array {
  return a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;
}

/** Bit-for-bit equality, naming the first differing element. */
function sameBits(name: string, got: Arr, want: Arr): void {
  assert.equal(got.length, want.length, `${name}: length`);
  const g = asBits(got), w = asBits(want);
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== w[i]) assert.fail(`${name}: element ${i} differs: ${got[i]} (bits ${g[i]}) vs ${want[i]} (bits ${w[i]})`);
  }
}

/** Within `tol` (per tensor); NaN and ±inf must sit where the wanted tensor has them, and are left out of the norms. */
function closeNaN(name: string, got: Arr, want: Arr, tol: number, floorRms = 1e-30): void {
  const g: number[] = [], w: number[] = [];
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i])) assert.ok(Number.isNaN(got[i]), `${name}: element ${i} is ${got[i]}, want NaN`);
    else if (!Number.isFinite(want[i])) assert.equal(got[i], want[i], `${name}: element ${i}`);
    else {
      g.push(got[i] as number);
      w.push(want[i] as number);
    }
  }
  closeRel(name, g, w, tol, floorRms);
}

/**
 * Checks the named outputs: bit-exact (tol 0) or within `tol` of the scalar path, and within `simdTol` of the
 * active ISA (bit-exact when simdTol is 0). `floorRms` bounds the norm below for outputs that are zero in exact
 * arithmetic (a norm's input gradient over one feature), where only rounding noise is left to compare.
 */
function check<K extends string>(
  label: string, r: { ref: Run<K>; scalar: Run<K>; simd: Run<K> }, outs: readonly K[], tol: number, simdTol = SIMD_TOL, floorRms = 1e-30,
): void {
  for (const k of outs) {
    const got = r.ref.out[k];
    if (tol === 0) sameBits(`${label} ${k} vs scalar`, got, r.scalar.out[k]);
    else closeNaN(`${label} ${k} vs scalar`, got, r.scalar.out[k], tol, floorRms);
    if (simdTol === 0) sameBits(`${label} ${k} vs ${ACTIVE}`, got, r.simd.out[k]);
    else closeNaN(`${label} ${k} vs simd`, got, r.simd.out[k], simdTol, floorRms);
  }
}

/** Both backends refuse the call with the same message (the reference as a ShapeError). */
function sameError(fn: (be: Kernels) => unknown, pattern?: RegExp): void {
  let nativeMsg = '';
  assert.throws(() => fn(native), (e: Error) => {
    nativeMsg = e.message;
    return true;
  });
  assert.throws(() => fn(ref), (e: Error) => {
    assert.ok(e instanceof ShapeError, `reference error is a ShapeError: ${e.message}`);
    assert.equal(e.message, nativeMsg);
    return true;
  });
  if (pattern) assert.match(nativeMsg, pattern);
}

function randomI32(n: number, seed: number, lo: number, hi: number): Int32Array {
  return Int32Array.from(randomF32(n, seed, lo, hi), (v) => Math.floor(v));
}

const ODD = [1, 7, 65, 257] as const;

// --- memory

test('memory: alloc, write, read, size, free and their errors', () => {
  const h = ref.alloc(10, true);
  assert.equal(ref.size(h), 10);
  const out = new Uint8Array(10);
  ref.read(h, 0, out);
  assert.deepEqual([...out], new Array(10).fill(0));
  ref.write(h, 2, new Uint8Array([1, 2, 3]));
  ref.read(h, 0, out);
  assert.deepEqual([...out], [0, 0, 1, 2, 3, 0, 0, 0, 0, 0]);
  const f = new Float32Array([1.5, -2]);
  const h2 = ref.alloc(8, false);
  ref.write(h2, 0, f);
  const back = new Float32Array(2);
  ref.read(h2, 0, back);
  assert.deepEqual([...back], [1.5, -2]);
  assert.throws(() => ref.read(h, 8, new Uint8Array(4)), /^ShapeError: read: buffer 'buffer' too small: needs 12 bytes, has 10$/);
  ref.free(h);
  ref.free(h2);
  assert.equal(ref.size(h), -1);
  assert.throws(() => ref.free(h), new RegExp(`^ShapeError: free: free of unknown or already freed buffer ${h}$`));
  assert.throws(() => ref.read(h, 0, new Uint8Array(1)), /is not a live native buffer/);
  // A dead handle is accepted for an empty extent, as the addon accepts it.
  ref.read(h, 0, new Uint8Array(0));
  sameError((be) => be.read(123456789, 0, new Uint8Array(4)));
  sameError((be) => be.alloc(-1, false), /^alloc: size 'bytes' out of range: -1$/);
});

test('memory: fromBytes is read-only, aligned or not, and counted as mapped bytes', () => {
  const before = ref.memStats();
  const file = new Uint8Array(29);
  for (let i = 0; i < file.length; i++) file[i] = i;
  for (const start of [0, 1, 8]) {
    const bytes = file.subarray(start);
    const h = ref.fromBytes(bytes);
    assert.equal(ref.size(h), bytes.length);
    const out = new Uint8Array(bytes.length);
    ref.read(h, 0, out);
    assert.deepEqual(out, bytes);
    assert.equal(ref.memStats().mappedBytes, before.mappedBytes + bytes.length);
    assert.throws(() => ref.write(h, 0, new Uint8Array(1)), /write: buffer 'buffer' is read-only/);
    assert.throws(() => ref.fill(h, 0, 1, 0, DTYPE_CODE.float32), /fill: buffer 'x' is read-only/);
    // A kernel may read it: a float32 view at an aligned offset.
    const y = ref.alloc(16, true);
    ref.unary(UNARY_OP.neg, h, 4, y, 0, 4, 0);
    const want = new Float32Array(4);
    new Uint8Array(want.buffer).set(bytes.subarray(4, 20));
    const got = new Float32Array(4);
    ref.read(y, 0, got);
    assert.deepEqual([...got], [...want].map((v) => -v));
    ref.free(y);
    ref.free(h);
  }
  const after = ref.memStats();
  assert.equal(after.mappedBytes, before.mappedBytes);
  assert.equal(after.liveBytes, before.liveBytes);
  assert.equal(after.liveBlocks, before.liveBlocks);
});

test('memory: the caching allocator counts live, cached and OS bytes as the addon does', () => {
  const deltas = (be: Kernels): number[][] => {
    be.emptyCache();
    const s0 = be.memStats();
    const seen: number[][] = [];
    const note = (): void => {
      const s = be.memStats();
      seen.push([s.liveBytes - s0.liveBytes, s.cachedBytes - s0.cachedBytes, s.osAllocs - s0.osAllocs, s.liveBlocks - s0.liveBlocks]);
    };
    const a = be.alloc(1000, false);
    const b = be.alloc(5000, false);
    note();
    be.free(a);
    note();
    const c = be.alloc(1001, true); // same 1024-byte bucket: reused
    const d = be.alloc(0, false);
    note();
    for (const x of [b, c, d]) be.free(x);
    note();
    be.emptyCache();
    note();
    return seen;
  };
  assert.deepEqual(deltas(ref), deltas(native));
  // A reused block keeps its bytes unless zero is asked for.
  ref.emptyCache();
  const h = ref.alloc(16, false);
  ref.write(h, 0, new Uint8Array(16).fill(7));
  ref.free(h);
  const again = ref.alloc(16, false);
  const out = new Uint8Array(16);
  ref.read(again, 0, out);
  assert.deepEqual([...out], new Array(16).fill(7));
  ref.free(again);
  const zeroed = ref.alloc(16, true);
  ref.read(zeroed, 0, out);
  assert.deepEqual([...out], new Array(16).fill(0));
  ref.free(zeroed);
  const peak = ref.alloc(1 << 20, false);
  ref.free(peak);
  assert.ok(ref.memStats().peakBytes > ref.memStats().liveBytes);
  ref.resetPeak();
  assert.equal(ref.memStats().peakBytes, ref.memStats().liveBytes);
});

test('kernel buffer checks: misaligned offsets, short buffers, dead handles fail as in the addon', () => {
  const x = randomF32(8, 1);
  const run = (be: Kernels, f: (h: number, y: number) => void): void => {
    const h = be.alloc(32, false);
    const y = be.alloc(32, false);
    be.write(h, 0, x);
    try {
      f(h, y);
    } finally {
      be.free(h);
      be.free(y);
    }
  };
  sameError((be) => run(be, (h, y) => be.unary(UNARY_OP.exp, h, 2, y, 0, 4, 0)), /misaligned offset 2/);
  sameError((be) => run(be, (h, y) => be.unary(UNARY_OP.exp, h, 4, y, 0, 8, 0)), /too small: needs 36 bytes, has 32/);
  sameError((be) => run(be, (h, y) => be.unary(UNARY_OP.exp, h, 0, y, 0, -1, 0)), /size 'n' out of range/);
  sameError((be) => run(be, (h, y) => be.unary(99, h, 0, y, 0, 1, 0)), /^unary: unknown op code 99$/);
  sameError((be) => run(be, (h, y) => be.unary(UNARY_OP.exp, 987654321, 0, y, 0, 1, 0)), /not a live native buffer/);
});

// --- elementwise

/** Inputs in each op's domain (log, sqrt, rsqrt and pow of positive numbers) and an alpha that exercises it. */
const UNARY_CASES: { op: keyof typeof UNARY_OP; lo: number; hi: number; alpha: number; exact: boolean }[] = [
  { op: 'neg', lo: -3, hi: 3, alpha: 0, exact: true },
  { op: 'exp', lo: -5, hi: 5, alpha: 0, exact: false },
  { op: 'log', lo: 0.01, hi: 10, alpha: 0, exact: false },
  { op: 'sqrt', lo: 0, hi: 10, alpha: 0, exact: true },
  { op: 'rsqrt', lo: 0.01, hi: 10, alpha: 0, exact: true },
  { op: 'silu', lo: -6, hi: 6, alpha: 0, exact: false },
  { op: 'gelu', lo: -6, hi: 6, alpha: 0, exact: false },
  { op: 'scale', lo: -3, hi: 3, alpha: 0.3, exact: true },
  { op: 'powScalar', lo: 0.01, hi: 4, alpha: 1.7, exact: false },
  { op: 'addScalar', lo: -3, hi: 3, alpha: -0.7, exact: true },
  { op: 'square', lo: -3, hi: 3, alpha: 0, exact: true },
  { op: 'relu', lo: -3, hi: 3, alpha: 0, exact: true },
];

test('unary and unaryBackward: every op, odd sizes', () => {
  let seed = 10;
  for (const c of UNARY_CASES) {
    for (const n of ODD) {
      const x = randomF32(n, seed++, c.lo, c.hi);
      const code = UNARY_OP[c.op];
      const fwd = runAll({ x, y: new Float32Array(n) }, (be, h) => be.unary(code, h.x, 0, h.y, 0, n, c.alpha));
      check(`unary(${c.op}) n=${n}`, fwd, ['y'], c.exact ? 0 : TRANSCENDENTAL_TOL);
      const y = fwd.scalar.out.y as Float32Array;
      const dy = randomF32(n, seed++);
      const bwd = runAll({ x, y, dy, dx: new Float32Array(n) }, (be, h) =>
        be.unaryBackward(code, h.x, 0, h.y, 0, h.dy, 0, h.dx, 0, n, c.alpha));
      const exactGrad = c.exact || c.op === 'exp';
      check(`unaryBackward(${c.op}) n=${n}`, bwd, ['dx'], exactGrad ? 0 : TRANSCENDENTAL_TOL);
    }
  }
  // Ops whose derivative reads neither input take handle 0 for them.
  const dy = randomF32(9, 3);
  const r = runAll({ dy, dx: new Float32Array(9) }, (be, h) => be.unaryBackward(UNARY_OP.scale, 0, 0, 0, 0, h.dy, 0, h.dx, 0, 9, -2));
  check('unaryBackward(scale) without x, y', r, ['dx'], 0, 0);
  sameError((be) => runOn(be, { dy, dx: new Float32Array(9) }, (b, h) => b.unaryBackward(UNARY_OP.log, 0, 0, 0, 0, h.dy, 0, h.dx, 0, 9, 0)));
});

test('unary: special values (NaN, ±inf, ±0) as the scalar path', () => {
  const x = new Float32Array([NaN, Infinity, -Infinity, 0, -0, 1, -1, 1e-40, 88.8, -100]);
  for (const c of UNARY_CASES) {
    for (const alpha of [c.alpha, NaN, 0, Infinity]) {
      const r = runAll({ x, y: new Float32Array(x.length) }, (be, h) => be.unary(UNARY_OP[c.op], h.x, 0, h.y, 0, x.length, alpha));
      const got = r.ref.out.y as Float32Array, want = r.scalar.out.y as Float32Array;
      for (let i = 0; i < x.length; i++) {
        const same = Object.is(got[i], want[i]) || (Number.isNaN(got[i]) && Number.isNaN(want[i])) ||
          Math.abs((got[i] as number) - (want[i] as number)) <= 1e-6 * Math.abs(want[i] as number);
        assert.ok(same, `unary(${c.op}) alpha ${alpha} at x = ${x[i]}: ${got[i]} vs ${want[i]}`);
      }
    }
  }
});

/** Strides of a contiguous shape, with 0 where `bcast` marks a broadcast dim. */
function stridesOf(shape: readonly number[], bcast: readonly boolean[] = []): number[] {
  const s = new Array<number>(shape.length).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = bcast[i] ? 0 : acc;
    if (!bcast[i]) acc *= shape[i] as number;
  }
  return s;
}

function extentOf(shape: readonly number[], strides: readonly number[]): number {
  if (shape.some((d) => d === 0)) return 0;
  return 1 + shape.reduce((a, d, i) => a + (d - 1) * (strides[i] as number), 0);
}

test('binary: every op, broadcasting and strided operands', () => {
  const cases: { shape: number[]; as: number[]; bs: number[] }[] = [
    { shape: [257], as: [1], bs: [1] },
    { shape: [5, 7], as: stridesOf([5, 7]), bs: stridesOf([5, 7], [true, false]) },           // bias over rows
    { shape: [3, 4, 5], as: stridesOf([3, 4, 5], [false, true, false]), bs: stridesOf([3, 4, 5], [true, false, true]) },
    { shape: [6, 5], as: [1, 6], bs: [0, 0] },                                                 // transposed a, scalar b
    { shape: [2, 3, 1, 9], as: [60, 20, 7, 2], bs: stridesOf([2, 3, 1, 9], [true, false, false, false]) }, // padded strides
    { shape: [], as: [], bs: [] },
    { shape: [4, 0, 3], as: [0, 3, 1], bs: [0, 3, 1] },
  ];
  let seed = 100;
  for (const [name, code] of Object.entries(BINARY_OP)) {
    for (const c of cases) {
      const positive = name === 'pow';
      const a = randomF32(Math.max(extentOf(c.shape, c.as), 1), seed++, positive ? 0.1 : -2, 2);
      const b = randomF32(Math.max(extentOf(c.shape, c.bs), 1), seed++, -2, 2);
      const n = c.shape.reduce((x, y) => x * y, 1);
      const r = runAll({ a, b, out: new Float32Array(Math.max(n, 1)) }, (be, h) =>
        be.binary(code, h.a, 0, c.as, h.b, 0, c.bs, h.out, 0, c.shape));
      check(`binary(${name}) shape [${c.shape}]`, r, ['out'], positive ? TRANSCENDENTAL_TOL : 0, positive ? SIMD_TOL : 0);
    }
  }
  // maximum propagates NaN and keeps -0 vs +0 as the kernel does.
  const a = new Float32Array([NaN, 1, -0, 0, 2]), b = new Float32Array([1, NaN, 0, -0, 2]);
  const r = runAll({ a, b, out: new Float32Array(5) }, (be, h) => be.binary(BINARY_OP.maximum, h.a, 0, [1], h.b, 0, [1], h.out, 0, [5]));
  check('binary(maximum) NaN', r, ['out'], 0, 0);
  sameError((be) => runOn(be, { a, b }, (k, h) => k.binary(BINARY_OP.add, h.a, 0, [1], h.b, 0, [1, 1], h.a, 0, [5])));
  sameError((be) => runOn(be, { a, b }, (k, h) => k.binary(BINARY_OP.add, h.a, 0, [2], h.b, 0, [1], h.a, 0, [5])), /too small/);
});

test('where', () => {
  for (const n of ODD) {
    const cond = Float32Array.from(randomF32(n, n), (v) => (v > 0 ? 1 : v < -0.5 ? NaN : 0));
    const r = runAll({ cond, a: randomF32(n, n + 1), b: randomF32(n, n + 2), out: new Float32Array(n) }, (be, h) =>
      be.where(h.cond, 0, h.a, 0, h.b, 0, h.out, 0, n));
    check(`where n=${n}`, r, ['out'], 0, 0);
  }
});

// --- reductions

test('reduce: sum, mean, max with argmax over (outer, dim, inner)', () => {
  const shapes = [[1, 1, 1], [3, 7, 1], [1, 65, 1], [4, 5, 6], [2, 257, 3], [3, 0, 2]] as const;
  let seed = 200;
  for (const [name, code] of Object.entries(REDUCE_OP)) {
    for (const [outer, d, inner] of shapes) {
      if (code === REDUCE_OP.max && d === 0) continue;
      const x = randomF32(Math.max(outer * d * inner, 1), seed++, -3, 3);
      const withIdx = code === REDUCE_OP.max;
      const r = runAll({ x, y: new Float32Array(outer * inner), idx: new Int32Array(outer * inner) }, (be, h) =>
        be.reduce(code, h.x, 0, h.y, 0, withIdx ? h.idx : 0, 0, outer, d, inner));
      check(`reduce(${name}) (${outer}, ${d}, ${inner})`, r, ['y', 'idx'], 0);
    }
  }
  // NaN wins the max; the first of equal maxima is its index.
  const x = new Float32Array([1, 3, 3, 2, NaN, 5, 7, 7]);
  const r = runAll({ x, y: new Float32Array(2), idx: new Int32Array(2) }, (be, h) => be.reduce(REDUCE_OP.max, h.x, 0, h.y, 0, h.idx, 0, 2, 4, 1));
  check('reduce(max) ties and NaN', r, ['y', 'idx'], 0, 0);
  assert.deepEqual([...(r.ref.out.idx as Int32Array)], [1, 0]);
  sameError((be) => runOn(be, { x, y: new Float32Array(2) }, (k, h) => k.reduce(REDUCE_OP.max, h.x, 0, h.y, 0, 0, 0, 2, 0, 1)), /max over an empty dimension/);
  sameError((be) => runOn(be, { x, y: new Float32Array(2) }, (k, h) => k.reduce(REDUCE_OP.sum, h.x, 0, h.y, 0, h.y, 0, 2, 4, 1)), /only produced by max/);
});

test('softmax, log-softmax and their backward', () => {
  let seed = 300;
  for (const log of [false, true]) {
    for (const [rows, cols] of [[1, 1], [3, 7], [5, 65], [2, 257]] as const) {
      const x = randomF32(rows * cols, seed++, -6, 6);
      const fwd = runAll({ x, y: new Float32Array(rows * cols) }, (be, h) => be.softmax(h.x, 0, h.y, 0, rows, cols, log));
      check(`softmax log=${log} (${rows}, ${cols})`, fwd, ['y'], TRANSCENDENTAL_TOL);
      const y = fwd.scalar.out.y as Float32Array;
      const bwd = runAll({ y, dy: randomF32(rows * cols, seed++), dx: new Float32Array(rows * cols) }, (be, h) =>
        be.softmaxBackward(h.y, 0, h.dy, 0, h.dx, 0, rows, cols, log));
      check(`softmaxBackward log=${log} (${rows}, ${cols})`, bwd, ['dx'], log ? TRANSCENDENTAL_TOL : 0);
    }
  }
});

test('argmax and topk: exact values and indices, ties and NaN', () => {
  let seed = 400;
  for (const [rows, cols] of [[1, 1], [3, 7], [4, 65], [2, 257]] as const) {
    // Values on a coarse grid, so that ties are common.
    const x = Float32Array.from(randomF32(rows * cols, seed++, -4, 4), (v) => Math.round(v * 2) / 2);
    const r = runAll({ x, out: new Int32Array(rows) }, (be, h) => be.argmax(h.x, 0, h.out, 0, rows, cols));
    check(`argmax (${rows}, ${cols})`, r, ['out'], 0, 0);
    for (const k of [1, Math.min(3, cols), Math.min(40, cols), cols]) {
      const t = runAll({ x, v: new Float32Array(rows * k), i: new Int32Array(rows * k) }, (be, h) =>
        be.topk(h.x, 0, h.v, 0, h.i, 0, rows, cols, k));
      check(`topk k=${k} (${rows}, ${cols})`, t, ['v', 'i'], 0, 0);
    }
  }
  const x = new Float32Array([1, NaN, 3, NaN, 3, -Infinity, 0, 2]);
  for (const k of [1, 2, 4, 8]) {
    const t = runAll({ x, v: new Float32Array(k), i: new Int32Array(k) }, (be, h) => be.topk(h.x, 0, h.v, 0, h.i, 0, 1, 8, k));
    check(`topk with NaN k=${k}`, t, ['v', 'i'], 0, 0);
  }
  const a = runAll({ x, out: new Int32Array(1) }, (be, h) => be.argmax(h.x, 0, h.out, 0, 1, 8));
  assert.equal((a.ref.out.out as Int32Array)[0], 1);
  sameError((be) => runOn(be, { x }, (k, h) => k.topk(h.x, 0, h.x, 0, h.x, 0, 1, 8, 9)), /^topk: k 9 is larger than the row length 8$/);
  sameError((be) => runOn(be, { x }, (k, h) => k.argmax(h.x, 0, h.x, 0, 1, 0)), /argmax of empty rows/);
});

test('sumsq: double accumulation', () => {
  for (const n of [0, ...ODD, 10001]) {
    const x = randomF32(Math.max(n, 1), n + 7, -3, 3);
    const r = runAll({ x }, (be, h) => be.sumsq(h.x, 0, n));
    assert.equal(r.ref.ret, r.scalar.ret, `sumsq n=${n} vs scalar`);
    assert.ok(Math.abs((r.ref.ret as number) - (r.simd.ret as number)) <= 1e-12 * Math.abs(r.simd.ret as number), `sumsq n=${n} vs simd`);
  }
});

// --- data movement

test('stridedCopy: element sizes 1, 2, 4, transposes, broadcast sources, accumulate', () => {
  const cases: { shape: number[]; ss: number[]; ds: number[] }[] = [
    { shape: [257], ss: [1], ds: [1] },
    { shape: [7, 9], ss: [1, 7], ds: stridesOf([7, 9]) },                 // transpose
    { shape: [3, 65, 33], ss: [65 * 33, 1, 65], ds: stridesOf([3, 65, 33]) }, // batched transpose, tiles with tails
    { shape: [5, 6], ss: [0, 1], ds: [8, 1] },                            // broadcast rows into a padded destination
    { shape: [2, 3, 4, 5], ss: [0, 20, 5, 1], ds: [1, 2, 6, 24] },
    { shape: [], ss: [], ds: [] },
    { shape: [3, 0], ss: [1, 1], ds: [1, 1] },
  ];
  let seed = 500;
  for (const c of cases) {
    const se = Math.max(extentOf(c.shape, c.ss), 1), de = Math.max(extentOf(c.shape, c.ds), 1);
    for (const eb of [1, 2, 4] as const) {
      const src = new Uint8Array(se * eb), dst = new Uint8Array(de * eb);
      const rs = randomF32(src.length + dst.length, seed++, 0, 256);
      src.forEach((_, i) => (src[i] = rs[i] as number));
      dst.forEach((_, i) => (dst[i] = rs[src.length + i] as number));
      const r = runAll({ src, dst }, (be, h) => be.stridedCopy(h.src, 0, c.ss, h.dst, 0, c.ds, c.shape, eb, false));
      check(`stridedCopy eb=${eb} shape [${c.shape}]`, r, ['dst'], 0, 0);
    }
    const r = runAll({ src: randomF32(se, seed++), dst: randomF32(de, seed++) }, (be, h) =>
      be.stridedCopy(h.src, 0, c.ss, h.dst, 0, c.ds, c.shape, 4, true));
    check(`stridedCopy accumulate shape [${c.shape}]`, r, ['dst'], 0, 0);
  }
  // NaN payloads survive a 4-byte copy.
  const src = new Uint32Array([0x7fa00001, 0xffc12345, 0x7f800001]);
  const r = runAll({ src, dst: new Uint32Array(3) }, (be, h) => be.stridedCopy(h.src, 0, [1], h.dst, 0, [1], [3], 4, false));
  check('stridedCopy NaN payloads', r, ['dst'], 0, 0);
  assert.deepEqual([...(r.ref.out.dst as Uint32Array)], [...src]);
  const x = new Float32Array(16);
  sameError((be) => runOn(be, { x }, (k, h) => k.stridedCopy(h.x, 0, [1, 1], h.x, 0, [2, 1], [2, 3], 4, false)), /overlaps itself/);
  sameError((be) => runOn(be, { x }, (k, h) => k.stridedCopy(h.x, 0, [1], h.x, 0, [1], [4], 2, true)), /accumulate is only supported/);
  sameError((be) => runOn(be, { x }, (k, h) => k.stridedCopy(h.x, 0, [1], h.x, 0, [1], [4], 3, false)), /elemBytes must be 1, 2 or 4, got 3/);
});

test('fill: every dtype', () => {
  for (const n of [0, ...ODD]) {
    for (const [dt, code] of Object.entries(DTYPE_CODE)) {
      const values = dt === 'int32' ? [0, -7, 2147483647] : [0, -1.3, 1e-40, 70000, NaN, -Infinity, 1 / 3];
      for (const v of values) {
        const bytes = dt === 'bfloat16' || dt === 'float16' ? 2 : 4;
        const r = runAll({ x: new Uint8Array(Math.max(n * bytes, 4) + 4).fill(0xab) }, (be, h) => be.fill(h.x, 4, n, v, code));
        check(`fill ${dt} ${v} n=${n}`, r, ['x'], 0, 0);
      }
    }
  }
  sameError((be) => runOn(be, { x: new Int32Array(2) }, (k, h) => k.fill(h.x, 0, 2, 1.5, DTYPE_CODE.int32)), /^fill: value 1.500000 is not an int32$/);
  sameError((be) => runOn(be, { x: new Int32Array(2) }, (k, h) => k.fill(h.x, 0, 2, 1, 7)), /^fill: unknown dtype code 7 for 'dtype'$/);
});

test('dropoutMask: bit-exact on both backends at any thread count; keeps about keep of the elements, independently per key', () => {
  for (const n of [0, ...ODD, 100_003]) {
    for (const p of [0.05, 1 / 3, 0.5, 0]) {
      const keep = 1 - p;
      const x = randomF32(n, 12);
      for (const withOut of [true, false]) {
        const r = runAll({ x, out: new Float32Array(n), mask: new Float32Array(n) }, (be, h) =>
          be.dropoutMask(0x9e3779b9, 12345 + n, keep, h.x, 0, withOut ? h.out : 0, 0, h.mask, 0, n));
        check(`dropoutMask n=${n} p=${p.toFixed(3)} out=${withOut}`, r, ['mask', 'out'], 0, 0);
        // Every vector path this CPU has (AVX2 as well as AVX-512), not only the active one.
        for (const { name, level } of isaPaths()) {
          const v = withIsa(level, () => runOn(native, { x, out: new Float32Array(n), mask: new Float32Array(n) }, (be, h) =>
            be.dropoutMask(0x9e3779b9, 12345 + n, keep, h.x, 0, withOut ? h.out : 0, 0, h.mask, 0, n)));
          sameBits(`dropoutMask ${name} n=${n} mask`, v.out.mask, r.ref.out.mask);
          sameBits(`dropoutMask ${name} n=${n} out`, v.out.out, r.ref.out.out);
        }
        const mask = r.ref.out.mask as Float32Array;
        const kept = Math.fround(1 / keep);
        for (const m of mask) if (m !== 0 && m !== kept) assert.fail(`dropoutMask: a mask value ${m} is neither 0 nor 1/keep`);
        if (withOut) sameBits(`dropoutMask n=${n} out = x·mask`, r.ref.out.out, Float32Array.from(x, (v, i) => v * (mask[i] as number)));
        if (n === 100_003) {
          // Binomial: the kept fraction within 5 standard deviations of keep.
          const frac = mask.reduce((k, m) => k + (m !== 0 ? 1 : 0), 0) / n;
          assert.ok(Math.abs(frac - keep) <= 5 * Math.sqrt((keep * (1 - keep)) / n) + 1e-12, `kept ${frac} of the elements, keep = ${keep}`);
        }
      }
    }
  }
  // Another key gives another mask (about p·(1-p)·2 of the elements differ); the threads split elements, not the stream.
  const n = 50_000;
  const run = (key1: number): Float32Array => runOn(native, { m: new Float32Array(n) }, (k, h) => k.dropoutMask(7, key1, 0.5, 0, 0, 0, 0, h.m, 0, n)).out.m as Float32Array;
  const a = run(1), b = run(2);
  const differ = a.reduce((k, v, i) => k + (v !== b[i] ? 1 : 0), 0) / n;
  assert.ok(Math.abs(differ - 0.5) < 0.02, `masks of two keys differ in ${differ} of the elements`);
  const before = native.getThreads();
  try {
    native.setThreads(1);
    const one = run(1);
    native.setThreads(2);
    sameBits('dropoutMask at 1 and 2 threads', run(1), one);
  } finally {
    native.setThreads(before);
  }
  const four = new Float32Array(4);
  sameError((be) => runOn(be, { m: four }, (k, h) => k.dropoutMask(-1, 0, 0.9, 0, 0, 0, 0, h.m, 0, 4)), /^dropoutMask: keys must be 32-bit unsigned integers$/);
  sameError((be) => runOn(be, { m: four }, (k, h) => k.dropoutMask(0, 0, 1.5, 0, 0, 0, 0, h.m, 0, 4)), /^dropoutMask: keep must be in \(0, 1\], got 1.500000$/);
  sameError((be) => runOn(be, { m: four }, (k, h) => k.dropoutMask(0, 0, 0.9, 0, 0, h.m, 0, h.m, 0, 4)), /^dropoutMask: out needs x$/);
  sameError((be) => runOn(be, { m: four }, (k, h) => k.dropoutMask(0, 0, 0.9, h.m, 0, 0, 0, 0, 0, 4)), /^dropoutMask: give out, mask or both$/);
  // In place (out = x, no mask written): what backward does to (dproj·A) with the forward's keys.
  const xs = randomF32(1000, 13);
  const inPlace = runAll({ x: xs }, (be, h) => be.dropoutMask(3, 4, 0.9, h.x, 0, h.x, 0, 0, 0, 1000));
  check('dropoutMask in place', inPlace, ['x'], 0, 0);
  const maskOnly = runOn(ref, { m: new Float32Array(1000) }, (k, h) => k.dropoutMask(3, 4, 0.9, 0, 0, 0, 0, h.m, 0, 1000)).out.m as Float32Array;
  sameBits('dropoutMask in place = x·mask', inPlace.ref.out.x, Float32Array.from(xs, (v, i) => v * (maskOnly[i] as number)));
});

test('cast: every dtype pair, bit-exact, with NaN, ±inf, subnormals, ties and int32 range edges', () => {
  // Every 16-bit code, as bf16 and f16 sources.
  const all16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
  // f32 sources: specials, ties at bf16 and f16 precision, and random bit patterns.
  const specials = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffa00001, 0x00000001, 0x807fffff,
    0x3f808000, 0x3f818000, 0x3f800fff, 0x33000000, 0x33000001, 0x387fe000, 0x38800000, 0x477fe000, 0x477ff000, 0x47800000,
    0x4effffff, 0x4f000000, 0xcf000000, 0xcf000001, 0x7f7fffff];
  const rnd = randomF32(4096, 600, 0, 2 ** 32);
  const f32bits = Uint32Array.from([...specials, ...Array.from(rnd, (v) => Math.floor(v))]);
  const ints = Int32Array.from([0, 1, -1, 16777217, -16777219, 2147483647, -2147483648, 123456789, ...randomI32(500, 601, -(2 ** 31), 2 ** 31)]);
  const sources: Record<string, Arr> = { float32: f32bits, bfloat16: all16, float16: all16, int32: ints };
  for (const [sName, sCode] of Object.entries(DTYPE_CODE)) {
    const src = sources[sName] as Arr;
    for (const [dName, dCode] of Object.entries(DTYPE_CODE)) {
      const n = src.length;
      const dst = dName === 'bfloat16' || dName === 'float16' ? new Uint16Array(n) : new Uint32Array(n);
      const r = runAll({ src, dst }, (be, h) => be.cast(h.src, 0, sCode, h.dst, 0, dCode, n));
      check(`cast ${sName} -> ${dName}`, r, ['dst'], 0, 0);
    }
  }
  // In place at the same width is allowed; any other overlap is refused.
  const x = randomF32(9, 602, -100, 100);
  const r = runAll({ x }, (be, h) => be.cast(h.x, 0, DTYPE_CODE.float32, h.x, 0, DTYPE_CODE.int32, 9));
  check('cast in place float32 -> int32', r, ['x'], 0, 0);
  sameError((be) => runOn(be, { x }, (k, h) => k.cast(h.x, 0, DTYPE_CODE.float32, h.x, 4, DTYPE_CODE.bfloat16, 4)), /^cast\(float32 -> bfloat16\): src and dst overlap$/);
});

test('embedding and embeddingBackward: exact gather and in-order scatter-add; out-of-range ids named', () => {
  let seed = 700;
  for (const [n, vocab, d] of [[1, 1, 1], [7, 5, 3], [65, 11, 65], [257, 33, 8]] as const) {
    const weight = randomF32(vocab * d, seed++);
    const ids = randomI32(n, seed++, 0, vocab);
    const fwd = runAll({ weight, ids, out: new Float32Array(n * d) }, (be, h) => be.embedding(h.weight, 0, h.ids, 0, h.out, 0, n, vocab, d));
    check(`embedding (${n}, ${vocab}, ${d})`, fwd, ['out'], 0, 0);
    const bwd = runAll({ ids, dout: randomF32(n * d, seed++), dw: randomF32(vocab * d, seed++) }, (be, h) =>
      be.embeddingBackward(h.ids, 0, h.dout, 0, h.dw, 0, n, vocab, d));
    check(`embeddingBackward (${n}, ${vocab}, ${d})`, bwd, ['dw'], 0, 0);
  }
  const w = randomF32(40, 1), out = new Float32Array(20);
  for (const bad of [[1, 2, 3, 10, 0], [0, -1]]) {
    const ids = Int32Array.from(bad);
    sameError((be) => runOn(be, { w, ids, out }, (k, h) => k.embedding(h.w, 0, h.ids, 0, h.out, 0, ids.length, 10, 4)),
      /^embedding: id (10 at position 3|-1 at position 1) is out of range for vocab size 10$/);
    sameError((be) => runOn(be, { w, ids, out }, (k, h) => k.embeddingBackward(h.ids, 0, h.out, 0, h.w, 0, ids.length, 10, 4)),
      /^embeddingBackward: id .* is out of range for vocab size 10$/);
  }
});

// --- GEMM

test('gemm: all transposes, odd sizes, padded leading dimensions, batches, alpha/beta, bf16', () => {
  interface G { tA: boolean; tB: boolean; M: number; N: number; K: number; alpha: number; beta: number; batch: number; pad: number; cFill?: number }
  const cases: G[] = [];
  for (const tA of [false, true]) {
    for (const tB of [false, true]) {
      for (const [M, N, K] of [[1, 1, 1], [7, 5, 3], [17, 65, 33], [65, 7, 129]] as const) {
        cases.push({ tA, tB, M, N, K, alpha: 1, beta: 0, batch: 1, pad: 0 });
      }
      cases.push({ tA, tB, M: 9, N: 11, K: 13, alpha: -0.5, beta: 0.75, batch: 3, pad: 2 });
    }
  }
  cases.push({ tA: false, tB: false, M: 4, N: 6, K: 5, alpha: 1, beta: 0, batch: 1, pad: 1, cFill: NaN }); // beta 0 never reads C
  cases.push({ tA: false, tB: true, M: 4, N: 6, K: 5, alpha: 0, beta: 2, batch: 2, pad: 0 });            // alpha 0: beta C only
  cases.push({ tA: true, tB: false, M: 3, N: 4, K: 0, alpha: 1, beta: 1, batch: 1, pad: 0 });            // K 0
  cases.push({ tA: false, tB: false, M: 0, N: 4, K: 3, alpha: 1, beta: 1, batch: 2, pad: 0 });
  let seed = 800;
  for (const c of cases) {
    const aRows = c.tA ? c.K : c.M, aCols = c.tA ? c.M : c.K;
    const bRows = c.tB ? c.N : c.K, bCols = c.tB ? c.K : c.N;
    const lda = Math.max(aCols, 1) + c.pad, ldb = Math.max(bCols, 1) + c.pad, ldc = Math.max(c.N, 1) + c.pad;
    const sA = aRows * lda + c.pad, sB = bRows * ldb + c.pad, sC = c.M * ldc + c.pad;
    for (const bf16 of [false, true]) {
      const bufs = {
        a: randomF32(Math.max(c.batch * sA, 1), seed++),
        b: randomF32(Math.max(c.batch * sB, 1), seed++),
        c: c.cFill === undefined ? randomF32(Math.max(c.batch * sC, 1), seed++) : new Float32Array(c.batch * sC).fill(c.cFill),
      };
      const r = runAll(bufs, (be, h) => be.gemm(c.tA, c.tB, c.M, c.N, c.K, c.alpha, h.a, 0, lda, h.b, 0, ldb, c.beta, h.c, 0, ldc,
        c.batch, sA, sB, sC, bf16));
      check(`gemm ${JSON.stringify(c)} bf16=${bf16}`, r, ['c'], 0);
    }
  }
});

test('gemm: bad leading dimensions and short buffers fail with the addon\'s messages', () => {
  const bufs = { a: new Float32Array(12), b: new Float32Array(12), c: new Float32Array(12) };
  sameError((be) => runOn(be, bufs, (k, h) => k.gemm(false, false, 3, 4, 4, 1, h.a, 0, 3, h.b, 0, 4, 0, h.c, 0, 4, 1, 0, 0, 0)),
    /^gemm: lda must be >= 4 \(the stored row length\), got 3 \[M=3 N=4 K=4/);
  sameError((be) => runOn(be, bufs, (k, h) => k.gemm(false, true, 3, 4, 4, 1, h.a, 0, 4, h.b, 0, 4, 0, h.c, 0, 4, 1, 0, 0, 0)),
    /^gemm: buffer 'B' too small: needs 64 bytes, has 48 \[M=3 N=4 K=4 .*; strides A=0 B=0 C=0\]$/);
  sameError((be) => runOn(be, bufs, (k, h) => k.gemm(false, false, -1, 4, 4, 1, h.a, 0, 4, h.b, 0, 4, 0, h.c, 0, 4, 1, 0, 0, 0)),
    /^gemm: size 'M' out of range/);
});

// --- fused NN kernels

/**
 * Over one feature a norm's dx is 0 in exact arithmetic, and what SIMD leaves is rounding noise times rstd
 * (1/sqrt(eps) for LayerNorm): compare it in absolute terms (1e-5 per element) instead of relative ones.
 */
function zeroGradFloor(d: number): number {
  return d === 1 ? 1 : 1e-30;
}

test('rmsnorm forward and backward (dw accumulated, optional)', () => {
  let seed = 900;
  for (const [rows, d] of [[1, 1], [3, 7], [5, 65], [2, 257]] as const) {
    const x = randomF32(rows * d, seed++, -2, 2), w = randomF32(d, seed++, 0.5, 1.5);
    const fwd = runAll({ x, w, y: new Float32Array(rows * d), rstd: new Float32Array(rows) }, (be, h) =>
      be.rmsnormForward(h.x, 0, h.w, 0, h.y, 0, h.rstd, 0, rows, d, 1e-5));
    check(`rmsnormForward (${rows}, ${d})`, fwd, ['y', 'rstd'], 0);
    const rstd = fwd.scalar.out.rstd as Float32Array;
    for (const withDw of [true, false]) {
      const bwd = runAll({ x, w, rstd, dy: randomF32(rows * d, seed++), dx: new Float32Array(rows * d), dw: randomF32(d, seed++) }, (be, h) =>
        be.rmsnormBackward(h.x, 0, h.w, 0, h.rstd, 0, h.dy, 0, h.dx, 0, withDw ? h.dw : 0, 0, rows, d));
      check(`rmsnormBackward (${rows}, ${d}) dw=${withDw}`, bwd, ['dx', 'dw'], 0, SIMD_TOL, zeroGradFloor(d));
    }
  }
  const x = new Float32Array(8);
  sameError((be) => runOn(be, { x }, (k, h) => k.rmsnormForward(h.x, 0, h.x, 0, h.x, 0, h.x, 0, 2, 0, 1e-5)), /^rmsnormForward: dim must be >= 1$/);
  sameError((be) => runOn(be, { x }, (k, h) => k.rmsnormForward(h.x, 0, h.x, 0, h.x, 0, h.x, 0, 2, 4, -1)), /eps must be finite and >= 0/);
  sameError((be) => runOn(be, { x }, (k, h) => k.rmsnormForward(h.x, 0, h.x, 0, h.x, 0, h.x, 0, 3, 4, 1e-5)), /buffer 'x \(3, 4\)' too small/);
});

test('layernorm forward and backward, with and without weight and bias', () => {
  let seed = 1000;
  for (const [rows, d] of [[1, 1], [3, 7], [5, 65], [2, 257]] as const) {
    for (const affine of [true, false]) {
      const x = randomF32(rows * d, seed++, -2, 3), w = randomF32(d, seed++, 0.5, 1.5), b = randomF32(d, seed++);
      const fwd = runAll({ x, w, b, y: new Float32Array(rows * d), mean: new Float32Array(rows), rstd: new Float32Array(rows) }, (be, h) =>
        be.layernormForward(h.x, 0, affine ? h.w : 0, 0, affine ? h.b : 0, 0, h.y, 0, h.mean, 0, h.rstd, 0, rows, d, 1e-5));
      check(`layernormForward (${rows}, ${d}) affine=${affine}`, fwd, ['y', 'mean', 'rstd'], 0);
      const { mean, rstd } = fwd.scalar.out;
      const bwd = runAll({ x, w, mean, rstd, dy: randomF32(rows * d, seed++), dx: new Float32Array(rows * d), dw: randomF32(d, seed++), db: randomF32(d, seed++) },
        (be, h) => be.layernormBackward(h.x, 0, affine ? h.w : 0, 0, h.mean, 0, h.rstd, 0, h.dy, 0, h.dx, 0, affine ? h.dw : 0, 0, h.db, 0, rows, d));
      check(`layernormBackward (${rows}, ${d}) affine=${affine}`, bwd, ['dx', 'dw', 'db'], 0, SIMD_TOL, zeroGradFloor(d));
    }
  }
  const x = new Float32Array(8);
  sameError((be) => runOn(be, { x }, (k, h) => k.layernormBackward(h.x, 0, 0, 0, h.x, 0, h.x, 0, h.x, 0, h.x, 0, h.x, 0, 0, 0, 2, 4)), /dw given without w/);
});

test('rope: partial rotary, positions, forward and backward, in place; out-of-range positions named', () => {
  let seed = 1100;
  for (const [rows, H, D, rot, posCount] of [[1, 1, 2, 2, 1], [7, 3, 8, 8, 9], [5, 2, 64, 32, 16], [9, 4, 10, 6, 30]] as const) {
    const half = rot / 2;
    const cos = randomF32(posCount * half, seed++), sin = randomF32(posCount * half, seed++);
    const positions = randomI32(rows, seed++, 0, posCount);
    const x = randomF32(rows * H * D, seed++);
    for (const backward of [false, true]) {
      const r = runAll({ x, y: new Float32Array(rows * H * D), cos, sin, positions }, (be, h) =>
        be.rope(h.x, 0, h.y, 0, h.cos, 0, h.sin, 0, h.positions, 0, rows, H, D, rot, posCount, backward));
      check(`rope (${rows}, ${H}, ${D}) rot=${rot} backward=${backward}`, r, ['y'], 0);
      const inPlace = runAll({ x, cos, sin, positions }, (be, h) =>
        be.rope(h.x, 0, h.x, 0, h.cos, 0, h.sin, 0, h.positions, 0, rows, H, D, rot, posCount, backward));
      sameBits(`rope in place backward=${backward}`, inPlace.ref.out.x, r.ref.out.y);
    }
  }
  const x = new Float32Array(32), tab = new Float32Array(8);
  for (const [pos, re] of [[[0, 1, 2, 4], /^rope: position 4 at row 3 is out of range \[0, 4\) of the cos\/sin tables$/], [[-1, 0, 0, 0], /^rope: position -1 at row 0/]] as const) {
    sameError((be) => runOn(be, { x, tab, p: Int32Array.from(pos) }, (k, h) =>
      k.rope(h.x, 0, h.x, 0, h.tab, 0, h.tab, 0, h.p, 0, 4, 1, 8, 4, 4, false)), re);
  }
  sameError((be) => runOn(be, { x, tab, p: new Int32Array(4) }, (k, h) => k.rope(h.x, 0, h.x, 0, h.tab, 0, h.tab, 0, h.p, 0, 4, 1, 8, 3, 4, false)),
    /^rope: rotDim 3 must be even, >= 2 and <= D \(8\)$/);
});

test('swiglu forward and backward', () => {
  let seed = 1200;
  for (const n of ODD) {
    const gate = randomF32(n, seed++, -6, 6), up = randomF32(n, seed++, -2, 2);
    const fwd = runAll({ gate, up, out: new Float32Array(n) }, (be, h) => be.swigluForward(h.gate, 0, h.up, 0, h.out, 0, n));
    check(`swigluForward n=${n}`, fwd, ['out'], TRANSCENDENTAL_TOL);
    const bwd = runAll({ gate, up, dout: randomF32(n, seed++), dg: new Float32Array(n), du: new Float32Array(n) }, (be, h) =>
      be.swigluBackward(h.gate, 0, h.up, 0, h.dout, 0, h.dg, 0, h.du, 0, n));
    check(`swigluBackward n=${n}`, bwd, ['dg', 'du'], TRANSCENDENTAL_TOL);
  }
});

// --- attention

test('attention forward and backward: GQA, causal and full, query offset with a longer KV cache, segments, empty rows', () => {
  interface A { B: number; T: number; S: number; Hq: number; Hkv: number; D: number; qOffset: number; causal: boolean; cachePad?: number; seg?: boolean }
  const cases: A[] = [
    { B: 2, T: 7, S: 7, Hq: 4, Hkv: 2, D: 8, qOffset: 0, causal: true },
    { B: 1, T: 5, S: 6, Hq: 3, Hkv: 1, D: 16, qOffset: 0, causal: false },
    { B: 2, T: 1, S: 9, Hq: 4, Hkv: 4, D: 7, qOffset: 8, causal: true, cachePad: 5 }, // one decoding step over a cache
    { B: 1, T: 3, S: 12, Hq: 2, Hkv: 1, D: 65, qOffset: 9, causal: true, cachePad: 3 },
    { B: 2, T: 9, S: 9, Hq: 2, Hkv: 1, D: 5, qOffset: 0, causal: true, seg: true },
    { B: 1, T: 6, S: 6, Hq: 1, Hkv: 1, D: 3, qOffset: 0, causal: false, seg: true },
  ];
  let seed = 1300;
  for (const c of cases) {
    const row = c.S * c.Hkv * c.D;
    const kvbs = row + (c.cachePad ?? 0) * c.Hkv * c.D;
    const q = randomF32(c.B * c.T * c.Hq * c.D, seed++, -2, 2);
    const k = randomF32(c.B * kvbs, seed++, -2, 2), v = randomF32(c.B * kvbs, seed++);
    // Packed rows: segments 1, 2, ... with padding 0; the last query of each row asks for a segment no key has.
    const qSeg = new Int32Array(c.B * c.T), kSeg = new Int32Array(c.B * c.S);
    if (c.seg) {
      for (let b = 0; b < c.B; b++) {
        for (let s = 0; s < c.S; s++) kSeg[b * c.S + s] = s < 3 ? 1 : s < c.S - 1 ? 2 : 0;
        for (let t = 0; t < c.T; t++) qSeg[b * c.T + t] = t === c.T - 1 ? 7 : (kSeg[b * c.S + t] as number);
      }
    }
    const n = c.B * c.T * c.Hq * c.D;
    const fwd = runAll({ q, k, v, out: new Float32Array(n), lse: new Float32Array(c.B * c.Hq * c.T), qSeg, kSeg }, (be, h) =>
      be.attentionForward(h.q, 0, h.k, 0, h.v, 0, h.out, 0, h.lse, 0, c.seg ? h.qSeg : 0, 0, c.seg ? h.kSeg : 0, 0,
        c.B, c.T, c.S, c.Hq, c.Hkv, c.D, kvbs, c.qOffset, 1 / Math.sqrt(c.D), c.causal));
    check(`attentionForward ${JSON.stringify(c)}`, fwd, ['out', 'lse'], TRANSCENDENTAL_TOL);
    if (c.seg) assert.equal((fwd.ref.out.lse as Float32Array)[c.T - 1], -Infinity, 'a query that sees no key has lse -inf');
    const { out, lse } = fwd.scalar.out;
    const dense = c.B * c.S * c.Hkv * c.D;
    const bwd = runAll({ q, k, v, out, lse, dout: randomF32(n, seed++), dq: randomF32(n, seed++), dk: randomF32(dense, seed++), dv: randomF32(dense, seed++), qSeg, kSeg },
      (be, h) => be.attentionBackward(h.q, 0, h.k, 0, h.v, 0, h.out, 0, h.lse, 0, h.dout, 0, h.dq, 0, h.dk, 0, h.dv, 0,
        c.seg ? h.qSeg : 0, 0, c.seg ? h.kSeg : 0, 0, c.B, c.T, c.S, c.Hq, c.Hkv, c.D, kvbs, c.qOffset, 1 / Math.sqrt(c.D), c.causal));
    check(`attentionBackward ${JSON.stringify(c)}`, bwd, ['dq', 'dk', 'dv'], TRANSCENDENTAL_TOL);
  }
  const x = new Float32Array(64);
  const call = (k: Kernels, h: Record<'x', number>, Hq: number, Hkv: number, kvbs: number, seg: boolean): void =>
    k.attentionForward(h.x, 0, h.x, 0, h.x, 0, h.x, 0, h.x, 0, seg ? h.x : 0, 0, 0, 0, 1, 2, 2, Hq, Hkv, 4, kvbs, 0, 0.5, true);
  sameError((be) => runOn(be, { x }, (k, h) => call(k, h, 3, 2, 16, false)), /^attentionForward: Hq must be a multiple of Hkv \(B=1, T=2, S=2, Hq=3, Hkv=2, D=4\)$/);
  sameError((be) => runOn(be, { x }, (k, h) => call(k, h, 2, 2, 15, false)), /kvBatchStride 15 is smaller than S\*Hkv\*D = 16/);
  sameError((be) => runOn(be, { x }, (k, h) => call(k, h, 2, 2, 16, true)), /qSeg and kSeg must be given together/);
});

// --- cross-entropy and AdamW

test('cross-entropy forward, backward and sweep: chunk tails, ignored rows, optional outputs, bf16; labels named', () => {
  let seed = 1400;
  for (const [N, d, V, chunk] of [[1, 1, 1, 1], [7, 5, 11, 4], [9, 17, 65, 64], [5, 33, 257, 100], [4, 8, 30, 30]] as const) {
    const h = randomF32(N * d, seed++, -1, 1), w = randomF32(V * d, seed++, -1, 1);
    const labels = randomI32(N, seed++, 0, V);
    if (N > 2) labels[1] = -100;
    if (N > 4) labels[N - 1] = -100;
    for (const bf16 of [false, true]) {
      const label = `(${N}, ${d}, ${V}) chunk=${chunk} bf16=${bf16}`;
      for (const withRowLoss of [true, false]) {
        const fwd = runAll({ h, w, labels, lse: new Float32Array(N), rl: new Float32Array(N) }, (be, x) =>
          be.crossEntropyForward(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, withRowLoss ? x.rl : 0, 0, N, d, V, chunk, bf16));
        check(`crossEntropyForward ${label}`, fwd, ['lse', 'rl'], TRANSCENDENTAL_TOL);
        const [sum, count] = fwd.ref.ret as [number, number];
        const [nSum, nCount] = fwd.scalar.ret as [number, number];
        assert.equal(count, nCount);
        assert.ok(Math.abs(sum - nSum) <= 1e-12 * Math.max(Math.abs(nSum), 1), `lossSum ${sum} vs scalar ${nSum}`);
        assert.ok(Math.abs(sum - (fwd.simd.ret as [number, number])[0]) <= SIMD_TOL * Math.max(Math.abs(nSum), 1), 'lossSum vs simd');
      }
      const lse = runOn(native, { h, w, labels, lse: new Float32Array(N) }, (be, x) =>
        withIsa(ISA.scalar, () => be.crossEntropyForward(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, 0, 0, N, d, V, chunk, bf16))).out.lse;
      const gradScale = 1 / 3;
      const bwd = runAll({ h, w, labels, lse, dh: randomF32(N * d, seed++), dw: randomF32(V * d, seed++) }, (be, x) =>
        be.crossEntropyBackward(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, x.dh, 0, x.dw, 0, N, d, V, chunk, gradScale, bf16));
      check(`crossEntropyBackward ${label}`, bwd, ['dh', 'dw'], TRANSCENDENTAL_TOL, bf16 ? BF16_SIMD_TOL : SIMD_TOL, 1e-3);
      for (const [withDh, withDw] of [[true, true], [true, false], [false, true]] as const) {
        const sw = runAll({ h, w, labels, lse: new Float32Array(N), rl: new Float32Array(N), dh: randomF32(N * d, seed++), dw: randomF32(V * d, seed++) },
          (be, x) => be.crossEntropySweep(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, x.rl, 0, withDh ? x.dh : 0, 0, withDw ? x.dw : 0, 0,
            N, d, V, chunk, gradScale, bf16));
        check(`crossEntropySweep ${label} dh=${withDh} dw=${withDw}`, sw, ['lse', 'rl', 'dh', 'dw'], TRANSCENDENTAL_TOL, bf16 ? BF16_SIMD_TOL : SIMD_TOL, 1e-3);
        const [sSum, sCount] = sw.ref.ret as [number, number];
        const [wantSum, wantCount] = sw.scalar.ret as [number, number];
        assert.equal(sCount, wantCount);
        assert.ok(Math.abs(sSum - wantSum) <= 1e-12 * Math.max(Math.abs(wantSum), 1), `sweep lossSum ${sSum} vs scalar ${wantSum}`);
      }
    }
  }
  const bufs = { h: new Float32Array(8), w: new Float32Array(40), labels: Int32Array.from([1, -100, 3, 10]), lse: new Float32Array(4) };
  sameError((be) => runOn(be, bufs, (k, x) => k.crossEntropyForward(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, 0, 0, 4, 2, 10, 3)),
    /^crossEntropyForward: label 10 at row 3 is out of range for vocab size 10 \(-100 marks an ignored position\)$/);
  sameError((be) => runOn(be, bufs, (k, x) => k.crossEntropyBackward(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, x.h, 0, x.w, 0, 4, 2, 10, 3, 1)),
    /^crossEntropyBackward: label 10 at row 3/);
  sameError((be) => runOn(be, bufs, (k, x) => k.crossEntropySweep(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, 0, 0, 0, 0, 0, 0, 4, 2, 10, 2, 1)),
    /^crossEntropySweep: label 10 at row 3/);
  sameError((be) => runOn(be, bufs, (k, x) => k.crossEntropySweep(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, 0, 0, 0, 0, 0, 0, 4, 2, 10, 0, 1)),
    /^crossEntropySweep: d, V and rowBlock must be >= 1 \(N=4, d=2, V=10, rowBlock=0\)$/);
  sameError((be) => runOn(be, bufs, (k, x) => k.crossEntropyBackward(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, x.h, 0, x.w, 0, 4, 2, 10, 3, NaN)),
    /gradScale' must be finite/);
});

test('cross-entropy: dw takes a gradient once, so two backward passes give exactly twice one pass', () => {
  const N = 6, d = 9, V = 300, chunk = 128;
  const bufs = { h: randomF32(N * d, 1501), w: randomF32(V * d, 1502), labels: Int32Array.from([3, -100, 299, 0, 150, 7]), lse: new Float32Array(N),
    dh: new Float32Array(N * d), dw: new Float32Array(V * d) };
  for (const bf16 of [false, true]) {
    for (const sweep of [false, true]) {
      const r = runOn(ref, bufs, (k, x) => {
        const pass = (): void => {
          if (sweep) k.crossEntropySweep(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, 0, 0, x.dh, 0, x.dw, 0, N, d, V, 4, 0.2, bf16);
          else k.crossEntropyBackward(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, x.dh, 0, x.dw, 0, N, d, V, chunk, 0.2, bf16);
        };
        k.crossEntropyForward(x.h, 0, x.w, 0, x.labels, 0, x.lse, 0, 0, 0, N, d, V, chunk, bf16);
        pass();
        const once = new Float32Array(V * d);
        k.read(x.dw, 0, once);
        pass();
        return once;
      });
      const once = r.ret as Float32Array;
      assert.ok(once.some((v) => v !== 0));
      sameBits(`two passes bf16=${bf16} sweep=${sweep}`, r.out.dw, once.map((v) => 2 * v));
    }
  }
});

test('adamw: bit-exact steps with weight decay, bias corrections and a gradient scale', () => {
  let seed = 1500;
  for (const n of [0, ...ODD, 1000]) {
    for (const [lr, wd, step, gradScale] of [[1e-3, 0, 1, 1], [3e-4, 0.1, 7, 0.25], [1e-2, 0.01, 1000, 2]] as const) {
      const beta1 = 0.9, beta2 = 0.999;
      const bufs = { p: randomF32(Math.max(n, 1), seed++), g: randomF32(Math.max(n, 1), seed++), m: randomF32(Math.max(n, 1), seed++, -0.1, 0.1),
        v: randomF32(Math.max(n, 1), seed++, 0, 0.01) };
      const r = runAll(bufs, (be, h) => be.adamw(h.p, 0, h.g, 0, h.m, 0, h.v, 0, n, lr, beta1, beta2, 1e-8, wd,
        1 - beta1 ** step, 1 - beta2 ** step, gradScale));
      check(`adamw n=${n} lr=${lr} wd=${wd} step=${step}`, r, ['p', 'm', 'v'], 0);
    }
  }
  const x = new Float32Array(4);
  sameError((be) => runOn(be, { x }, (k, h) => k.adamw(h.x, 0, h.x, 0, h.x, 0, h.x, 0, 1, 1e-3, 0.9, 0.999, 1e-8, 0, 0, 0.5, 1)),
    /^adamw: bias corrections must be in \(0, 1\] .*got bc1 0.000000, bc2 0.500000$/);
});

test('coverage: every kernel and memory call of the addon is implemented by the reference, the rest is named', () => {
  for (const name of REFERENCE_COVERS) assert.equal(typeof ref[name], 'function', name);
  assert.equal(typeof ref.fromBytes, 'function');
  const decided = new Set<string>([...REFERENCE_COVERS, ...REFERENCE_LEAVES]);
  const exports = Object.keys(native).filter((k) => typeof (native as unknown as Record<string, unknown>)[k] === 'function');
  assert.deepEqual(exports.filter((k) => !decided.has(k)), [], 'addon exports neither covered nor left on purpose');
});
