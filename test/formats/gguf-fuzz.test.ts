// Seeded fuzzing of the GGUF reader: mutated valid files (bit flips, interesting u32/u64 values in the header,
// truncation, deletions, insertions) must parse or fail with a FormatError, never crash, hang or allocate
// without bound. 400 cases by default; SFTKIT_FUZZ_CASES raises it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError } from '../../src/errors.ts';
import { bufferSource } from '../../src/formats/byte-source.ts';
import { encodeGgml } from '../../src/formats/ggml-encode.ts';
import { encodeGgufHeader, parseGguf, type GgufValue } from '../../src/formats/gguf.ts';

const CASES = Math.min(Number(process.env['SFTKIT_FUZZ_CASES'] ?? 400), 20_000);

/** mulberry32, so a failing case replays from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function baseFile(): { bytes: Buffer; headerEnd: number } {
  const md = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.alignment', { type: 'uint32', value: 32 }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: ['<unk>', '<s>', '▁a'] }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'float32', value: [0, 0, -1.5] }],
    ['llama.rope.freq_base', { type: 'float32', value: 10000 }],
    ['flag', { type: 'bool', value: true }],
    ['big', { type: 'uint64', value: 123456789 }],
  ]);
  const tensors = [
    { name: 'token_embd.weight', shape: [3, 32], type: 'Q8_0' as const },
    { name: 'output_norm.weight', shape: [32], type: 'F32' as const },
    { name: 'blk.0.attn_q.weight', shape: [2, 4], type: 'F16' as const },
  ];
  const h = encodeGgufHeader(md, tensors);
  const data = Buffer.alloc(h.fileBytes - h.bytes.byteLength);
  data.set(encodeGgml(new Float32Array(96).map((_, i) => i / 7 - 3), 'Q8_0'), 0);
  return { bytes: Buffer.concat([h.bytes, data]), headerEnd: h.bytes.byteLength };
}

const INTERESTING = [0, 1, 3, 4, 9, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0xffffffff];

function mutate(base: Buffer, headerEnd: number, r: () => number): Buffer {
  const b = Buffer.from(base);
  const at = (): number => (r() < 0.8 ? Math.floor(r() * headerEnd) : Math.floor(r() * b.byteLength));
  switch (Math.floor(r() * 6)) {
    case 0:
      for (let i = 0, n = 1 + Math.floor(r() * 6); i < n; i++) { const p = at(); b[p] = b[p]! ^ (1 << Math.floor(r() * 8)); }
      return b;
    case 1: { // a u32 field (counts, types, lengths) set to an edge value
      const p = Math.min(at(), b.byteLength - 4);
      b.writeUInt32LE(INTERESTING[Math.floor(r() * INTERESTING.length)]!, p);
      return b;
    }
    case 2: { // a u64 field set huge
      const p = Math.min(at(), b.byteLength - 8);
      b.writeBigUInt64LE(r() < 0.5 ? 0xffffffffffffffffn : BigInt(Math.floor(r() * 2 ** 40)), p);
      return b;
    }
    case 3:
      return b.subarray(0, Math.floor(r() * b.byteLength));
    case 4: {
      const p = at();
      return Buffer.concat([b.subarray(0, p), b.subarray(p + 1 + Math.floor(r() * 12))]);
    }
    default: {
      const p = at();
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 12) }, () => Math.floor(r() * 256)));
      return Buffer.concat([b.subarray(0, p), junk, b.subarray(p)]);
    }
  }
}

test(`GGUF reader fuzz: ${CASES} mutated files parse or fail with FormatError`, () => {
  const { bytes, headerEnd } = baseFile();
  const f = parseGguf(bufferSource('base.gguf', bytes));
  assert.equal(f.tensors.length, 3);
  let ok = 0;
  let rejected = 0;
  for (let seed = 1; seed <= CASES; seed++) {
    const input = mutate(bytes, headerEnd, rng(seed));
    try {
      const g = parseGguf(bufferSource(`case-${seed}.gguf`, input));
      for (const t of g.tensors) assert.equal(g.read(t.name).byteLength, t.bytes); // every tensor read stays in bounds
      ok++;
    } catch (err) {
      if (!(err instanceof FormatError)) assert.fail(`seed ${seed}: ${(err as Error).name}: ${(err as Error).message}`);
      assert.match(err.message, new RegExp(`^case-${seed}\\.gguf: `));
      rejected++;
    }
  }
  assert.equal(ok + rejected, CASES);
  assert.ok(rejected > CASES / 4, `only ${rejected} of ${CASES} mutations were rejected: is the mutator reaching the header?`);
});
