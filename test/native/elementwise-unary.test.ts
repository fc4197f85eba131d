// Unary ops (forward and backward), broadcasting binary ops, where and fill: every ISA path against a
// float64 JS reference and SIMD against the naive kernel, on odd sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UNARY_OP, BINARY_OP, DTYPE_CODE } from '../../src/backend/compute.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, readF32, readI32, relError, randomF32, isaPaths, withIsa, ODD_SIZES, withBuffers } from '../helpers/native.ts';

/** Runs fn with a tracker of native handles that are all freed afterwards. */
const GELU_C = Math.sqrt(2 / Math.PI);
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

interface UnaryCase {
  name: keyof typeof UNARY_OP;
  alpha: number;
  lo: number;
  hi: number;
  f: (x: number, a: number) => number;
  df: (x: number, a: number) => number;
  tol: number;
}

const UNARY_CASES: UnaryCase[] = [
  { name: 'neg', alpha: 0, lo: -3, hi: 3, f: (x) => -x, df: () => -1, tol: 1e-7 },
  { name: 'exp', alpha: 0, lo: -20, hi: 20, f: (x) => Math.exp(x), df: (x) => Math.exp(x), tol: 2e-7 },
  { name: 'log', alpha: 0, lo: 1e-3, hi: 100, f: (x) => Math.log(x), df: (x) => 1 / x, tol: 2e-7 },
  { name: 'sqrt', alpha: 0, lo: 1e-3, hi: 100, f: (x) => Math.sqrt(x), df: (x) => 0.5 / Math.sqrt(x), tol: 1e-7 },
  { name: 'rsqrt', alpha: 0, lo: 1e-2, hi: 100, f: (x) => 1 / Math.sqrt(x), df: (x) => -0.5 * x ** -1.5, tol: 2e-7 },
  { name: 'silu', alpha: 0, lo: -12, hi: 12, f: (x) => x * sigmoid(x), df: (x) => sigmoid(x) * (1 + x * (1 - sigmoid(x))), tol: 3e-7 },
  {
    name: 'gelu', alpha: 0, lo: -8, hi: 8,
    f: (x) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x ** 3))),
    df: (x) => {
      const t = Math.tanh(GELU_C * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
    },
    tol: 3e-7,
  },
  { name: 'scale', alpha: -0.37, lo: -3, hi: 3, f: (x, a) => a * x, df: (_x, a) => a, tol: 1e-7 },
  { name: 'powScalar', alpha: 2, lo: -3, hi: 3, f: (x, a) => x ** a, df: (x, a) => a * x ** (a - 1), tol: 1e-7 },
  { name: 'powScalar', alpha: 0.5, lo: 0.01, hi: 9, f: (x, a) => x ** a, df: (x, a) => a * x ** (a - 1), tol: 1e-7 },
  { name: 'powScalar', alpha: -1, lo: 0.1, hi: 9, f: (x, a) => x ** a, df: (x, a) => a * x ** (a - 1), tol: 1e-7 },
  { name: 'powScalar', alpha: 1.7, lo: 0.01, hi: 9, f: (x, a) => x ** a, df: (x, a) => a * x ** (a - 1), tol: 2e-7 },
  { name: 'addScalar', alpha: 0.25, lo: -3, hi: 3, f: (x, a) => x + a, df: () => 1, tol: 1e-7 },
  { name: 'square', alpha: 0, lo: -3, hi: 3, f: (x) => x * x, df: (x) => 2 * x, tol: 1e-7 },
  { name: 'relu', alpha: 0, lo: -3, hi: 3, f: (x) => Math.max(x, 0), df: (x) => (x > 0 ? 1 : 0), tol: 0 },
];

// Sizes also crossing the 16K-element threading grain.
const SIZES = [...ODD_SIZES, 40_001];

