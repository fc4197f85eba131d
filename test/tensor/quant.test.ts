// NF4 and int8 quantization against the reference of scripts/reference/quant_reference.py, bit for bit:
// codes, scales, double-quantized scales and dequantized values; panels of rows equal the whole.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Tensor } from '../../src/tensor/index.ts';
import type { Storage } from '../../src/tensor/storage.ts';
import { QuantizedWeight } from '../../src/tensor/quant.ts';
import { isaPaths, withIsa } from '../helpers/native.ts';

const dir = new URL('../fixtures/quant/', import.meta.url);
const meta = JSON.parse(readFileSync(new URL('quant.json', dir), 'utf8')) as {
  tensors: { name: string; dtype: string; shape: number[]; offset: number; bytes: number }[];
};
const blob = readFileSync(new URL('quant.bin', dir));

function raw(name: string): Uint8Array {
  const t = meta.tensors.find((e) => e.name === name);
  if (!t) throw new Error(`fixture has no ${name}`);
  return new Uint8Array(blob.buffer.slice(blob.byteOffset + t.offset, blob.byteOffset + t.offset + t.bytes));
}
const f32 = (name: string): Float32Array => new Float32Array(raw(name).buffer);
const shapeOf = (name: string): number[] => meta.tensors.find((e) => e.name === name)!.shape;

