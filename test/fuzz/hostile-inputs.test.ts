// Reproducers of issue 24's parser defects (3, 4, 5, 6, 11), each a small hostile file: every one must end
// in a typed sftkit error naming the file (and field, tensor or row), quickly and without a large allocation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { emptyReport, openRecords, RecordsWriter, validateRecordsFor } from '../../src/data/index.ts';
import { ConfigError, DataError, FormatError, describeValue, nestingDepth } from '../../src/errors.ts';
import { bufferSource } from '../../src/formats/byte-source.ts';
import { parseTorchBin } from '../../src/formats/torch-bin.ts';
import { parseModelConfig, readModelConfig } from '../../src/models/config.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { createModel, loadModel } from '../../src/train/model-io.ts';
import { stateDictPickle, storedZip } from './zip-builder.ts';

const WEIGHTS = join(import.meta.dirname, '..', 'fixtures', 'weights');
const tmp = (label: string): string => mkdtempSync(join(tmpdir(), `sftkit-hostile-${label}-`));

// Defect 4 runs first: the process has allocated nothing yet, so the native peak shows any allocation.
test('defect 4: run checks the weights against config.json before building the model (1,000 layers: no allocation)', () => {
  const dir = tmp('layers');
  try {
    cpSync(join(WEIGHTS, 'llama-st-sharded'), dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 1000 }));
    const peak = native.memStats().peakBytes;
    assert.throws(() => loadModel(dir), (e: unknown) =>
      e instanceof FormatError && /8982 tensor\(s\) that config\.json implies are missing from model-00001-of-00003\.safetensors, model-00002-of-00003\.safetensors, model-00003-of-00003\.safetensors: model\.layers\.2\./.test(e.message) && e.message.startsWith(dir));
    // The 1,000-layer model (~12 MB at these widths) was never allocated.
    assert.ok(native.memStats().peakBytes - peak < 1 << 20, `peak grew by ${native.memStats().peakBytes - peak} bytes`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('defect 4: config.json sizes are bounded, naming the file and the field', () => {
  const dir = tmp('config');
  try {
    const path = join(dir, 'config.json');
    const base = JSON.parse(readFileSync(join(WEIGHTS, 'llama-st-sharded', 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const [key, value] of [['num_hidden_layers', 4_000_000_000], ['num_hidden_layers', 1025], ['vocab_size', 2 ** 31], ['hidden_size', 2 ** 40], ['intermediate_size', 2 ** 21]] as const) {
      writeFileSync(path, JSON.stringify({ ...base, [key]: value }));
      assert.throws(() => readModelConfig(path), (e: unknown) =>
        e instanceof ConfigError && e.where === `${path}: ${key}` && e.message.includes(`${key} is larger than any model sftkit can hold`), `${key} = ${value}`);
    }
    writeFileSync(path, JSON.stringify({ ...base, num_hidden_layers: 126 }));
    assert.equal(readModelConfig(path).numHiddenLayers, 126);
    // Within the bounds but past this machine's memory: refused before allocating, with the size named.
    const huge = parseModelConfig({ ...base, num_hidden_layers: 1000, hidden_size: 65536, intermediate_size: 1 << 20, num_attention_heads: 512, num_key_value_heads: 512 }, path);
    assert.throws(() => createModel(huge, 0), (e: unknown) => e instanceof ConfigError && /GiB for its \d+ fp32 parameters; this machine has/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('defect 3: error messages print untrusted values bounded and cycle-safe', () => {
  const cyclic: unknown[] = [1];
  cyclic.push(cyclic);
  assert.equal(describeValue(cyclic), '[1, <cycle>]');
  let deep: unknown = 1;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.equal(describeValue(deep), '[[[[[…]]]]]');
  assert.equal(describeValue({ a: 'x'.repeat(500) }, 20), '{"a": "xxxxxxxxxxxxx…');
  assert.equal(describeValue(new Map([['k', [1, 2]]])), '{"k": [1, 2]}');
  assert.equal(describeValue({ toString: 'not a function' }), '{"toString": "not a function"}');
  assert.equal(nestingDepth(deep, 64), 65);
  assert.equal(nestingDepth({ a: [1, { b: 2 }] }, 64), 3);
});

test('defect 3: a .bin whose pickle holds a memo cycle or 100,000 nested lists fails with a FormatError naming it', () => {
  const entries = (pkl: Uint8Array) => [{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/byteorder', data: Buffer.from('little') }];
  // PROTO 2, EMPTY_LIST, BINPUT 0, BINGET 0, APPEND (the list now holds itself), BINPERSID, STOP.
  const cycle = storedZip(entries(Buffer.from([0x80, 0x02, 0x5d, 0x71, 0x00, 0x68, 0x00, 0x61, 0x51, 0x2e])));
  assert.ok(cycle.byteLength < 300);
  assert.throws(() => parseTorchBin(bufferSource('cycle.bin', cycle)), (e: unknown) =>
    e instanceof FormatError && e.message === 'cycle.bin: unknown persistent id [<cycle>]');
  const n = 100_000;
  const nested = storedZip(entries(Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.alloc(n, 0x5d), Buffer.alloc(n - 1, 0x61), Buffer.from('Q.')])));
  assert.throws(() => parseTorchBin(bufferSource('nested.bin', nested)), (e: unknown) =>
    e instanceof FormatError && e.message === 'nested.bin: unknown persistent id [[[[[…]]]]]');
  // The same list as a state dict key.
  const keyed = storedZip(entries(Buffer.concat([Buffer.from([0x80, 0x02, 0x7d]), Buffer.alloc(n, 0x5d), Buffer.alloc(n - 1, 0x61), Buffer.from('K\x01s.')])));
  assert.throws(() => parseTorchBin(bufferSource('keyed.bin', keyed)), (e: unknown) =>
    e instanceof FormatError && e.message === 'keyed.bin: state dict key [[[[[…]]]]] is not a string');
});

test('defect 11: a .bin whose views repeat storage elements (stride 0) is refused before gathering', () => {
  const storage = Buffer.alloc(16); // 4 float32
  const bin = (size: number[], stride: number[]): Buffer => storedZip([
    { name: 'archive/data.pkl', data: stateDictPickle([{ name: 'w', storageType: 'FloatStorage', storageKey: '0', storageNumel: 4, offset: 0, size, stride }]) },
    { name: 'archive/data/0', data: storage },
  ]);
  // 2^14 x 2^14 float32 over 4 stored elements: 1 GiB once gathered.
  const oneGiB = bin([1 << 14, 1 << 14], [0, 0]);
  assert.ok(oneGiB.byteLength < 600);
  assert.throws(() => parseTorchBin(bufferSource('stride0.bin', oneGiB)), (e: unknown) =>
    e instanceof FormatError && e.where === 'stride0.bin: tensor w' && /holds 268435456 elements but its storage has 4 \(zero or overlapping strides \[0, 0\]\)/.test(e.message));
  // A 16 GiB claim threw an untyped RangeError from the typed-array allocation.
  assert.throws(() => parseTorchBin(bufferSource('claim.bin', bin([1 << 16, 1 << 16], [0, 0]))), (e: unknown) => e instanceof FormatError && /holds 4294967296 elements/.test(e.message));
  // Honest views still read: a transposed 2 x 2 over the 4 elements.
  storage.set(new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer));
  const f = parseTorchBin(bufferSource('ok.bin', bin([2, 2], [1, 2])));
  assert.deepEqual(Array.from(new Float32Array(f.read('w').slice().buffer)), [1, 3, 2, 4]);
});

test('a deflated pickle claiming more than deflate can expand to is refused before inflating', () => {
  const pkl = deflateRawSync(Buffer.concat([Buffer.from([0x80, 0x02, 0x7d]), Buffer.alloc(100_000, 0x4e), Buffer.from('.')]));
  const bin = (claim: number): Buffer => storedZip([{ name: 'archive/data.pkl', data: pkl, deflatedSize: claim }]);
  assert.throws(() => parseTorchBin(bufferSource('bomb.bin', bin(200_000_000))), (e: unknown) =>
    e instanceof FormatError && e.where === 'bomb.bin: archive/data.pkl' && /claims 200000000 bytes from \d+ deflated bytes, more than deflate can expand to/.test(e.message));
  // The honest size inflates and the pickle is read: its STOP returns the last None, which is no state dict.
  assert.throws(() => parseTorchBin(bufferSource('honest.bin', bin(100_004))), (e: unknown) => e instanceof FormatError && e.message === 'honest.bin: the pickle does not hold a state dict (a dict of tensors)');
});

test('defect 5: a tokenizer.json vocab id far past the vocabulary is refused at once, naming the file and the token', () => {
  const dir = tmp('tokjson');
  try {
    const path = join(dir, 'tokenizer.json');
    const vocab: Record<string, number> = { '<unk>': 0, a: 1, b: 2, ab: 3 };
    const json = { model: { type: 'BPE', vocab, merges: ['a b'], unk_token: '<unk>' }, added_tokens: [] as unknown[], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null };
    writeFileSync(path, JSON.stringify(json));
    assert.deepEqual(Tokenizer.fromTokenizerJson(path).encode('ab'), [3]);
    for (const id of [332_000_000, 2e9, 1032, -1, 1.5]) {
      writeFileSync(path, JSON.stringify({ ...json, model: { ...json.model, vocab: { ...vocab, ab: id } } }));
      const t0 = performance.now();
      assert.throws(() => Tokenizer.fromTokenizerJson(path), (e: unknown) =>
        e instanceof FormatError && e.where === `${path}: model.vocab["ab"]` && e.message.includes(`id ${id} is not an integer in [0, 1032)`), `id ${id}`);
      assert.ok(performance.now() - t0 < 1000);
    }
    // ids may leave gaps: a piece at 40 of 4 tokens loads
    writeFileSync(path, JSON.stringify({ ...json, model: { ...json.model, vocab: { ...vocab, ab: 40 } } }));
    assert.deepEqual(Tokenizer.fromTokenizerJson(path).encode('ab'), [40]);
    writeFileSync(path, JSON.stringify({ ...json, added_tokens: [{ id: 332_000_000, content: '<s>', special: true }] }));
    assert.throws(() => Tokenizer.fromTokenizerJson(path), (e: unknown) => e instanceof FormatError && e.where === `${path}: added_tokens[0].id`);
    // The same ids as a list given to BPE: the library took the list's numbers as ids (a 60-second hang).
    writeFileSync(path, JSON.stringify({ ...json, model: { ...json.model, vocab: [0, 1, 332_000_000, 2 ** 53] } }));
    assert.throws(() => Tokenizer.fromTokenizerJson(path), (e: unknown) =>
      e instanceof FormatError && e.where === `${path}: model.vocab` && e.message.endsWith('model.vocab of a "BPE" model must be an object mapping pieces to ids'));
    writeFileSync(path, JSON.stringify({ ...json, model: { type: 'Unigram', vocab: { a: 0 } } }));
    assert.throws(() => Tokenizer.fromTokenizerJson(path), (e: unknown) => e instanceof FormatError && /a Unigram model must be a list of \[piece, score\] pairs/.test(e.message));
    writeFileSync(path, JSON.stringify({ ...json, added_tokens: [null] }));
    assert.throws(() => Tokenizer.fromTokenizerJson(path), (e: unknown) => e instanceof FormatError && e.where === `${path}: added_tokens[0]`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Records of 3 rows (seq_length 4) with ids below `vocab`, as preprocess writes them. */
function writeRecords(dir: string, vocab: number): void {
  const w = new RecordsWriter(dir, { seqLength: 4, segments: false });
  for (let r = 0; r < 3; r++) {
    const ids = Int32Array.from([1, 5 + r, 6, 7, 2]);
    w.push(ids, ids.map((x, i) => (i === 0 ? -100 : x)));
  }
  w.finish({ seq_length: 4, dataset_type: 'text', template: null, packed: false, pad_id: 0, ignore_id: -100, tokenizer: { identity: 'id', kind: 'sentencepiece', vocab_size: vocab, bos_id: 1, eos_id: 2 } }, { ...emptyReport(), max_token_id: 9 });
}

test('defect 6: a malformed records manifest fails with a FormatError naming manifest.json and the field', () => {
  const dir = tmp('manifest');
  try {
    writeRecords(dir, 10);
    const path = join(dir, 'manifest.json');
    const good = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...good, seq_length: '4' }, 'seq_length'],
      [{ ...good, tokenizer: null }, 'tokenizer'],
      [{ ...good, tokenizer: { ...(good['tokenizer'] as object), vocab_size: 'big' } }, 'tokenizer.vocab_size'],
      [{ ...good, shards: [{ rows: 3 }] }, 'shards[0].files'],
      [{ ...good, shards: [{ rows: 3, files: { input_ids: { name: ['x'], sha256: '' }, labels: { name: 'labels-00000.bin', sha256: '' } } }] }, 'shards[0].files.input_ids.name'],
      [{ ...good, shards: [{ rows: 3, files: { input_ids: { name: '../../etc/passwd', sha256: '' }, labels: { name: 'labels-00000.bin', sha256: '' } } }] }, 'shards[0].files.input_ids.name'],
      [{ ...good, report: {} }, 'report.max_token_id'],
      [{ ...good, pad_id: 10 }, 'pad_id'],
    ];
    for (const [manifest, field] of cases) {
      writeFileSync(path, JSON.stringify(manifest));
      assert.throws(() => openRecords(dir), (e: unknown) => e instanceof FormatError && e.where === `${path}: ${field}` && e.message.startsWith(`${path}: ${field} `), field);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('defect 6: a token id outside the vocabulary is found when the records open, naming the shard, row and column', () => {
  const dir = tmp('ids');
  try {
    writeRecords(dir, 10);
    const rec = openRecords(dir);
    validateRecordsFor(rec, { tokenizerIdentity: 'id', seqLength: 4, vocabSize: 10 });
    rec.close();
    // Row 2, column 3 of input_ids becomes 32000: past the records' vocabulary of 10.
    const shard = join(dir, 'input_ids-00000.bin');
    const bytes = readFileSync(shard);
    bytes.writeInt32LE(32000, (2 * 5 + 3) * 4);
    writeFileSync(shard, bytes);
    assert.throws(() => openRecords(dir), (e: unknown) =>
      e instanceof DataError && e.where === `${shard}: row 2, column 3` && e.message.includes('holds token id 32000, outside the vocabulary [0, 10)'));
    // A label other than -100 below zero is caught the same way.
    bytes.writeInt32LE(7, (2 * 5 + 3) * 4);
    writeFileSync(shard, bytes);
    const labels = join(dir, 'labels-00000.bin');
    const lb = readFileSync(labels);
    lb.writeInt32LE(-5, 4);
    writeFileSync(labels, lb);
    assert.throws(() => openRecords(dir), (e: unknown) => e instanceof DataError && e.where === `${labels}: row 0, column 1`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('records made for a larger vocabulary than the model are refused before training, naming manifest.json', () => {
  const dir = tmp('vocab');
  try {
    writeRecords(dir, 32000);
    const rec = openRecords(dir);
    assert.throws(() => validateRecordsFor(rec, { tokenizerIdentity: 'id', seqLength: 4, vocabSize: 64 }), (e: unknown) =>
      e instanceof DataError && e.where === join(dir, 'manifest.json') && /tokenizer vocabulary 32000\), the model's vocabulary has 64/.test(e.message));
    rec.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
