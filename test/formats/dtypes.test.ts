// Float casts against PyTorch's own (test/fixtures/weights/casts.json from scripts/reference/make_weights.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bf16BitsToF32, castFloat, f16BitsToF32, f32BitsToBf16, f32BitsToF16, f32Bits } from '../../src/formats/dtypes.ts';

const casts = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'weights', 'casts.json'), 'utf8')) as {
  f32_bits: number[]; bf16_bits: number[]; f16_bits: number[];
};

test('f32 -> bf16 and f16 round to nearest even exactly as PyTorch', () => {
  let nans = 0;
  casts.f32_bits.forEach((bits, i) => {
    const isNan = (bits & 0x7fffffff) > 0x7f800000;
    assert.equal(f32BitsToF16(bits), casts.f16_bits[i], `f16 of 0x${bits.toString(16)}`);
    if (isNan) {
      // PyTorch's vectorised CPU path writes 0xffff for NaN, its scalar path 0x7fc0: any NaN is right.
      assert.ok(Number.isNaN(bf16BitsToF32(f32BitsToBf16(bits))) && Number.isNaN(bf16BitsToF32(casts.bf16_bits[i]!)));
      nans++;
    } else {
      assert.equal(f32BitsToBf16(bits), casts.bf16_bits[i], `bf16 of 0x${bits.toString(16)}`);
    }
  });
  assert.equal(nans, 1);
  assert.equal(casts.f32_bits.length, 224);
});

test('bf16 and f16 widen to f32 exactly, and narrowing them back is the identity', () => {
  for (let h = 0; h < 0x10000; h++) {
    const b = bf16BitsToF32(h);
    const f = f16BitsToF32(h);
    if (!Number.isNaN(b)) assert.equal(f32BitsToBf16(f32Bits(b)), h);
    if (!Number.isNaN(f)) assert.equal(f32BitsToF16(f32Bits(f)), h);
  }
});

test('castFloat converts buffers between every float dtype', () => {
  const x = new Float32Array([1.5, -2.25, 65504, 1e-7, 3.0e38]);
  const src = new Uint8Array(x.buffer);
  const bf = castFloat(src, 'F32', 'BF16');
  assert.deepEqual([...new Uint16Array(bf.buffer)], [...x].map((v) => f32BitsToBf16(f32Bits(v))));
  const back = new Float32Array(castFloat(bf, 'BF16', 'F32').buffer);
  assert.deepEqual([...back].slice(0, 2), [1.5, -2.25]);
  const h = castFloat(src, 'F32', 'F16');
  assert.deepEqual([...new Uint16Array(h.buffer)], [0x3e00, 0xc080, 0x7bff, 0x0002, 0x7c00]);
  const d = new Float64Array(castFloat(src, 'F32', 'F64').buffer);
  assert.deepEqual([...d], [...x]);
  assert.equal(castFloat(src, 'F32', 'F32'), src);
  assert.throws(() => castFloat(src, 'I32', 'F32'), /only float dtypes/);
});
