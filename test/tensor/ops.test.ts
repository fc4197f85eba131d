// The op harness at the autograd level: every differentiable op (OP_NAMES) has a case here, checked by
// finite differences (per coordinate on small inputs, directional on larger ones) with its own tolerance;
// view and matmul cases also check the forward against a float64 reference. Kernel parity on every ISA
// path lives in test/native/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { OP_NAMES, type OpName, Tensor, scope } from '../../src/tensor/index.ts';
import { randomF32 } from '../helpers/native.ts';
import { type GradInput, gradCheck } from './gradcheck.ts';

interface Case {
  name: string;
  op: OpName;
  inputs: GradInput[];
  fn: (xs: Tensor[]) => Tensor;
  tol?: number;
  h?: number;
  /** float64 forward reference from the input arrays. */
  ref?: (xs: (Float32Array | Int32Array)[]) => ArrayLike<number>;
}

const f = (shape: number[], seed: number, lo = -1, hi = 1): GradInput => ({
  data: randomF32(shape.reduce((a, b) => a * b, 1), seed, lo, hi),
  shape,
});
const ints = (values: number[], shape: number[]): GradInput => ({ data: Int32Array.from(values), shape, dtype: 'int32' });
const x = (xs: Tensor[], i: number): Tensor => xs[i] as Tensor;

/** Values spread apart by at least `gap`, so kinks (max, relu) are not crossed by the finite difference. */
function spread(n: number, seed: number, gap = 0.1): Float32Array {
  const perm = new T.Rng(seed).permutation(n);
  return Float32Array.from(perm, (p) => (p - n / 2) * gap + 0.05);
}

function refMatmul(a: ArrayLike<number>, b: ArrayLike<number>, M: number, K: number, N: number, ta = false, tb = false): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (a[ta ? k * M + i : i * K + k] as number) * (b[tb ? j * K + k : k * N + j] as number);
      out[i * N + j] = s;
    }
  return out;
}

function ropeTables(positions: number[], rotDim: number, theta = 10000): T.RopeTables {
  const half = rotDim / 2;
  const P = Math.max(...positions) + 1;
  const cos = new Float32Array(P * half);
  const sin = new Float32Array(P * half);
  for (let p = 0; p < P; p++)
    for (let i = 0; i < half; i++) {
      const ang = p / theta ** ((2 * i) / rotDim);
      cos[p * half + i] = Math.cos(ang);
      sin[p * half + i] = Math.sin(ang);
    }
  return { cos: Tensor.from(cos, [P, half]), sin: Tensor.from(sin, [P, half]), positions: Tensor.from(Int32Array.from(positions), [positions.length], 'int32') };
}

// Frozen low-precision weights for the frozenLinear cases, made once (lazily: inside the test's backend).
let int8Weight: T.QuantizedWeight | null = null;
let nf4Weight: T.QuantizedWeight | null = null;
const FROZEN_INT8 = (): T.QuantizedWeight =>
  (int8Weight ??= T.QuantizedWeight.quantize(Tensor.from(randomF32(7 * 10, 64), [7, 10], 'float32', { persistent: true }), 'int8'));
const FROZEN_NF4 = (): T.QuantizedWeight =>
  (nf4Weight ??= T.QuantizedWeight.quantize(Tensor.from(randomF32(5 * 130, 65), [5, 130], 'float32', { persistent: true }), 'nf4'));

let loraBase: Tensor | null = null;
const LORA_BASE = (): Tensor => (loraBase ??= Tensor.from(randomF32(5 * 6, 73), [5, 6], 'float32', { persistent: true }));