test('unary forward and backward match float64 references on every ISA path', () => {
  for (const c of UNARY_CASES) {
    for (const n of SIZES) {
      withBuffers((keep) => {
        const x = randomF32(n, n * 31 + c.alpha * 7 + c.name.length, c.lo, c.hi);
        const dy = randomF32(n, n + 5, -1, 1);
        const ref = Float64Array.from(x, (v) => c.f(v, c.alpha));
        const refGrad = Float64Array.from(x, (v, i) => (dy[i] as number) * c.df(v, c.alpha));
        const hx = keep(toNative(x));
        const hy = keep(native.alloc(n * 4, false));
        const hdy = keep(toNative(dy));
        const hdx = keep(native.alloc(n * 4, false));
        const outs: Float32Array[] = [];
        for (const isa of isaPaths()) {
          withIsa(isa.level, () => {
            const code = UNARY_OP[c.name];
            native.unary(code, hx, 0, hy, 0, n, c.alpha);
            const y = readF32(hy, n);
            const what = `${c.name}(${c.alpha}) n=${n} ${isa.name}`;
            assert.ok(relError(y, ref) <= c.tol, `${what}: forward error ${relError(y, ref)}`);
            native.unaryBackward(code, hx, 0, hy, 0, hdy, 0, hdx, 0, n, c.alpha);
            const dx = readF32(hdx, n);
            assert.ok(relError(dx, refGrad) <= Math.max(3 * c.tol, 1e-6), `${what}: backward error ${relError(dx, refGrad)}`);
            outs.push(y, dx);
          });
        }
        // SIMD against the naive kernel (outs[0], outs[1] come from the scalar path).
        for (let i = 2; i < outs.length; i++) {
          const naive = outs[i % 2] as Float32Array;
          assert.ok(relError(outs[i] as Float32Array, naive) <= Math.max(3 * c.tol, 1e-6), `${c.name} n=${n}: SIMD vs naive`);
        }
      });
    }
  }
});

test('unary special values: exp and log overflow, underflow, zero, negatives, NaN, subnormals', () => {
  const xs = new Float32Array([-Infinity, -100, -87, 0, 88, 89, Infinity, NaN, 1e-40, -1, 1]);
  const expRef = [0, Math.exp(-100), Math.exp(-87), 1, Math.exp(88), Infinity, Infinity, NaN, 1, Math.exp(-1), Math.E];
  const logRef = [NaN, NaN, NaN, -Infinity, Math.log(88), Math.log(89), Infinity, NaN, Math.log(1e-40), NaN, 0];
  withBuffers((keep) => {
    const hx = keep(toNative(xs));
    const hy = keep(native.alloc(xs.length * 4, false));
    for (const isa of isaPaths()) {
      withIsa(isa.level, () => {
        for (const [op, ref] of [['exp', expRef], ['log', logRef]] as const) {
          native.unary(UNARY_OP[op], hx, 0, hy, 0, xs.length, 0);
          const y = readF32(hy, xs.length);
          ref.forEach((r, i) => {
            const got = y[i] as number;
            const where = `${op}(${xs[i]}) on ${isa.name}: got ${got}, want ${r}`;
            if (Number.isNaN(r)) assert.ok(Number.isNaN(got), where);
            else if (!Number.isFinite(r) || r === 0) assert.equal(got, r, where);
            // Results below the normal range may flush to zero on the SIMD paths.
            else if (Math.abs(r) < 1.2e-38) assert.ok(Math.abs(got - r) < 1.2e-38, where);
            else assert.ok(Math.abs(got - r) <= 4e-7 * Math.abs(r), where);
          });
        }
      });
    }
  });
});

type Shape = number[];

/** Row-major contiguous strides of a shape. */
function contiguous(shape: Shape): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = (s[i + 1] as number) * (shape[i + 1] as number);
  return s;
}

/** Elements a strided view spans. */
function span(shape: Shape, strides: number[]): number {
  return shape.reduce((acc, d, i) => acc + (d - 1) * (strides[i] as number), 0) + 1;
}

const BINARY_REF: Record<keyof typeof BINARY_OP, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: (a, b) => a ** b,
  maximum: (a, b) => Math.max(a, b),
};

/** float64 reference of a broadcasting binary op read through strides. */
function binaryRef(op: keyof typeof BINARY_OP, a: Float32Array, as: number[], b: Float32Array, bs: number[], shape: Shape): Float64Array {
  const n = shape.reduce((x, y) => x * y, 1);
  const out = new Float64Array(n);
  const idx = new Array<number>(shape.length).fill(0);
  for (let flat = 0; flat < n; flat++) {
    let oa = 0;
    let ob = 0;
    for (let d = 0; d < shape.length; d++) {
      oa += (idx[d] as number) * (as[d] as number);
      ob += (idx[d] as number) * (bs[d] as number);
    }
    out[flat] = BINARY_REF[op](a[oa] as number, b[ob] as number);
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d] = (idx[d] as number) + 1;
      if ((idx[d] as number) < (shape[d] as number)) break;
      idx[d] = 0;
    }
  }
  return out;
}

interface BroadcastCase {
  label: string;
  shape: Shape;
  aStrides: number[];
  bStrides: number[];
}

