// f32 values -> the bytes of a ggml tensor type (F32, F16, BF16, Q8_0) and back, the way llama.cpp's gguf-py
// writes them: halves round to nearest even, and Q8_0 blocks use f32 arithmetic with round-half-away-from-zero.
import { FormatError } from '../errors.ts';
import { bf16BitsToF32, f16BitsToF32, f32BitsToBf16, f32BitsToF16 } from './dtypes.ts';
import { GGML_TYPES, type GgmlTypeName } from './gguf.ts';

/** The types a float tensor can be exported as. */
export type GgmlFloatType = Extract<GgmlTypeName, 'F32' | 'F16' | 'BF16' | 'Q8_0'>;

const Q8_BLOCK = GGML_TYPES.Q8_0.blockSize;
const f = Math.fround;

/** round() of C: halves away from zero. */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * Encodes whole rows of f32 values; `values.length` must be a multiple of the block size of `type`.
 * Q8_0 per block of 32: d = max|x| / 127 (f32), q = round(x * (1/d)), d stored as f16.
 */
export function encodeGgml(values: Float32Array, type: GgmlFloatType): Uint8Array {
  const n = values.length;
  const { blockSize, blockBytes } = GGML_TYPES[type];
  if (n % blockSize !== 0) throw new FormatError(`${n} values are not whole ${type} blocks of ${blockSize}`);
  // F32 is the values' own bytes (little-endian hosts only, as everywhere in sftkit): no copy.
  if (type === 'F32') return new Uint8Array(values.buffer, values.byteOffset, n * 4);
  const out = new Uint8Array((n / blockSize) * blockBytes);
  const dv = new DataView(out.buffer);
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  if (type === 'F16' || type === 'BF16') {
    const cast = type === 'F16' ? f32BitsToF16 : f32BitsToBf16;
    for (let i = 0; i < n; i++) dv.setUint16(i * 2, cast(bits[i]!), true);
    return out;
  }
  for (let b = 0; b < n / Q8_BLOCK; b++) {
    const base = b * Q8_BLOCK;
    let amax = 0;
    for (let i = 0; i < Q8_BLOCK; i++) amax = Math.max(amax, Math.abs(values[base + i]!));
    const d = f(amax / 127);
    const id = d === 0 ? 0 : f(1 / d);
    const at = b * blockBytes;
    dv.setUint16(at, f32BitsToF16(new Uint32Array(new Float32Array([d]).buffer)[0]!), true);
    for (let i = 0; i < Q8_BLOCK; i++) dv.setInt8(at + 2 + i, roundHalfAway(f(values[base + i]! * id)));
  }
  return out;
}

/** Decodes ggml bytes of a float type back to f32 (tests, and reading a GGUF back). */
export function decodeGgml(bytes: Uint8Array, type: GgmlFloatType): Float32Array {
  const { blockSize, blockBytes } = GGML_TYPES[type];
  if (bytes.byteLength % blockBytes !== 0) throw new FormatError(`${bytes.byteLength} bytes are not whole ${type} blocks of ${blockBytes} bytes`);
  const blocks = bytes.byteLength / blockBytes;
  const out = new Float32Array(blocks * blockSize);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < blocks; b++) {
    const at = b * blockBytes;
    if (type === 'F32') out[b] = dv.getFloat32(at, true);
    else if (type === 'F16') out[b] = f16BitsToF32(dv.getUint16(at, true));
    else if (type === 'BF16') out[b] = bf16BitsToF32(dv.getUint16(at, true));
    else {
      const d = f16BitsToF32(dv.getUint16(at, true));
      for (let i = 0; i < Q8_BLOCK; i++) out[b * Q8_BLOCK + i] = d * dv.getInt8(at + 2 + i);
    }
  }
  return out;
}
