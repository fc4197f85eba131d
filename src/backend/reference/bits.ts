// Bit-level float conversions of the reference backend, written to the addon's scalar rules (native/kernels/cast.cc
// and round_bf16 in kernels.h): bf16 and IEEE half round to nearest even and keep NaN a quiet NaN.

// One float's bytes seen both ways, for moving between a value and its bits without allocating.
const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

export function f32Bits(f: number): number {
  scratchF[0] = f;
  return scratchU[0]!;
}

export function bitsF32(u: number): number {
  scratchU[0] = u;
  return scratchF[0]!;
}

/** f32 bits -> bf16 bits: nearest even; a NaN is quieted so that truncation keeps it a NaN. */
export function bf16FromBits(u: number): number {
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 -> the nearest bf16 (ties to even) as an f32 value; NaN stays a (quiet) NaN. The bf16 GEMM's operand rounding. */
export function roundBf16(f: number): number {
  scratchF[0] = f;
  let u = scratchU[0]!;
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) u = u | 0x00400000;
  else u = u + 0x7fff + ((u >>> 16) & 1);
  scratchU[0] = (u & 0xffff0000) >>> 0;
  return scratchF[0]!;
}

/** Rounds every element of `src` to bf16 into a new array (operands of a bf16 product, rounded once). */
export function roundedBf16(src: Float32Array): Float32Array {
  const out = new Float32Array(src.length);
  const ou = new Uint32Array(out.buffer);
  const su = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    let u = su[i]!;
    if ((u & 0x7fffffff) >>> 0 > 0x7f800000) u = u | 0x00400000;
    else u = u + 0x7fff + ((u >>> 16) & 1);
    ou[i] = (u & 0xffff0000) >>> 0;
  }
  return out;
}

/** f32 bits -> IEEE binary16 bits as x86's F16C makes them: nearest even, overflow to inf, subnormals kept. */
export function f16FromBits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const a = (u & 0x7fffffff) >>> 0;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  if (a >= 0x38800000) {
    // normal in binary16 (>= 2^-14), or overflowing
    let h = (a - 0x38000000) >>> 13;
    const rem = a & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h += 1;
    if (h > 0x7c00) h = 0x7c00;
    return sign | h;
  }
  if (a <= 0x33000000) return sign; // <= 2^-25 (the tie with 2^-24 goes to the even zero)
  const e = a >>> 23; // 102..112 here
  const mant = (a & 0x7fffff) | 0x800000;
  const shift = 126 - e; // value = mant * 2^(e-150) in units of 2^-24
  let h = mant >>> shift;
  const rem = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (h & 1) !== 0)) h += 1;
  return sign | h;
}

/** IEEE binary16 bits -> f32 bits (exact). */
export function f16ToBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return (sign | f32Bits(m * 5.9604644775390625e-8)) >>> 0; // m * 2^-24, exact
  if (e === 31) return (sign | 0x7f800000 | (m !== 0 ? 0x400000 | (m << 13) : 0)) >>> 0;
  return (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
}

/** f32 -> int32 by truncation toward zero; NaN and out-of-range values give INT32_MIN, as x86's cvttps2dq does. */
export function i32FromF32(f: number): number {
  if (!(f > -2147483904 && f < 2147483648)) return -2147483648;
  return f | 0;
}