function broadcastCases(): BroadcastCase[] {
  const cases: BroadcastCase[] = [];
  for (const n of ODD_SIZES) cases.push({ label: `same (${n})`, shape: [n], aStrides: [1], bStrides: [1] });
  for (const [r, c] of [[7, 63], [65, 7], [1, 257], [257, 257]] as const) {
    cases.push({ label: `row (${r},${c})+(${c})`, shape: [r, c], aStrides: [c, 1], bStrides: [0, 1] });
    cases.push({ label: `column (${r},${c})+(${r},1)`, shape: [r, c], aStrides: [c, 1], bStrides: [1, 0] });
    cases.push({ label: `scalar (${r},${c})+()`, shape: [r, c], aStrides: [c, 1], bStrides: [0, 0] });
    cases.push({ label: `scalar-first ()+(${r},${c})`, shape: [r, c], aStrides: [0, 0], bStrides: [c, 1] });
    cases.push({ label: `transposed a (${r},${c})`, shape: [r, c], aStrides: [1, r], bStrides: [c, 1] });
  }
  cases.push({ label: '3-D (7,65,63)+(7,1,63)', shape: [7, 65, 63], aStrides: [65 * 63, 63, 1], bStrides: [63, 0, 1] });
  cases.push({ label: '3-D (5,1,9)+(1,7,1) -> (5,7,9)', shape: [5, 7, 9], aStrides: [9, 0, 1], bStrides: [0, 1, 0] });
  cases.push({ label: '4-D with size-1 dims', shape: [3, 1, 65, 1], aStrides: [65, 65, 1, 1], bStrides: [0, 0, 1, 0] });
  return cases;
}

test('binary ops broadcast (row, column, scalar, 3-D, strided) on every ISA path', () => {
  for (const c of broadcastCases()) {
    const an = span(c.shape, c.aStrides);
    const bn = span(c.shape, c.bStrides);
    const n = c.shape.reduce((x, y) => x * y, 1);
    withBuffers((keep) => {
      const a = randomF32(an, an + 1, 0.1, 2);
      const b = randomF32(bn, bn + 2, 0.1, 2);
      const ha = keep(toNative(a));
      const hb = keep(toNative(b));
      const ho = keep(native.alloc(n * 4, false));
      for (const op of Object.keys(BINARY_OP) as (keyof typeof BINARY_OP)[]) {
        const ref = binaryRef(op, a, c.aStrides, b, c.bStrides, c.shape);
        let naive: Float32Array | null = null;
        for (const isa of isaPaths()) {
          withIsa(isa.level, () => {
            native.binary(BINARY_OP[op], ha, 0, c.aStrides, hb, 0, c.bStrides, ho, 0, c.shape);
            const out = readF32(ho, n);
            const tol = op === 'pow' || op === 'div' ? 2e-7 : 1e-7;
            assert.ok(relError(out, ref) <= tol, `${op} ${c.label} on ${isa.name}: error ${relError(out, ref)}`);
            if (naive) assert.ok(relError(out, naive) <= tol, `${op} ${c.label}: ${isa.name} vs naive`);
            else naive = out;
          });
        }
      }
    });
  }
});

test('binary maximum propagates NaN and binary reads through a byte offset', () => {
  withBuffers((keep) => {
    const a = new Float32Array([0, 0, 1, NaN, 3, -1, 2, 5, NaN]);
    const b = new Float32Array([2, NaN, 1, 4, -3, 7, NaN, 1]);
    const ha = keep(toNative(a));
    const hb = keep(toNative(b));
    const ho = keep(native.alloc(32, false));
    for (const isa of isaPaths()) {
      withIsa(isa.level, () => {
        // a starts one element in: 8 elements read from offset 4 bytes.
        native.binary(BINARY_OP.maximum, ha, 4, [1], hb, 0, [1], ho, 0, [8]);
        assert.deepEqual(Array.from(readF32(ho, 8)), [2, NaN, NaN, 4, -1, 7, NaN, NaN], isa.name);
      });
    }
  });
});

test('binary accepts 0-d (scalar) shapes and empty shapes', () => {
  withBuffers((keep) => {
    const ha = keep(toNative(new Float32Array([3])));
    const hb = keep(toNative(new Float32Array([4])));
    const ho = keep(toNative(new Float32Array([-1])));
    for (const isa of isaPaths()) {
      withIsa(isa.level, () => {
        native.binary(BINARY_OP.mul, ha, 0, [], hb, 0, [], ho, 0, []);
        assert.equal(readF32(ho, 1)[0], 12, isa.name);
        native.binary(BINARY_OP.add, ha, 0, [1, 1], hb, 0, [1, 1], ho, 0, [0, 5]);  // nothing to do
        assert.equal(readF32(ho, 1)[0], 12, isa.name);
      });
    }
  });
});

