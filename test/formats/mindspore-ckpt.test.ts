// MindSpore .ckpt: hand-built bytes that follow checkpoint.proto (mindspore-ai/mindspore,
// mindspore/ccsrc/utils/checkpoint.proto) and serialization.py's save path byte for byte, read by our reader and
// written identically by our writer; slices, scalars, every dtype, and the typed errors of damaged files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { bufferSource } from '../../src/formats/byte-source.ts';
import { parseMindSporeCkpt, writeMindSporeCkpt } from '../../src/formats/mindspore-ckpt.ts';

const ascii = (s: string): number[] => [...Buffer.from(s, 'latin1')];

/**
 * One `Checkpoint` message as `_write_parameter_bytes_data` serializes it: 0x0a (value, field 1, bytes), length,
 * then Value { 0x0a tag; 0x12 TensorProto { 0x08 dim (one varint each, proto2 unpacked); 0x12 tensor_type;
 * 0x1a tensor_content } }.
 */
function value(tag: string, dims: number[], type: string, content: number[]): number[] {
  const tensor = [...dims.flatMap((d) => [0x08, d]), 0x12, type.length, ...ascii(type), 0x1a, content.length, ...content];
  const v = [0x0a, tag.length, ...ascii(tag), 0x12, tensor.length, ...tensor];
  return [0x0a, v.length, ...v];
}

const f32 = (xs: number[]): number[] => [...new Uint8Array(Float32Array.from(xs).buffer)];
const i32 = (xs: number[]): number[] => [...new Uint8Array(Int32Array.from(xs).buffer)];

const W = [1.5, -2, 0.25, 3];
const HAND = Uint8Array.from([
  ...value('model.norm_out.weight', [2, 2], 'Float32', f32(W)),
  ...value('global_step', [], 'Int32', i32([7])),
]);

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'sftkit-ckpt-'));
}

test('hand-built checkpoint.proto bytes: names, dtypes, shapes and data', () => {
  const ckpt = parseMindSporeCkpt(bufferSource('hand.ckpt', HAND));
  assert.deepEqual(ckpt.tensors.map((t) => [t.name, t.dtype, t.shape, t.msType]), [
    ['model.norm_out.weight', 'F32', [2, 2], 'Float32'],
    ['global_step', 'I32', [], 'Int32'],
  ]);
  assert.deepEqual([...new Float32Array(new Uint8Array(ckpt.read('model.norm_out.weight')).buffer)], W);
  assert.deepEqual([...new Int32Array(new Uint8Array(ckpt.read('global_step')).buffer)], [7]);
});

test('our writer produces the hand-built bytes exactly', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'out.ckpt');
    const data: Record<string, Uint8Array> = { 'model.norm_out.weight': Uint8Array.from(f32(W)), global_step: Uint8Array.from(i32([7])) };
    const r = writeMindSporeCkpt(path, [
      { name: 'model.norm_out.weight', dtype: 'F32', shape: [2, 2] },
      { name: 'global_step', dtype: 'I32', shape: [] },
    ], (s) => data[s.name]!);
    assert.deepEqual([...readFileSync(path)], [...HAND]);
    assert.equal(r.bytes, HAND.byteLength);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a tensor saved in slices (consecutive Values of one tag) is joined; dims [0] is a scalar', () => {
  const bytes = Uint8Array.from([
    ...value('w', [4], 'Float32', f32([1, 2])),
    ...value('w', [4], 'Float32', f32([3, 4])),
    ...value('lr', [0], 'Float32', f32([0.5])),
    ...value('note', [0], 'str', ascii('abcd')),
  ]);
  const ckpt = parseMindSporeCkpt(bufferSource('sliced.ckpt', bytes));
  assert.deepEqual([...new Float32Array(new Uint8Array(ckpt.read('w')).buffer)], [1, 2, 3, 4]);
  assert.deepEqual(ckpt.get('lr')!.shape, []);
  assert.deepEqual(ckpt.others, [{ name: 'note', type: 'str' }]);
  // Our writer slices the same way when a tensor passes the chunk size.
  const dir = tmp();
  try {
    const path = join(dir, 'w.ckpt');
    writeMindSporeCkpt(path, [{ name: 'w', dtype: 'F32', shape: [4] }], () => Uint8Array.from(f32([1, 2, 3, 4])), { chunkBytes: 8 });
    assert.deepEqual([...readFileSync(path)], [...bytes.subarray(0, 2 * value('w', [4], 'Float32', f32([1, 2])).length)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every dtype sftkit needs round-trips, with multi-byte varints (large dims, long tags)', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'all.ckpt');
    const tag = `layer.${'x'.repeat(200)}`;
    const specs = [
      { name: 'f32', dtype: 'F32' as const, shape: [3, 300] },
      { name: 'f16', dtype: 'F16' as const, shape: [5] },
      { name: 'bf16', dtype: 'BF16' as const, shape: [2, 3] },
      { name: 'i32', dtype: 'I32' as const, shape: [4] },
      { name: 'i64', dtype: 'I64' as const, shape: [2] },
      { name: tag, dtype: 'F32' as const, shape: [1] },
    ];
    const size = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8 } as const;
    const data = new Map(specs.map((s, k) => [s.name, Uint8Array.from({ length: s.shape.reduce((a, b) => a * b, 1) * size[s.dtype] }, (_, i) => (i * 7 + k) & 0xff)]));
    writeMindSporeCkpt(path, specs, (s) => data.get(s.name)!);
    const ckpt = parseMindSporeCkpt(bufferSource('all.ckpt', readFileSync(path)));
    assert.deepEqual(ckpt.tensors.map((t) => [t.name, t.dtype, t.shape]), specs.map((s) => [s.name, s.dtype, s.shape]));
    assert.deepEqual(ckpt.tensors.map((t) => t.msType), ['Float32', 'Float16', 'BFloat16', 'Int32', 'Int64', 'Float32']);
    for (const s of specs) assert.deepEqual(Buffer.from(ckpt.read(s.name)), Buffer.from(data.get(s.name)!), s.name);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('damaged files fail with a FormatError naming the file and, where known, the tensor', () => {
  const refuses = (bytes: number[] | Uint8Array, re: RegExp): void => {
    assert.throws(() => parseMindSporeCkpt(bufferSource('bad.ckpt', Uint8Array.from(bytes))), (e: unknown) => e instanceof FormatError && /bad\.ckpt/.test(e.message) && re.test(e.message));
  };
  refuses(HAND.subarray(0, HAND.length - 3), /past the end|bytes/);
  refuses(value('w', [2], 'UInt16', [1, 2, 3, 4]), /tensor w: has tensor_type "UInt16"/);
  refuses(value('w', [3], 'Float32', f32([1, 2])), /tensor w: Float32 x \[3\] needs 12 bytes but tensor_content holds 8/);
  refuses([...value('a', [1], 'Float32', f32([1])), ...value('b', [1], 'Float32', f32([1])), ...value('a', [1], 'Float32', f32([1]))], /tensor a: appears twice/);
  refuses([...value('a', [1], 'Float32', f32([1])), ...value('a', [2], 'Float32', f32([1, 2]))], /tensor a: has slices of different/);
  refuses([0x12, 0x00], /unexpected field 2/);
  refuses([0x0a, 0x02, 0x12, 0x00], /no tag/);
  refuses(ascii('{"not": "a checkpoint"}'), /bad\.ckpt/);
});