/** Bit-exact equality of two float arrays, naming the first difference. */
function sameBits(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${what}[${i}]: ${actual[i]} != ${expected[i]}`);
  }
}

function bytesOf(s: Storage, n: number): Uint8Array {
  const out = new Uint8Array(n);
  s.backend.read(s.handle, 0, out);
  return out;
}

for (const name of ['weight', 'odd']) {
  test(`NF4 ${name}: codes, absmax and dequantized values equal the reference bit for bit`, () => {
    const x = f32(`${name}.x`);
    const w = Tensor.from(x, [1, x.length]);
    const q = QuantizedWeight.quantize(w, 'nf4', { doubleQuant: false });
    try {
      assert.deepEqual(bytesOf(q.codes, Math.ceil(x.length / 2)), raw(`${name}.nf4.packed`));
      sameBits(q.blockScales(), f32(`${name}.nf4.absmax`), 'absmax');
      sameBits(q.dequantize().toArray() as Float32Array, f32(`${name}.nf4.dequant`), 'dequant');
    } finally {
      q.release();
    }
  });

  test(`NF4 ${name} with double quantization: scale codes, absmax2, offset and values equal the reference`, () => {
    const x = f32(`${name}.x`);
    const q = QuantizedWeight.quantize(Tensor.from(x, [1, x.length]), 'nf4');
    try {
      const nb = Math.ceil(x.length / 64);
      assert.deepEqual(bytesOf(q.scaleCodes!, nb), raw(`${name}.dq.codes`));
      const a2 = new Float32Array(Math.ceil(nb / 256));
      q.scales.backend.read(q.scales.handle, 0, a2);
      sameBits(a2, f32(`${name}.dq.absmax2`), 'absmax2');
      sameBits(new Float32Array([q.offset]), f32(`${name}.dq.offset`), 'offset');
      sameBits(q.blockScales(), f32(`${name}.dq.absmax`), 'restored absmax');
      sameBits(q.dequantize().toArray() as Float32Array, f32(`${name}.dq.dequant`), 'dequant');
    } finally {
      q.release();
    }
  });
}

test('int8 per channel: codes (round half to even), scales and dequantized values equal the reference', () => {
  const [rows, cols] = shapeOf('int8.x') as [number, number];
  const q = QuantizedWeight.quantize(Tensor.from(f32('int8.x'), [rows, cols]), 'int8');
  try {
    assert.deepEqual(bytesOf(q.codes, rows * cols), raw('int8.q'));
    const scale = new Float32Array(rows);
    q.scales.backend.read(q.scales.handle, 0, scale);
    sameBits(scale, f32('int8.scale'), 'scale');
    sameBits(q.dequantize().toArray() as Float32Array, f32('int8.dequant'), 'dequant');
  } finally {
    q.release();
  }
});

test('panels of rows dequantize to the same values as the whole weight (odd widths, odd starts)', () => {
  const rows = 13;
  const cols = 37; // odd: panels start mid-byte and mid-block
  const data = new Float32Array(rows * cols).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
  for (const kind of ['nf4', 'int8'] as const) {
    const q = QuantizedWeight.quantize(Tensor.from(data, [rows, cols]), kind);
    try {
      const whole = q.dequantize().toArray() as Float32Array;
      for (const [r0, n] of [[0, 1], [1, 3], [4, 5], [9, 4], [12, 1]] as const) {
        const out = Tensor.empty([n, cols]);
        q.dequantizeRows(r0, n, out);
        sameBits(out.toArray() as Float32Array, whole.subarray(r0 * cols, (r0 + n) * cols), `${kind} rows ${r0}+${n}`);
      }
      assert.throws(() => q.dequantizeRows(12, 2, Tensor.empty([2, cols])), /outside a weight of 13 rows/);
    } finally {
      q.release();
    }
  }
});

test('NF4 dequantization on every ISA path equals the scalar one bit for bit (odd starts and lengths, tails)', () => {
  // Widths around the vector step (2·W codes: 32 on AVX-512, 16 on AVX2) and the 64-element block.
  const scalar = isaPaths().find((p) => p.name === 'scalar');
  assert.ok(scalar);
  for (const cols of [1, 7, 31, 33, 63, 64, 65, 127, 257, 4099]) {
    const rows = 5;
    const data = new Float32Array(rows * cols).map((_, i) => Math.sin(i * 0.731) * (1 + (i % 11)));
    for (const doubleQuant of [true, false]) {
      const q = QuantizedWeight.quantize(Tensor.from(data, [rows, cols]), 'nf4', { doubleQuant });
      try {
        const read = (r0: number, n: number): Float32Array => {
          const out = Tensor.empty([n, cols]);
          q.dequantizeRows(r0, n, out);
          return out.toArray() as Float32Array;
        };
        const want = withIsa(scalar.level, () => [read(0, rows), read(1, 3), read(4, 1)]);
        for (const path of isaPaths()) {
          const got = withIsa(path.level, () => [read(0, rows), read(1, 3), read(4, 1)]);
          got.forEach((g, k) => sameBits(g, want[k] as Float32Array, `${path.name} cols ${cols} dq ${doubleQuant} part ${k}`));
        }
      } finally {
        q.release();
      }
    }
  }
});

test('quantize refuses what is not a contiguous float32 matrix, naming the tensor', () => {
  const t = Tensor.from([1, 2, 3, 4, 5, 6], [1, 2, 3]);
  assert.throws(() => QuantizedWeight.quantize(t, 'nf4', { name: 'model.layers.0.mlp.up_proj.weight' }), /model\.layers\.0\.mlp\.up_proj\.weight must be a contiguous float32 matrix, got float32 \[1, 2, 3\]/);
  assert.throws(() => QuantizedWeight.quantize(Tensor.from([1, 2], [1, 2], 'int32'), 'int8', { name: 'w' }), /w must be a contiguous float32 matrix, got int32/);
});

test('frozen linear over NF4/int8/bf16 panels equals GEMM on the dequantized weight (forward and input gradient)', async () => {
  const { frozenLinearForward, frozenLinearInputGrad, Bf16Rows, panelRows } = await import('../../src/tensor/frozen-gemm.ts');
  const { matmul, transpose, cast } = await import('../../src/tensor/index.ts');
  // N spans several panels with a partial last one: K = 8192 gives 128-row panels.
  const [M, N, K] = [5, 300, 8192];
  assert.equal(panelRows(N, K), 128);
  const wData = new Float32Array(N * K).map((_, i) => Math.sin(i * 0.0137) * 0.05);
  const x = Tensor.from(new Float32Array(M * K).map((_, i) => Math.cos(i * 0.071)), [M, K]);
  const dy = Tensor.from(new Float32Array(M * N).map((_, i) => Math.sin(i * 0.31)), [M, N]);
  const sources = [
    ['nf4', QuantizedWeight.quantize(Tensor.from(wData, [N, K]), 'nf4')],
    ['int8', QuantizedWeight.quantize(Tensor.from(wData, [N, K]), 'int8')],
    ['bf16', new Bf16Rows(cast(Tensor.from(wData, [N, K]), 'bfloat16'))],
  ] as const;
  for (const [kind, src] of sources) {
    const dense = Tensor.empty([N, K]);
    src.dequantizeRows(0, N, dense);
    const y = frozenLinearForward(x, src).toArray() as Float32Array;
    const yRef = matmul(x, transpose(dense, 0, 1)).toArray() as Float32Array;
    sameBits(y, yRef, `${kind} forward`); // same K loop per output column: the same bits
    const dx = frozenLinearInputGrad(dy, src).toArray() as Float32Array;
    const dxRef = matmul(dy, dense).toArray() as Float32Array;
    // Panels add partial sums over N in a different grouping: within fp32 rounding of the sum of |terms|.
    let worst = 0;
    const absDense = dense.toArray() as Float32Array;
    const dyA = dy.toArray() as Float32Array;
    for (let m = 0; m < M; m++) {
      for (let k = 0; k < K; k += 97) {
        let mag = 0;
        for (let n = 0; n < N; n++) mag += Math.abs((dyA[m * N + n] as number) * (absDense[n * K + k] as number));
        worst = Math.max(worst, Math.abs((dx[m * K + k] as number) - (dxRef[m * K + k] as number)) / (mag * 2 ** -24 * N));
      }
    }
    assert.ok(worst < 1, `${kind} input gradient: ${worst} of the fp32 rounding bound`);
  }
  for (const [, src] of sources) if (src instanceof QuantizedWeight) src.release();
});