test('where selects a where cond != 0 and b elsewhere', () => {
  for (const n of SIZES) {
    withBuffers((keep) => {
      const cond = Float32Array.from(randomF32(n, 3), (v) => (v > 0.2 ? 1 : v < -0.5 ? -2 : 0));
      const a = randomF32(n, 4);
      const b = randomF32(n, 5);
      const ho = keep(native.alloc(n * 4, false));
      native.where(keep(toNative(cond)), 0, keep(toNative(a)), 0, keep(toNative(b)), 0, ho, 0, n);
      const want = Float32Array.from(cond, (c, i) => (c !== 0 ? (a[i] as number) : (b[i] as number)));
      assert.deepEqual(readF32(ho, n), want);
    });
  }
});

test('fill writes float32, int32, bfloat16 and float16 values', () => {
  withBuffers((keep) => {
    const n = 40_003;
    const h = keep(native.alloc(n * 4, false));
    native.fill(h, 0, n, 1.5, DTYPE_CODE.float32);
    assert.ok(readF32(h, n).every((v) => v === 1.5));
    native.fill(h, 4, n - 1, -7, DTYPE_CODE.int32);
    const ints = readI32(h, n);
    assert.equal(ints[0], 0x3fc00000);  // the first float32 1.5 is untouched
    assert.ok(ints.subarray(1).every((v) => v === -7));
    native.fill(h, 0, 2 * n, 1.5, DTYPE_CODE.bfloat16);
    const halves = new Uint16Array(2 * n);
    native.read(h, 0, halves);
    assert.ok(halves.every((v) => v === 0x3fc0));
    native.fill(h, 2, 7, -2.5, DTYPE_CODE.float16);
    native.read(h, 0, halves.subarray(0, 9));
    assert.deepEqual(Array.from(halves.subarray(0, 9)), [0x3fc0, 0xc100, 0xc100, 0xc100, 0xc100, 0xc100, 0xc100, 0xc100, 0x3fc0]);
    assert.throws(() => native.fill(h, 0, 3, 0.5, DTYPE_CODE.int32), /fill: value 0.5.* is not an int32/);
    assert.throws(() => native.fill(h, 0, n + 1, 0, DTYPE_CODE.float32), /fill: buffer 'x' too small/);
  });
});

test('elementwise ops reject too-small buffers, bad shapes and bad op codes', () => {
  withBuffers((keep) => {
    const h = keep(native.alloc(64, false));
    assert.throws(() => native.unary(UNARY_OP.exp, h, 0, h, 0, 17, 0), /unary\(exp\): buffer 'x' too small/);
    assert.throws(() => native.unary(UNARY_OP.exp, h, 8, h, 0, 16, 0), /buffer 'x' too small: needs 72 bytes, has 64/);
    assert.throws(() => native.unary(99, h, 0, h, 0, 1, 0), /unary: unknown op code 99/);
    assert.throws(() => native.unary(UNARY_OP.exp, h, 2, h, 0, 1, 0), /misaligned offset 2/);
    assert.throws(() => native.unaryBackward(UNARY_OP.exp, h, 0, 0, 0, h, 0, h, 0, 4, 0), /unaryBackward\(exp\): buffer 'y' is not a live/);
    // neg reads neither x nor y, so both may be absent.
    native.unaryBackward(UNARY_OP.neg, 0, 0, 0, 0, h, 0, h, 0, 16, 0);
    assert.throws(() => native.binary(BINARY_OP.add, h, 0, [4, 1], h, 0, [0, 1], h, 0, [4, 5]), /binary\(add\): buffer 'a' too small/);
    assert.throws(() => native.binary(BINARY_OP.add, h, 0, [1], h, 0, [1, 1], h, 0, [2]), /binary\(add\): shape \[2\] has 1 dims/);
    assert.throws(() => native.binary(BINARY_OP.add, h, 0, [-1], h, 0, [1], h, 0, [2]), /negative strides are not supported/);
    const nine = new Array<number>(9).fill(1);
    assert.throws(() => native.binary(BINARY_OP.add, h, 0, nine, h, 0, nine, h, 0, nine), /at most 8 are supported/);
    assert.throws(() => native.binary(BINARY_OP.mul, h, 0, [0], h, 0, [0], h, 0, [17]), /binary\(mul\): buffer 'out' too small/);
    assert.throws(() => native.where(h, 0, h, 0, h, 0, h, 0, 17), /where: buffer 'cond' too small/);
  });
});
