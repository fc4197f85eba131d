// SentencePiece tokenizer.model: ids, pieces and decoded text must equal spm_encode / spm_decode on every table line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { SentencePieceProcessor } from '../../src/tokenizer/index.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'tokenizer');

interface Expected {
  ids: number[];
  pieces: string[];
  decoded: string;
}
interface Row {
  text?: string;
  bytes?: string;
  bpe: Expected;
  unigram: Expected;
}

const rows: Row[] = gunzipSync(readFileSync(join(FIXTURES, 'spm-tables.jsonl.gz')))
  .toString('utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as Row);

function input(row: Row): string | Uint8Array {
  return row.text ?? new Uint8Array(Buffer.from(row.bytes!, 'base64'));
}

test('the tables cover what the spec asks for', () => {
  assert.ok(rows.length >= 2000, `${rows.length} lines`);
  const texts = rows.flatMap((r) => (r.text === undefined ? [] : [r.text]));
  const has = (re: RegExp): boolean => texts.some((t) => re.test(t));
  for (const [what, re] of Object.entries({
    'runs of spaces': / {3}/, leading: /^ +\S/, trailing: /\S +$/, tabs: /\t/, digits: /\d{4}/, punctuation: /[!?;:]/,
    accented: /[éøåß]/, CJK: /[\u4e00-\u9fff]/, emoji: /\p{Extended_Pictographic}/u, Cyrillic: /[\u0400-\u04ff]/, empty: /^$/,
  })) assert.ok(has(re), what);
  assert.ok(rows.some((r) => r.bytes !== undefined), 'invalid UTF-8 lines');
});

for (const name of ['bpe', 'unigram'] as const) {
  const sp = SentencePieceProcessor.fromFile(join(FIXTURES, `${name}.model`));

  test(`${name}: encode gives spm_encode's ids and pieces on every line`, () => {
    let mismatches = 0;
    for (const row of rows) {
      const ids = sp.encode(input(row));
      if (JSON.stringify(ids) !== JSON.stringify(row[name].ids)) {
        if (mismatches++ < 5) assert.deepEqual(ids, row[name].ids, JSON.stringify(row.text ?? row.bytes));
      }
      assert.deepEqual(sp.encodeAsPieces(input(row)), row[name].pieces, JSON.stringify(row.text ?? row.bytes));
    }
    assert.equal(mismatches, 0);
  });

  test(`${name}: decode gives spm_decode's text on every line`, () => {
    for (const row of rows) assert.equal(sp.decode(row[name].ids), row[name].decoded, JSON.stringify(row.text ?? row.bytes));
  });
}

test('bpe: model facts (Llama-style settings, special ids, byte pieces)', () => {
  const sp = SentencePieceProcessor.fromFile(join(FIXTURES, 'bpe.model'));
  assert.equal(sp.vocabSize, 3000);
  assert.equal(sp.model.trainerSpec.modelType, 2);
  assert.equal(sp.model.trainerSpec.byteFallback, true);
  assert.equal(sp.model.normalizerSpec.name, 'identity');
  assert.deepEqual([sp.unkId, sp.bosId, sp.eosId, sp.padId], [0, 1, 2, -1]);
  assert.equal(sp.idToPiece(3), '<ctrl>');
  assert.equal(sp.idToPiece(4), '<sep>');
  assert.equal(sp.idToPiece(sp.pieceToId('<0x0A>')), '<0x0A>');
  assert.equal(sp.pieceToId('no such piece'), 0);
  // Text that spells a control piece is ordinary text.
  assert.ok(!sp.encode('<s> </s>').includes(1));
  // A string with a lone surrogate is read as U+FFFD, like TextEncoder, so it equals the U+FFFD line.
  assert.deepEqual(sp.encode('a\ud800b'), sp.encode('a\ufffdb'));
  // Byte pieces that form no valid character decode to U+FFFD, one per byte.
  const b = (x: number): number => sp.pieceToId(`<0x${x.toString(16).toUpperCase()}>`);
  assert.equal(sp.decode([b(0xe6), b(0x97), b(0x41)]), '\ufffd\ufffdA');
  assert.throws(() => sp.decode([3000]), /out of range/);
});

test('unigram: nmt_nfkc charsmap, squeezed whitespace, pad id', () => {
  const sp = SentencePieceProcessor.fromFile(join(FIXTURES, 'unigram.model'));
  assert.equal(sp.model.trainerSpec.modelType, 1);
  assert.equal(sp.model.normalizerSpec.name, 'nmt_nfkc');
  assert.ok(sp.model.normalizerSpec.precompiledCharsmap.length > 1000);
  assert.equal(sp.padId, 3);
  assert.deepEqual(sp.encode('ＡＢＣ'), sp.encode('ABC'));
  assert.deepEqual(sp.encode('  a   b  '), sp.encode('a b'));
});
