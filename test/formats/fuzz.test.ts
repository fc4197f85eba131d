// Seeded fuzzing of the safetensors and PyTorch .bin parsers: mutated valid files must parse or fail with a
// FormatError, never crash or hang. CI runs 1,500 cases per parser; SFTKIT_FUZZ_CASES=100000 runs more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { bufferSource } from '../../src/formats/byte-source.ts';
import { parseSafetensors } from '../../src/formats/safetensors.ts';
import { parseTorchBin } from '../../src/formats/torch-bin.ts';
import { openZip } from '../../src/formats/zip.ts';
import type { TensorFile } from '../../src/formats/tensor-file.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'weights');
const CASES = Number(process.env['SFTKIT_FUZZ_CASES'] ?? 1500);

/** mulberry32: a small seeded PRNG, so every failing case can be replayed from its number. */
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

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0xffffffff];

/** One mutation of `base`, concentrated on [hotStart, hotEnd) (headers, pickle) half of the time. */
function mutate(base: Uint8Array, r: () => number, hot: Array<[number, number]>): Uint8Array {
  const b = Buffer.from(base);
  const pick = (): number => {
    const h = hot[Math.floor(r() * hot.length)]!;
    return r() < 0.6 ? h[0] + Math.floor(r() * Math.max(1, h[1] - h[0])) : Math.floor(r() * b.byteLength);
  };
  const kind = Math.floor(r() * 6);
  if (kind === 0) {
    for (let i = 0, n = 1 + Math.floor(r() * 8); i < n; i++) { const at = pick() % b.byteLength; b[at] = b[at]! ^ (1 << Math.floor(r() * 8)); }
    return b;
  }
  if (kind === 1) {
    const at = Math.min(pick(), b.byteLength - 4);
    b.writeUInt32LE(INTERESTING[Math.floor(r() * INTERESTING.length)]!, Math.max(0, at));
    return b;
  }
  if (kind === 2) return b.subarray(0, Math.floor(r() * b.byteLength)); // truncate
  if (kind === 3) {
    const at = pick();
    const len = 1 + Math.floor(r() * 16);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + len)]); // delete
  }
  if (kind === 4) {
    const at = pick();
    const junk = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 16) }, () => Math.floor(r() * 256)));
    return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]); // insert
  }
  for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) b[pick() % b.byteLength] = Math.floor(r() * 256);
  return b;
}

function exercise(name: string, bytes: Uint8Array, parse: (b: Uint8Array) => TensorFile): 'ok' | 'error' {
  try {
    const f = parse(bytes);
    for (const t of f.tensors) f.read(t.name);
    return 'ok';
  } catch (err) {
    if (err instanceof FormatError) return 'error';
    throw new Error(`${name}: not a FormatError: ${(err as Error)?.stack ?? String(err)}`);
  }
}

function run(label: string, base: Uint8Array, hot: Array<[number, number]>, parse: (b: Uint8Array) => TensorFile): void {
  assert.equal(exercise(`${label} (unmutated)`, base, parse), 'ok');
  const counts = { ok: 0, error: 0 };
  const t0 = performance.now();
  for (let i = 0; i < CASES; i++) {
    const r = rng(1000 + i);
    counts[exercise(`${label} case ${i}`, mutate(base, r, hot), parse)]++;
  }
  const ms = performance.now() - t0;
  assert.ok(counts.error > CASES / 4, `${label}: mutations should mostly be caught (${JSON.stringify(counts)})`);
  assert.ok(ms / CASES < 50, `${label}: ${ms / CASES} ms per case`);
}

test(`safetensors parser survives ${CASES} mutated files`, { timeout: 120_000 }, () => {
  const base = readFileSync(join(FIXTURES, 'llama-st-sharded', 'model-00001-of-00003.safetensors'));
  const headerEnd = 8 + Number(base.readBigUInt64LE(0));
  run('safetensors', base, [[0, headerEnd]], (b) => parseSafetensors(bufferSource('fuzz.safetensors', b)));
});

test(`PyTorch .bin parser survives ${CASES} mutated files`, { timeout: 120_000 }, () => {
  const base = readFileSync(join(FIXTURES, 'qwen2-tied-bin', 'pytorch_model.bin'));
  const zip = openZip(bufferSource('base.bin', base));
  const pkl = [...zip.entries.values()].find((e) => e.name.endsWith('/data.pkl'))!;
  const pklStart = zip.dataOffset(pkl);
  const cdStart = Math.max(...[...zip.entries.values()].map((e) => e.localHeaderOffset + 30 + e.name.length + e.compressedSize));
  run('torch-bin', base, [[pklStart, pklStart + pkl.size], [cdStart, base.byteLength]], (b) => parseTorchBin(bufferSource('fuzz.bin', b)));
});
