// safetensors reader/writer: round trips (single and sharded) and every malformed-header case as a FormatError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { bufferSource } from '../../src/formats/byte-source.ts';
import { parseSafetensors, openSafetensors } from '../../src/formats/safetensors.ts';
import { writeSafetensors, writeSafetensorsSharded, type TensorSpec } from '../../src/formats/safetensors-writer.ts';
import { openWeightSource } from '../../src/formats/weight-source.ts';

function build(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const json = Buffer.from(headerText ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.byteLength));
  return Buffer.concat([len, json, data]);
}

function parse(bytes: Uint8Array) {
  return parseSafetensors(bufferSource('t.safetensors', bytes));
}

function rejects(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(() => parse(bytes), (err: unknown) => err instanceof FormatError && pattern.test(err.message) && err.message.startsWith('t.safetensors'));
}

const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

test('reads a hand-built file', () => {
  const data = Buffer.concat([f32([1, 2, 3, 4, 5, 6]), Buffer.from([7, 8])]);
  const f = parse(build({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, b: { dtype: 'U8', shape: [2], data_offsets: [24, 26] }, __metadata__: { format: 'pt' } }, data));
  assert.deepEqual(f.tensors.map((t) => [t.name, t.dtype, t.shape]), [['a', 'F32', [2, 3]], ['b', 'U8', [2]]]);
  assert.deepEqual([...new Float32Array(new Uint8Array(f.read('a')).buffer)], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...f.read('b')], [7, 8]);
  assert.equal(f.metadata['format'], 'pt');
});

test('every dtype has its byte size', () => {
  const sizes = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
  let off = 0;
  const header: Record<string, unknown> = {};
  for (const [d, s] of Object.entries(sizes)) {
    header[d] = { dtype: d, shape: [3], data_offsets: [off, off + 3 * s] };
    off += 3 * s;
  }
  const f = parse(build(header, new Uint8Array(off)));
  assert.equal(f.tensors.length, 10);
  header['F32'] = { dtype: 'F32', shape: [3], data_offsets: [16 * 3, 16 * 3 + 8] };
  rejects(build(header, new Uint8Array(off)), /tensor F32: dtype F32 x shape \[3\] needs 12 bytes but data_offsets span 8/);
});

test('malformed files are FormatErrors naming file and tensor', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  rejects(new Uint8Array(5), /too short/);
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(10n * 1024n ** 3n);
  rejects(huge, /header claims 10737418240 bytes/);
  rejects(build(ok, new Uint8Array(8)).subarray(0, 20), /header claims \d+ bytes but only/);
  rejects(build(null, new Uint8Array(8), '{"a": {'), /invalid JSON header/);
  rejects(build([1, 2], new Uint8Array(0)), /not a JSON object/);
  rejects(build(ok, new Uint8Array(4)), /tensor a: data_offsets \[0, 8\] run past the data section \(4 bytes\)/);
  rejects(build({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, new Uint8Array(8)), /tensor a: data_offsets \[8, 0\] run backwards/);
  rejects(build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)), /tensor b: bytes overlap those of tensor a/);
  rejects(build({ a: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)), /tensor a: unsupported dtype "Q4"/);
  rejects(build({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, new Uint8Array(8)), /tensor a: shape \[-2\]/);
  rejects(build({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, new Uint8Array(8)), /tensor a: shape .* absurdly large/);
  rejects(build(null, new Uint8Array(16), '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}'), /tensor a: duplicate tensor name/);
  rejects(build({ __metadata__: { format: 3 } }, new Uint8Array(0)), /__metadata__.format is not a string/);
  rejects(build(null, new Uint8Array(0), '\u00ff'), /invalid JSON|UTF-8/);
});

test('writer round trip, single file, aligned data, temp files gone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'st-'));
  try {
    const specs: TensorSpec[] = [{ name: 'x', dtype: 'F32', shape: [2, 2] }, { name: 'y', dtype: 'I8', shape: [3] }];
    const data: Record<string, Uint8Array> = { x: f32([1, -2, 3.5, 0]), y: new Uint8Array([1, 2, 255]) };
    const w = writeSafetensors(join(dir, 'm.safetensors'), specs, (s) => data[s.name]!, { note: 'hi' });
    assert.deepEqual(readdirSync(dir), ['m.safetensors']);
    const bytes = readFileSync(join(dir, 'm.safetensors'));
    assert.equal(w.bytes, bytes.byteLength);
    assert.equal(Number(bytes.readBigUInt64LE(0)) % 8, 0);
    const f = openSafetensors(join(dir, 'm.safetensors'));
    assert.deepEqual(f.metadata, { format: 'pt', note: 'hi' });
    assert.deepEqual(Buffer.from(f.read('x')), Buffer.from(data['x']!));
    assert.deepEqual([...f.read('y')], [1, 2, 255]);
    f.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writer shards by size and writes an index the reader follows', () => {
  const dir = mkdtempSync(join(tmpdir(), 'st-'));
  try {
    const specs: TensorSpec[] = Array.from({ length: 5 }, (_, i) => ({ name: `t${i}`, dtype: 'F32', shape: [i + 1, 4] }));
    const bytesOf = (s: TensorSpec) => f32(Array.from({ length: s.shape[0]! * 4 }, (_, j) => j + Number(s.name.slice(1)) * 100));
    const files = writeSafetensorsSharded(dir, specs, bytesOf, { maxShardBytes: 50 });
    assert.deepEqual(files.map((f) => f.name), [
      'model-00001-of-00004.safetensors', 'model-00002-of-00004.safetensors', 'model-00003-of-00004.safetensors',
      'model-00004-of-00004.safetensors', 'model.safetensors.index.json',
    ]);
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.equal(index.metadata.total_size, 4 * 4 * 15);
    assert.equal(index.weight_map.t1, 'model-00001-of-00004.safetensors');
    const src = openWeightSource(dir);
    assert.equal(src.format, 'safetensors');
    assert.deepEqual(src.tensors.map((t) => t.name).sort(), ['t0', 't1', 't2', 't3', 't4']);
    for (const s of specs) assert.deepEqual(Buffer.from(src.read(s.name)), Buffer.from(bytesOf(s)));
    src.close();

    // An index naming a missing shard, and a tensor the index misplaces, are errors naming them.
    rmSync(join(dir, 'model-00004-of-00004.safetensors'));
    assert.throws(() => openWeightSource(dir), /shard model-00004-of-00004.safetensors is listed but missing/);
    index.weight_map.t4 = 'model-00003-of-00004.safetensors';
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    assert.throws(() => openWeightSource(dir), /tensor t4 is listed in model-00003-of-00004.safetensors but not there/);
    index.weight_map.t4 = '../etc/passwd';
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    assert.throws(() => openWeightSource(dir), (e: unknown) => e instanceof FormatError && /tensor t4 maps to/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
