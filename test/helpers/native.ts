// Test helpers for kernel tests: native buffers from typed arrays and back, relative errors, ISA paths.
import assert from 'node:assert/strict';
import { host, ISA } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';

/** Copies a typed array into a new native buffer; returns its handle. Free with native.free. */
export function toNative(data: Float32Array | Int32Array | Uint16Array): number {
  const h = native.alloc(Math.max(data.byteLength, 4), false);
  native.write(h, 0, data);
  return h;
}

export function readF32(h: number, n: number, byteOffset = 0): Float32Array {
  const out = new Float32Array(n);
  native.read(h, byteOffset, out);
  return out;
}

export function readI32(h: number, n: number, byteOffset = 0): Int32Array {
  const out = new Int32Array(n);
  native.read(h, byteOffset, out);
  return out;
}

/** ‖a − b‖ / ‖b‖ (‖a‖ when b is all zeros). */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    num += d * d;
    den += (b[i] as number) * (b[i] as number);
  }
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

/** A seeded stream of uniform floats in [lo, hi) (mulberry32), for reproducible test data. */
export function randomF32(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = lo + (hi - lo) * u;
  }
  return out;
}

/** The ISA levels this machine supports, from scalar (the naive reference) up, with names. */
export function isaPaths(): { name: string; level: number }[] {
  const detected = host.detectedIsa();
  return Object.entries(ISA)
    .filter(([, level]) => level <= detected)
    .map(([name, level]) => ({ name, level }));
}

/** Runs fn with the given ISA level active, restoring the previous level afterwards. */
export function withIsa<T>(level: number, fn: () => T): T {
  const before = host.getIsa();
  host.setIsa(level);
  try {
    return fn();
  } finally {
    host.setIsa(before);
  }
}

/** Sizes that exercise SIMD tails and blocking edges (STYLE.md). */
export const ODD_SIZES = [1, 7, 63, 65, 257] as const;

/** Native buffers of one op call, freed together. */
export class Arena {
  private handles: number[] = [];
  f32(data: ArrayLike<number>): number {
    return this.keep(toNative(Float32Array.from(data)));
  }
  i32(data: ArrayLike<number>): number {
    return this.keep(toNative(Int32Array.from(data)));
  }
  zeros(n: number): number {
    return this.keep(native.alloc(Math.max(4 * n, 4), true));
  }
  private keep(h: number): number {
    this.handles.push(h);
    return h;
  }
  free(): void {
    for (const h of this.handles) native.free(h);
    this.handles = [];
  }
}

export function withArena<T>(fn: (a: Arena) => T): T {
  const a = new Arena();
  try {
    return fn(a);
  } finally {
    a.free();
  }
}

/** Runs fn with a `keep` that registers native handles to free afterwards. */
export function withBuffers<T>(fn: (keep: (h: number) => number) => T): T {
  const handles: number[] = [];
  try {
    return fn((h) => {
      handles.push(h);
      return h;
    });
  } finally {
    for (const h of handles) native.free(h);
  }
}

/** The raw bits of float32 values, for bit-exact comparisons. */
export function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/**
 * ‖got − want‖ / ‖want‖ ≤ tol; with `floorRms`, the denominator is at least floorRms · sqrt(n), for tensors
 * that are zero in exact arithmetic (e.g. a softmax over one class, whose gradients are 0 up to rounding).
 */
export function closeRel(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, floorRms = 0): void {
  assert.equal(got.length, want.length, `${name}: length`);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < want.length; i++) {
    diff += ((got[i] as number) - (want[i] as number)) ** 2;
    norm += (want[i] as number) ** 2;
  }
  const e = Math.sqrt(diff) / Math.max(Math.sqrt(norm), floorRms * Math.sqrt(want.length), Number.MIN_VALUE);
  assert.ok(e <= tol, `${name}: relative error ${e.toExponential(2)} > ${tol}`);
}

/** f32 -> nearest bf16 (ties to even), kept in f32 format; NaN stays (a quiet) NaN. What the bf16 kernels must match. */
export function roundBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  let v = u[0] as number;
  if ((v & 0x7fffffff) > 0x7f800000) v = (v | 0x400000) >>> 0;
  else v = (v + 0x7fff + ((v >>> 16) & 1)) >>> 0;
  u[0] = (v & 0xffff0000) >>> 0;
  return f[0] as number;
}