/** y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ written out in float64, W = LORA_BASE's (5, 6) values, A (r, 6), B (5, r). */
function loraReference(xd: Float32Array, ad: Float32Array, bd: Float32Array, s: number): Float32Array {
  const w = randomF32(5 * 6, 73);
  const r = ad.length / 6;
  const rows = xd.length / 6;
  const y = new Float32Array(rows * 5);
  for (let m = 0; m < rows; m++) {
    const proj = Array.from({ length: r }, (_, k) => Array.from({ length: 6 }, (_, i) => (xd[m * 6 + i] as number) * (ad[k * 6 + i] as number)).reduce((p, q) => p + q, 0));
    for (let n = 0; n < 5; n++) {
      let v = 0;
      for (let i = 0; i < 6; i++) v += (xd[m * 6 + i] as number) * (w[n * 6 + i] as number);
      for (let k = 0; k < r; k++) v += s * (proj[k] as number) * (bd[n * r + k] as number);
      y[m * 5 + n] = v;
    }
  }
  return y;
}

const CASES: Case[] = [
  { name: 'add broadcast', op: 'add', inputs: [f([3, 4], 1), f([4], 2)], fn: (xs) => T.add(x(xs, 0), x(xs, 1)) },
  { name: 'sub broadcast', op: 'sub', inputs: [f([2, 3, 4], 3), f([3, 1], 4)], fn: (xs) => T.sub(x(xs, 0), x(xs, 1)) },
  { name: 'mul broadcast', op: 'mul', inputs: [f([2, 3, 4], 5), f([1, 3, 4], 6)], fn: (xs) => T.mul(x(xs, 0), x(xs, 1)) },
  { name: 'div', op: 'div', inputs: [f([3, 5], 7), f([3, 5], 8, 0.5, 2)], fn: (xs) => T.div(x(xs, 0), x(xs, 1)) },
  { name: 'pow', op: 'pow', inputs: [f([2, 5], 9, 0.5, 2), f([2, 5], 10, -1, 2)], fn: (xs) => T.pow(x(xs, 0), x(xs, 1)) },
  { name: 'neg', op: 'neg', inputs: [f([9], 11)], fn: (xs) => T.neg(x(xs, 0)) },
  { name: 'exp', op: 'exp', inputs: [f([9], 12)], fn: (xs) => T.exp(x(xs, 0)) },
  { name: 'log', op: 'log', inputs: [f([9], 13, 0.5, 3)], fn: (xs) => T.log(x(xs, 0)) },
  { name: 'sqrt', op: 'sqrt', inputs: [f([9], 14, 0.5, 3)], fn: (xs) => T.sqrt(x(xs, 0)) },
  { name: 'rsqrt', op: 'rsqrt', inputs: [f([9], 15, 0.5, 3)], fn: (xs) => T.rsqrt(x(xs, 0)) },
  { name: 'silu', op: 'silu', inputs: [f([17], 16, -4, 4)], fn: (xs) => T.silu(x(xs, 0)) },
  { name: 'gelu', op: 'gelu', inputs: [f([17], 17, -4, 4)], fn: (xs) => T.gelu(x(xs, 0)) },
  { name: 'scale', op: 'scale', inputs: [f([9], 18)], fn: (xs) => T.scale(x(xs, 0), -2.5) },
  { name: 'powScalar', op: 'powScalar', inputs: [f([9], 19, 0.5, 2)], fn: (xs) => T.powScalar(x(xs, 0), 1.7) },
  { name: 'addScalar', op: 'addScalar', inputs: [f([9], 20)], fn: (xs) => T.addScalar(x(xs, 0), 3) },
  { name: 'square', op: 'square', inputs: [f([9], 21)], fn: (xs) => T.square(x(xs, 0)) },
  { name: 'relu', op: 'relu', inputs: [{ data: spread(12, 22), shape: [12] }], fn: (xs) => T.relu(x(xs, 0)) },
  {
    name: 'where',
    op: 'where',
    inputs: [{ data: Float32Array.from([1, 0, 1, 0, 0, 1]), shape: [2, 3], grad: false }, f([2, 3], 23), f([3], 24)],
    fn: (xs) => T.where(x(xs, 0), x(xs, 1), x(xs, 2)),
  },
  { name: 'sum axis 1', op: 'sum', inputs: [f([3, 4, 2], 25)], fn: (xs) => T.sum(x(xs, 0), 1) },
  { name: 'mean axis 0 keepdim', op: 'mean', inputs: [f([3, 4], 26)], fn: (xs) => T.mean(x(xs, 0), 0, true) },
  { name: 'max last axis', op: 'max', inputs: [{ data: spread(12, 27), shape: [3, 4] }], fn: (xs) => T.max(x(xs, 0), -1) },
  { name: 'softmax', op: 'softmax', inputs: [f([3, 7], 28, -2, 2)], fn: (xs) => T.softmax(x(xs, 0)) },
  { name: 'logSoftmax', op: 'logSoftmax', inputs: [f([3, 7], 29, -2, 2)], fn: (xs) => T.logSoftmax(x(xs, 0)) },
  {
    name: 'matmul 2-D',
    op: 'matmul',
    inputs: [f([5, 7], 30), f([7, 3], 31)],
    fn: (xs) => T.matmul(x(xs, 0), x(xs, 1)),
    ref: ([a, b]) => refMatmul(a as Float32Array, b as Float32Array, 5, 7, 3),
  },
  {
    name: 'matmul with transposed views',
    op: 'matmul',
    inputs: [f([7, 5], 32), f([3, 7], 33)],
    fn: (xs) => T.matmul(T.mT(x(xs, 0)), T.mT(x(xs, 1))),
    ref: ([a, b]) => refMatmul(a as Float32Array, b as Float32Array, 5, 7, 3, true, true),
  },
  {
    name: 'matmul 3-D @ 2-D',
    op: 'matmul',
    inputs: [f([2, 4, 6], 34), f([6, 5], 35)],
    fn: (xs) => T.matmul(x(xs, 0), x(xs, 1)),
    ref: ([a, b]) => refMatmul(a as Float32Array, b as Float32Array, 8, 6, 5),
  },
  {
    name: 'matmul batched',
    op: 'matmul',
    inputs: [f([3, 4, 6], 36), f([3, 6, 2], 37)],
    fn: (xs) => T.matmul(x(xs, 0), x(xs, 1)),
    ref: ([a, b]) => {
      const out = new Float64Array(3 * 4 * 2);
      for (let i = 0; i < 3; i++) out.set(refMatmul((a as Float32Array).subarray(i * 24, i * 24 + 24), (b as Float32Array).subarray(i * 12, i * 12 + 12), 4, 6, 2), i * 8);
      return out;
    },
  },
  {
    name: 'reshape',
    op: 'reshape',
    inputs: [f([2, 6], 38)],
    fn: (xs) => T.mul(T.reshape(x(xs, 0), [3, -1]), T.reshape(x(xs, 0), [3, 4])),
  },
  {
    name: 'transpose',
    op: 'transpose',
    inputs: [f([2, 3], 39)],
    fn: (xs) => T.contiguous(T.transpose(x(xs, 0), 0, 1)),
    ref: ([a]) => [0, 3, 1, 4, 2, 5].map((i) => (a as Float32Array)[i] as number),
  },
  {
    name: 'permute',
    op: 'permute',
    inputs: [f([2, 3, 4], 40)],
    fn: (xs) => T.contiguous(T.permute(x(xs, 0), [2, 0, 1])),
    ref: ([a]) => {
      const out: number[] = [];
      for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) out.push((a as Float32Array)[i * 12 + j * 4 + k] as number);
      return out;
    },
  },
  {
    name: 'slice',
    op: 'slice',
    inputs: [f([4, 5], 41)],
    fn: (xs) => T.contiguous(T.slice(x(xs, 0), 1, 1, 4)),
    ref: ([a]) => {
      const out: number[] = [];
      for (let i = 0; i < 4; i++) for (let j = 1; j < 4; j++) out.push((a as Float32Array)[i * 5 + j] as number);
      return out;
    },
  },
  {
    name: 'expand',
    op: 'expand',
    inputs: [f([3, 1], 42)],
    fn: (xs) => T.contiguous(T.expand(x(xs, 0), [2, 3, 4])),
    ref: ([a]) => Array.from({ length: 24 }, (_, i) => (a as Float32Array)[Math.floor(i / 4) % 3] as number),
  },
  { name: 'contiguous', op: 'contiguous', inputs: [f([3, 4], 43)], fn: (xs) => T.contiguous(T.transpose(x(xs, 0), 0, 1)) },
  {
    name: 'concat',
    op: 'concat',
    inputs: [f([2, 3], 44), f([2, 2], 45)],
    fn: (xs) => T.concat([x(xs, 0), x(xs, 1)], 1),
    ref: ([a, b]) => [0, 1, 2, -1, -2, 3, 4, 5, -3, -4].map((i) => (i >= 0 ? (a as Float32Array)[i] : (b as Float32Array)[-i - 1]) as number),
  },
  {
    name: 'cast f32 -> bf16 -> f32',
    op: 'cast',
    inputs: [{ data: Float32Array.from([0.5, -1.25, 3, 0.0078125]), shape: [4] }],
    fn: (xs) => T.cast(T.cast(x(xs, 0), 'bfloat16'), 'float32'),
    ref: ([a]) => a as Float32Array,
    h: 0.25,
  },
  {
    name: 'embedding',
    op: 'embedding',
    inputs: [f([6, 4], 46), ints([5, 0, 2, 5], [2, 2])],
    fn: (xs) => T.embedding(x(xs, 0), x(xs, 1)),
  },
  { name: 'rmsNorm', op: 'rmsNorm', inputs: [f([3, 8], 47), f([8], 48, 0.5, 1.5)], fn: (xs) => T.rmsNorm(x(xs, 0), x(xs, 1), 1e-5) },
  {
    name: 'layerNorm',
    op: 'layerNorm',
    inputs: [f([3, 8], 49), f([8], 50, 0.5, 1.5), f([8], 51)],
    fn: (xs) => T.layerNorm(x(xs, 0), x(xs, 1), x(xs, 2), 1e-5),
  },
  {
    name: 'rope partial rotary',
    op: 'rope',
    inputs: [f([1, 3, 2, 6], 52)],
    fn: (xs) => T.rope(x(xs, 0), ropeTables([0, 1, 2], 4), 4),
  },
  { name: 'swiglu', op: 'swiglu', inputs: [f([2, 9], 53, -3, 3), f([2, 9], 54)], fn: (xs) => T.swiglu(x(xs, 0), x(xs, 1)) },
  {
    name: 'attention causal GQA',
    op: 'attention',
    inputs: [f([2, 5, 4, 8], 55), f([2, 5, 2, 8], 56), f([2, 5, 2, 8], 57)],
    fn: (xs) => T.attention(x(xs, 0), x(xs, 1), x(xs, 2), { causal: true }),
    tol: 2e-2,
  },
  {
    name: 'crossEntropy fused',
    op: 'crossEntropy',
    inputs: [f([5, 8], 58), f([11, 8], 59), ints([3, -100, 10, 0, 7], [5])],
    fn: (xs) => T.crossEntropy(x(xs, 0), x(xs, 1), x(xs, 2), { chunk: 4 }).lossSum,
  },
  {
    name: 'frozenLinear over an int8 weight (gradient for x only)',
    op: 'frozenLinear',
    inputs: [f([2, 3, 10], 62)],
    fn: (xs) => T.frozenLinear(x(xs, 0), FROZEN_INT8()),
  },
  {
    name: 'frozenLinear over an NF4 weight',
    op: 'frozenLinear',
    inputs: [f([4, 130], 63)],
    fn: (xs) => T.frozenLinear(x(xs, 0), FROZEN_NF4()),
  },
  {
    name: 'loraLinear over a float32 frozen weight (gradients for x, A and B)',
    op: 'loraLinear',
    inputs: [f([2, 3, 6], 64), f([2, 6], 65), f([5, 2], 66)],
    fn: (xs) => T.loraLinear(x(xs, 0), LORA_BASE(), x(xs, 1), x(xs, 2), { scale: 1.5 }),
    ref: ([xd, ad, bd]) => loraReference(xd as Float32Array, ad as Float32Array, bd as Float32Array, 1.5),
  },
  {
    // 15 tokens ≥ 2·6 inputs and 2·5 outputs: in training the adapter is folded into W in both passes.
    name: 'loraLinear folded into its weight (many tokens)',
    op: 'loraLinear',
    inputs: [f([3, 5, 6], 74), f([2, 6], 75), f([5, 2], 76)],
    fn: (xs) => T.loraLinear(x(xs, 0), LORA_BASE(), x(xs, 1), x(xs, 2), { scale: 0.75 }),
    ref: ([xd, ad, bd]) => loraReference(xd as Float32Array, ad as Float32Array, bd as Float32Array, 0.75),
  },
  {
    // 11 tokens: folded for dx (11 ≥ 2·5 outputs), not for y (11 < 2·6 inputs).
    name: 'loraLinear folded in backward only',
    op: 'loraLinear',
    inputs: [f([11, 6], 77), f([3, 6], 78), f([5, 3], 79)],
    fn: (xs) => T.loraLinear(x(xs, 0), LORA_BASE(), x(xs, 1), x(xs, 2), { scale: 2 }),
    ref: ([xd, ad, bd]) => loraReference(xd as Float32Array, ad as Float32Array, bd as Float32Array, 2),
  },
  {
    name: 'loraLinear with a dropout mask',
    op: 'loraLinear',
    inputs: [f([4, 6], 67), f([3, 6], 68), f([5, 3], 69)],
    // A fresh stream per call: every evaluation (finite differences included) draws the same mask.
    fn: (xs) => T.loraLinear(x(xs, 0), LORA_BASE(), x(xs, 1), x(xs, 2), { scale: 0.5, dropout: { p: 1 / 3, rng: new T.Rng(5) } }),
  },
  {
    name: 'loraLinear over an int8 weight (panel by panel)',
    op: 'loraLinear',
    inputs: [f([3, 10], 70), f([2, 10], 71), f([7, 2], 72)],
    fn: (xs) => T.loraLinear(x(xs, 0), FROZEN_INT8(), x(xs, 1), x(xs, 2), { scale: 2 }),
  },
  {
    name: 'recompute of a block',
    op: 'recompute',
    inputs: [f([4, 6], 60), f([6, 6], 61)],
    fn: (xs) => T.recompute((a, w) => T.silu(T.matmul(a as Tensor, w as Tensor)), [x(xs, 0), x(xs, 1)]),
  },
];

test('the harness covers every op', () => {
  const covered = new Set(CASES.map((c) => c.op));
  assert.deepEqual(OP_NAMES.filter((op) => !covered.has(op)), []);
});

for (const c of CASES) {
  test(`op ${c.op}: ${c.name}`, () => {
    if (c.ref) {
      const got = scope(() => c.fn(c.inputs.map((i) => Tensor.from(i.data, i.shape, i.dtype ?? 'float32'))).toArray() as Float32Array);
      const want = c.ref(c.inputs.map((i) => i.data));
      assert.equal(got.length, want.length);
      let num = 0;
      let den = 0;
      for (let i = 0; i < got.length; i++) {
        num += ((got[i] as number) - (want[i] as number)) ** 2;
        den += (want[i] as number) ** 2;
      }
      assert.ok(Math.sqrt(num / Math.max(den, 1e-30)) <= 1e-6, `forward relative error ${Math.sqrt(num / den)}`);
    }
    const { error, checked } = gradCheck(c.fn, c.inputs, { h: c.h ?? 1e-2 });
    assert.ok(checked > 0);
    assert.ok(error <= (c.tol ?? 1e-2), `gradient relative error ${error.toExponential(2)} > ${c.tol ?? 1e-2}`);
  });
}
