// Casts between float32, bfloat16, float16 and int32, checked bit for bit against JS reference conversions
// (nearest-even by comparing distances in float64), including NaN, ±Inf, subnormals and ties, on every ISA path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DTYPE_CODE } from '../../src/backend/compute.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, isaPaths, withIsa, ODD_SIZES } from '../helpers/native.ts';

type Dtype = keyof typeof DTYPE_CODE;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const valueOf = (bits: number): number => {
  u32[0] = bits >>> 0;
  return f32[0] as number;
};
const bitsOf = (v: number): number => {
  f32[0] = v;
  return u32[0] as number;
};

/** Picks lo or hi (codes and values) by the nearer distance to x, ties to the even code. */
function nearestEven(x: number, loCode: number, lo: number, hiCode: number, hi: number): number {
  const dl = Math.abs(x - lo);
  const dh = Math.abs(hi - x);
  if (dl < dh) return loCode;
  if (dh < dl) return hiCode;
  return loCode % 2 === 0 ? loCode : hiCode;
}

/** float32 bits -> bfloat16 bits. NaN becomes a quiet NaN with the top of its payload. */
function bf16Ref(bits: number): number {
  const x = valueOf(bits);
  const sign = (bits >>> 16) & 0x8000;
  if (Number.isNaN(x)) return ((bits >>> 16) | 0x40) & 0xffff;
  const mag = bits & 0x7fffffff;
  const loCode = mag >>> 16;
  if ((mag & 0xffff) === 0) return sign | loCode;
  const lo = Math.abs(valueOf(loCode << 16));
  // One bfloat16 step above lo; past the largest finite value that step is 2^128 (which rounds to inf).
  const hi = loCode + 1 === 0x7f80 ? 2 ** 128 : Math.abs(valueOf((loCode + 1) << 16));
  return sign | nearestEven(Math.abs(x), loCode, lo, loCode + 1, hi);
}

/** float16 bits -> its value in float64 (NaN for NaN codes). */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

// Non-negative float16 codes 0 .. 0x7c00 with their values; 0x7c00 stands for 65536 when rounding.
const F16_POS = Array.from({ length: 0x7c01 }, (_, c) => (c === 0x7c00 ? 65536 : f16Value(c)));

/** float32 bits -> float16 bits: nearest even by binary search over the positive codes; NaN quieted. */
function f16Ref(bits: number): number {
  const x = valueOf(bits);
  const sign = (bits >>> 16) & 0x8000;
  if (Number.isNaN(x)) return sign | 0x7e00 | ((bits >>> 13) & 0x3ff);
  const a = Math.abs(x);
  if (a >= 65536) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7c00;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((F16_POS[mid] as number) <= a) lo = mid;
    else hi = mid;
  }
  if (F16_POS[lo] === a) return sign | lo;
  return sign | nearestEven(a, lo, F16_POS[lo] as number, hi, F16_POS[hi] as number);
}

/** float16 bits -> float32 bits (NaN keeps its payload, quieted). */
function f16ToF32Ref(h: number): number {
  const sign = (h & 0x8000) << 16;
  if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) return (sign | 0x7fc00000 | ((h & 0x3ff) << 13)) >>> 0;
  return bitsOf(f16Value(h));
}

/** float32 bits -> int32 by truncation; NaN and out-of-range give INT32_MIN. */
function i32Ref(bits: number): number {
  const x = valueOf(bits);
  if (!(x >= -(2 ** 31) && x < 2 ** 31)) return -(2 ** 31);
  return Math.trunc(x) | 0;
}

/** Seeded random 32-bit patterns (xorshift32). */
function randomBits(n: number, seed: number): Uint32Array {
  let s = seed >>> 0 || 1;
  return Uint32Array.from({ length: n }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  });
}

/** float32 test inputs: specials, subnormals, boundaries, ties of both targets, and random bit patterns. */
function f32Inputs(): Uint32Array {
  const specials = [
    0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000, 0xff812345, 0x7fffffff,
    0x00000001, 0x807fffff, 0x00400000, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff,
    0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, 0xbf808000, 0xbf818000,  // bfloat16 ties and near-ties
    0x3f801000, 0x3f803000, 0x3f801001, 0x3f800fff,                          // float16 ties and near-ties
    bitsOf(65504), bitsOf(65519.996), bitsOf(65520), bitsOf(-65520), bitsOf(65536), bitsOf(1e6),
    bitsOf(2 ** -14), bitsOf(2 ** -24), bitsOf(2 ** -25), bitsOf(3 * 2 ** -26), bitsOf(2 ** -25 * 1.0000001),
    bitsOf(5 * 2 ** -26), bitsOf(6.1e-5), bitsOf(-6.0975552e-5), bitsOf(1e-40), bitsOf(-1e-45),
    bitsOf(2 ** 31), bitsOf(-(2 ** 31)), bitsOf(2147483520), bitsOf(-2147483904), bitsOf(-0.99), bitsOf(12345.678),
  ];
  // Values in float16's range, where random bit patterns rarely land.
  const mid = Array.from(randomBits(2000, 11), (r) => bitsOf(((r / 2 ** 32) * 2 - 1) * 2 ** ((r % 40) - 26)));
  return Uint32Array.from([...specials, ...mid, ...randomBits(4001, 7)]);
}

interface Pair {
  from: Dtype;
  to: Dtype;
  input: Uint32Array | Uint16Array | Int32Array;
  expect: (v: number) => number;
}

