// The GGUF writer byte for byte (header, value types, tensor infos, alignment padding) against bytes built by
// hand from the spec, the reader on what the writer wrote, ggml encodings (Q8_0 rounding, F16, BF16), and
// the reader's typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { bufferSource } from '../../src/formats/byte-source.ts';
import { decodeGgml, encodeGgml } from '../../src/formats/ggml-encode.ts';
import { encodeGgufHeader, openGguf, parseGguf, writeGguf, type GgufValue } from '../../src/formats/gguf.ts';

// Little-endian pieces, written out independently of the writer.
const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const u64 = (v: number): number[] => [...u32(v), 0, 0, 0, 0];
const str = (s: string): number[] => [...u64(Buffer.byteLength(s)), ...Buffer.from(s, 'utf8')];
const f32 = (v: number): number[] => [...Buffer.from(new Float32Array([v]).buffer)];

const METADATA = new Map<string, GgufValue>([
  ['general.architecture', { type: 'string', value: 'llama' }],
  ['test.n', { type: 'uint32', value: 7 }],
  ['test.arr', { type: 'array', itemType: 'int32', value: [1, -2] }],
]);
const TENSORS = [
  { name: 'a', shape: [2, 3], type: 'F32' as const },
  { name: 'b', shape: [1], type: 'F32' as const },
];
const A = [1, 2, 3, 4, 5, 6];

function expectedFile(): Buffer {
  const header = [
    ...Buffer.from('GGUF'), ...u32(3), ...u64(2), ...u64(3),
    ...str('general.architecture'), ...u32(8), ...str('llama'),
    ...str('test.n'), ...u32(4), ...u32(7),
    ...str('test.arr'), ...u32(9), ...u32(5), ...u64(2), ...u32(1), ...u32(-2 >>> 0),
    // tensor a: 2 dims, innermost first (3, then 2), F32, offset 0
    ...str('a'), ...u32(2), ...u64(3), ...u64(2), ...u32(0), ...u64(0),
    // tensor b: 24 bytes of a rounded up to the 32-byte alignment
    ...str('b'), ...u32(1), ...u64(1), ...u32(0), ...u64(32),
  ];
  assert.equal(header.length, 205);
  const pad = Array(224 - 205).fill(0);
  return Buffer.from([...header, ...pad, ...A.flatMap(f32), ...Array(8).fill(0), ...f32(-0.5)]);
}

test('GGUF writer: exact bytes of a tiny file (header, KV types, tensor infos, alignment padding)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const path = join(dir, 'tiny.gguf');
    const size = writeGguf(path, {
      metadata: METADATA,
      tensors: TENSORS,
      writeTensor(t, write) {
        if (t.name === 'a') {
          write(encodeGgml(new Float32Array(A.slice(0, 4)), 'F32')); // in two chunks, as the exporter streams
          write(encodeGgml(new Float32Array(A.slice(4)), 'F32'));
        } else write(encodeGgml(new Float32Array([-0.5]), 'F32'));
      },
    });
    const bytes = readFileSync(path);
    assert.deepEqual(bytes, expectedFile());
    assert.equal(size, 260);
    const f = openGguf(path);
    try {
      assert.equal(f.version, 3);
      assert.equal(f.dataStart, 224);
      assert.deepEqual([...f.metadata], [...METADATA]);
      assert.deepEqual(f.tensors.map((t) => [t.name, t.shape, t.type, t.begin, t.bytes]), [['a', [2, 3], 'F32', 224, 24], ['b', [1], 'F32', 256, 4]]);
      assert.deepEqual(Array.from(decodeGgml(f.read('a'), 'F32')), A);
    } finally {
      f.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GGUF writer: every scalar type round-trips, general.alignment is honoured, bad values are refused', () => {
  const md = new Map<string, GgufValue>([
    ['general.alignment', { type: 'uint32', value: 64 }],
    ['u8', { type: 'uint8', value: 255 }], ['i8', { type: 'int8', value: -128 }], ['u16', { type: 'uint16', value: 65535 }],
    ['i16', { type: 'int16', value: -32768 }], ['i32', { type: 'int32', value: -5 }], ['f32', { type: 'float32', value: 0.5 }],
    ['b', { type: 'bool', value: true }], ['u64', { type: 'uint64', value: 2 ** 40 }], ['i64', { type: 'int64', value: -(2 ** 40) }],
    ['f64', { type: 'float64', value: 0.1 }], ['s', { type: 'array', itemType: 'string', value: ['x', '', 'é'] }],
  ]);
  const h = encodeGgufHeader(md, [{ name: 'w', shape: [2, 32], type: 'Q8_0' }, { name: 'v', shape: [3], type: 'F16' }], 64);
  assert.equal(h.bytes.byteLength % 64, 0);
  assert.deepEqual(h.offsets, [0, 128]); // Q8_0: 2 rows x 34 bytes = 68, padded to 128
  const file = Buffer.concat([h.bytes, Buffer.alloc(128 + 6)]);
  const f = parseGguf(bufferSource('mem.gguf', file));
  assert.deepEqual([...f.metadata], [...md]);
  assert.equal(f.alignment, 64);
  assert.throws(() => encodeGgufHeader(new Map([['k', { type: 'uint8', value: 256 }]]), []), /k: 256 is not a uint8/);
  assert.throws(() => encodeGgufHeader(new Map(), [{ name: 'q', shape: [4, 33], type: 'Q8_0' }]), /rows of 33 elements are not whole Q8_0 blocks/);
  assert.throws(() => encodeGgufHeader(md, [], 32), /general.alignment: 64 does not match the alignment 32/);
});

