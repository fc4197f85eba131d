// Weight dtypes on disk (src/dtype.ts's safetensors column, with its sizes) and exact casts between float dtypes
// done in TypeScript (round-to-nearest-even, like PyTorch's `.to()`), so conversion needs no tensor engine.
import { CONVERT_DTYPES, type ConvertDtype, DTYPE_NAMES, DTYPE_TABLE, type Dtype, type SafetensorsDtype, dtypeOfSafetensors } from '../dtype.ts';
import { FormatError } from '../errors.ts';

/** A weight file's dtype by its safetensors name (`BF16`): src/dtype.ts's safetensors column. */
export type WeightDtype = SafetensorsDtype;
export const WEIGHT_DTYPES: readonly WeightDtype[] = DTYPE_NAMES.map((d) => DTYPE_TABLE[d].safetensors);

export const DTYPE_BYTES = Object.fromEntries(DTYPE_NAMES.map((d) => [DTYPE_TABLE[d].safetensors, DTYPE_TABLE[d].bytes])) as Readonly<Record<WeightDtype, number>>;

/** The float dtypes a user may ask conversion to produce, by their PyTorch names. */
export const TARGET_DTYPES = Object.fromEntries(CONVERT_DTYPES.map((d) => [d, DTYPE_TABLE[d].safetensors])) as { readonly [K in ConvertDtype]: (typeof DTYPE_TABLE)[K]['safetensors'] };
export type TargetDtypeName = ConvertDtype;

/** The vocabulary's name of a safetensors dtype (every WeightDtype has one). */
function dtypeOf(d: WeightDtype): Dtype {
  return dtypeOfSafetensors(d) as Dtype;
}

export function isWeightDtype(s: unknown): s is WeightDtype {
  return typeof s === 'string' && dtypeOfSafetensors(s) !== null;
}

export function isFloatDtype(d: WeightDtype): boolean {
  return DTYPE_TABLE[dtypeOf(d)].float;
}

/** PyTorch's name of a dtype (`torch_dtype` in config.json, `--dtype` on the command line). */
export function torchDtypeName(d: WeightDtype): string {
  return dtypeOf(d);
}

/** Element count of a shape, or null when it is not a safe integer (an absurd shape claimed by a bad file). */
export function numelOf(shape: readonly number[]): number | null {
  let n = 1;
  for (const s of shape) {
    if (!Number.isSafeInteger(s) || s < 0) return null;
    n *= s;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
}

// One shared scratch word for bit casts between f32 and u32.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 bits -> bf16 bits, round to nearest even; every NaN becomes 0x7fc0 (as c10::BFloat16 does). */
export function f32BitsToBf16(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 bits -> f16 bits, round to nearest even, overflow to inf, gradual underflow to subnormals. */
export function f32BitsToF16(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? 0x7e00 : 0x7c00); // NaN -> quiet NaN with its sign (as c10::Half)
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    mant |= 0x800000;
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let out = mant >>> shift;
    if (rest > half || (rest === half && (out & 1) === 1)) out += 1;
    return sign | out;
  }
  let out = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (out & 1) === 1)) out += 1; // may carry into the exponent: correct
  return sign | out;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// Casts run in blocks so the f32 scratch stays small whatever the tensor size.
const BLOCK = 1 << 16;

function blockToFloat32(dv: DataView, from: WeightDtype, start: number, out: Float32Array, n: number): void {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < n; i++) {
    const j = start + i;
    if (from === 'F32') u[i] = dv.getUint32(j * 4, true); // bits, so NaN payloads survive
    else if (from === 'F64') out[i] = dv.getFloat64(j * 8, true);
    else if (from === 'BF16') u[i] = dv.getUint16(j * 2, true) << 16;
    else out[i] = f16BitsToF32(dv.getUint16(j * 2, true));
  }
}

/**
 * Casts little-endian float data between F64/F32/F16/BF16. Wider-to-narrower goes through f32 (as PyTorch
 * does for double -> half types); f32 -> bf16/f16 rounds to nearest even. Returns `src` itself when no cast is needed.
 */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function castFloat(src: Uint8Array, from: WeightDtype, to: WeightDtype): Uint8Array {
  if (from === to) return src;
  if (!isFloatDtype(from) || !isFloatDtype(to)) throw new FormatError(`cannot cast ${from} to ${to}: only float dtypes are cast`);
  const n = src.byteLength / DTYPE_BYTES[from];
  const out = new Uint8Array(n * DTYPE_BYTES[to]);
  // bf16 → f32 (every bf16 checkpoint a model loads): the high half of each f32, a shift per element with typed
  // arrays (the DataView loop below is ~10× slower; 13 GB of a 7B model pass here). Little-endian host only.
  if (from === 'BF16' && to === 'F32' && LITTLE_ENDIAN) {
    const aligned = src.byteOffset % 2 === 0 ? src : new Uint8Array(src);
    const a = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    const b = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) b[i] = (a[i] as number) << 16;
    return out;
  }
  const dvIn = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const dvOut = new DataView(out.buffer);
  const scratch = new Float32Array(Math.min(BLOCK, n));
  const bits = new Uint32Array(scratch.buffer);
  for (let start = 0; start < n; start += BLOCK) {
    const m = Math.min(BLOCK, n - start);
    blockToFloat32(dvIn, from, start, scratch, m);
    for (let i = 0; i < m; i++) {
      const j = start + i;
      if (to === 'F32') dvOut.setUint32(j * 4, bits[i]!, true);
      else if (to === 'F64') dvOut.setFloat64(j * 8, scratch[i]!, true);
      else if (to === 'BF16') dvOut.setUint16(j * 2, f32BitsToBf16(bits[i]!), true);
      else dvOut.setUint16(j * 2, f32BitsToF16(bits[i]!), true);
    }
  }
  return out;
}

/** Bits of one f32 value (for tests and probes). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}