function pairs(): Pair[] {
  const f = f32Inputs();
  const all16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const ints = Int32Array.from([
    0, 1, -1, 16777216, 16777217, -16777217, 16777219, 2147483647, -2147483648, 33554435, 65504, 65520, 123456789,
    ...Array.from(randomBits(999, 5), (r) => r | 0),
  ]);
  const f16OfBf16 = (h: number) => f16Ref(h << 16);
  const bf16OfF16 = (h: number) => bf16Ref(f16ToF32Ref(h));
  return [
    { from: 'float32', to: 'bfloat16', input: f, expect: bf16Ref },
    { from: 'float32', to: 'float16', input: f, expect: f16Ref },
    { from: 'float32', to: 'int32', input: f, expect: i32Ref },
    { from: 'bfloat16', to: 'float32', input: all16, expect: (h) => (h << 16) >>> 0 },
    { from: 'float16', to: 'float32', input: all16, expect: f16ToF32Ref },
    { from: 'bfloat16', to: 'float16', input: all16, expect: f16OfBf16 },
    { from: 'float16', to: 'bfloat16', input: all16, expect: bf16OfF16 },
    { from: 'int32', to: 'float32', input: ints, expect: (i) => bitsOf(Math.fround(i)) },
    { from: 'int32', to: 'bfloat16', input: ints, expect: (i) => bf16Ref(bitsOf(Math.fround(i))) },
    { from: 'int32', to: 'float16', input: ints, expect: (i) => f16Ref(bitsOf(Math.fround(i))) },
    { from: 'float32', to: 'float32', input: f, expect: (b) => b },
  ];
}

const BYTES: Record<Dtype, number> = { float32: 4, bfloat16: 2, float16: 2, int32: 4 };

/** The output as unsigned codes (uint16 for 16-bit types, uint32 for float32, int32 for int32). */
function readOut(h: number, to: Dtype, n: number): number[] {
  if (BYTES[to] === 2) {
    const out = new Uint16Array(n);
    native.read(h, 0, out);
    return Array.from(out);
  }
  const out = to === 'int32' ? new Int32Array(n) : new Uint32Array(n);
  native.read(h, 0, out);
  return Array.from(out);
}

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16)}`;
}

test('casts are bit-exact against reference conversions on every ISA path', () => {
  for (const p of pairs()) {
    const n = p.input.length;
    const src = p.input instanceof Uint32Array ? new Int32Array(p.input.buffer) : p.input;
    const hs = toNative(src);
    const hd = native.alloc(n * BYTES[p.to], false);
    try {
      const want = Array.from(p.input, p.expect);
      for (const isa of isaPaths()) {
        withIsa(isa.level, () => {
          native.cast(hs, 0, DTYPE_CODE[p.from], hd, 0, DTYPE_CODE[p.to], n);
          const got = readOut(hd, p.to, n);
          for (let i = 0; i < n; i++) {
            if (got[i] !== want[i]) {
              assert.fail(`${p.from} -> ${p.to} on ${isa.name}: input ${hex(p.input[i] as number)} gave ${hex(got[i] as number)}, want ${hex(want[i] as number)}`);
            }
          }
          // Odd lengths exercise the vector tails: each prefix must match too.
          for (const m of ODD_SIZES) {
            native.fill(hd, 0, Math.floor((n * BYTES[p.to]) / 4), 0, DTYPE_CODE.int32);
            native.cast(hs, 0, DTYPE_CODE[p.from], hd, 0, DTYPE_CODE[p.to], m);
            const prefix = readOut(hd, p.to, m + 1);
            assert.deepEqual(prefix.slice(0, m), want.slice(0, m), `${p.from} -> ${p.to} n=${m} on ${isa.name}`);
            assert.equal(prefix[m], 0, `${p.from} -> ${p.to} n=${m} wrote past its end on ${isa.name}`);
          }
        });
      }
    } finally {
      native.free(hs);
      native.free(hd);
    }
  }
});

test('cast rejects unknown dtypes, short buffers and overlapping ranges', () => {
  const h = native.alloc(64, false);
  try {
    assert.throws(() => native.cast(h, 0, 9, h, 0, 0, 1), /cast: unknown dtype code 9 for 'srcDtype'/);
    assert.throws(() => native.cast(h, 0, DTYPE_CODE.float32, h, 0, DTYPE_CODE.bfloat16, 17), /cast\(float32 -> bfloat16\): buffer 'src' too small/);
    assert.throws(() => native.cast(h, 0, DTYPE_CODE.bfloat16, h, 0, DTYPE_CODE.float32, 20), /cast\(bfloat16 -> float32\): buffer 'dst' too small/);
    assert.throws(() => native.cast(h, 0, DTYPE_CODE.float32, h, 0, DTYPE_CODE.float16, 8), /src and dst overlap/);
    assert.throws(() => native.cast(h, 2, DTYPE_CODE.float32, h, 0, DTYPE_CODE.int32, 4), /misaligned offset 2/);
    // In place with the same width is fine: float32 -> int32 over itself.
    native.write(h, 0, new Float32Array([1.5, -2.5, 7.9, -0.5]));
    native.cast(h, 0, DTYPE_CODE.float32, h, 0, DTYPE_CODE.int32, 4);
    const out = new Int32Array(4);
    native.read(h, 0, out);
    assert.deepEqual(Array.from(out), [1, -2, 7, 0]);
  } finally {
    native.free(h);
  }
});