test('Q8_0: scale max|x|/127 as f16, values rounded half away from zero; F16/BF16 round to nearest even', () => {
  const x = new Float32Array(64);
  x.set([127, -2.5, 2.5, 0.49, -0.5, 1.5, -126.6]); // block 0 has d = 1 exactly; block 1 is all zeros
  const q = encodeGgml(x, 'Q8_0');
  assert.equal(q.byteLength, 68);
  assert.deepEqual([...q.subarray(0, 2)], [0x00, 0x3c]); // f16 1.0
  assert.deepEqual([...new Int8Array(q.buffer, 2, 7)], [127, -3, 3, 0, -1, 2, -127]);
  assert.deepEqual([...q.subarray(34)], Array(34).fill(0)); // zero block: d = 0, q = 0
  assert.deepEqual(Array.from(decodeGgml(q, 'Q8_0').subarray(0, 7)), [127, -3, 3, 0, -1, 2, -127]);
  assert.deepEqual([...encodeGgml(new Float32Array([1, -2, 65520]), 'F16')], [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c]); // 65520 rounds to inf
  assert.deepEqual([...encodeGgml(new Float32Array([1, 1.00390625]), 'BF16')], [0x80, 0x3f, 0x80, 0x3f]); // halfway: to even
});

test('GGUF reader: typed errors for a wrong magic, another version, truncation and bad tensor infos', () => {
  const good = expectedFile();
  const parse = (b: Buffer): unknown => parseGguf(bufferSource('bad.gguf', b));
  const bad = (mutate: (b: Buffer) => Buffer, re: RegExp): void => {
    assert.throws(() => parse(mutate(Buffer.from(good))), (e: unknown) => e instanceof FormatError && re.test(e.message) && e.message.startsWith('bad.gguf: '));
  };
  bad((b) => { b.write('GGML', 0); return b; }, /magic is "GGML", not "GGUF"/);
  bad((b) => { b.writeUInt32LE(2, 4); return b; }, /GGUF version 2 is not supported/);
  bad((b) => b.subarray(0, 100), /needs bytes/);
  bad((b) => b.subarray(0, 250), /tensor b: data \[256, 260\) runs past the end/);
  bad((b) => { b.writeUInt32LE(99, 172 + 8 + 1 + 4 + 8); return b; }, /tensor b: ggml type 99/); // b's type field
  bad((b) => { b.writeUInt32LE(33, 172 + 8 + 1 + 4 + 8 + 4); return b; }, /offset 33 is not a multiple of the alignment 32/);
  bad((b) => { b.writeUInt32LE(13, 24 + 8 + 20); return b; }, /unknown value type 13/);
  bad((b) => { b.writeUInt32LE(0xffffff, 24 + 8 + 20 + 4); return b; }, /claims 16777215 bytes|needs bytes/);
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    writeFileSync(join(dir, 'x.gguf'), good);
    assert.throws(() => openGguf(join(dir, 'missing.gguf')), FormatError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
