// preprocess inputs at scale: Parquet rows (row group by row group), text files read paragraph by paragraph, the
// weighted mix of several sources (deterministic with a seed), and the errors that say why no row was written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { paragraphs, preprocess } from '../../src/data/index.ts';
import { fileRecords, mixSources, parseInputSpec, textParagraphs, type MixStrategy } from '../../src/data/sources.ts';
import { ConfigError, DataError } from '../../src/errors.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'data');
const tok = Tokenizer.fromSentencePiece(join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'bpe.model'));
const dir = mkdtempSync(join(tmpdir(), 'sftkit-sources-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let made = 0;
const out = (): string => join(dir, `out${made++}`);
const bytesOf = (records: string, column: string): Buffer => readFileSync(join(records, `${column}-00000.bin`));

test('Parquet conversations (messages as a list of structs, several row groups) give the rows of the same JSONL', async () => {
  const rows: unknown[] = [];
  for await (const rec of fileRecords(join(FIX, 'conversations.parquet'))) rows.push(rec);
  assert.equal(rows.length, 4);
  assert.deepEqual((rows[3] as { where: string }).where, `${join(FIX, 'conversations.parquet')}[row 3]`);
  const a = out(), b = out();
  const ra = await preprocess({ datasetType: 'qa', inputGlob: join(FIX, 'conversations.parquet'), tokenizer: tok, seqLength: 127, outputDir: a });
  const rb = await preprocess({ datasetType: 'qa', inputGlob: join(FIX, 'conversations.jsonl'), tokenizer: tok, seqLength: 127, outputDir: b });
  assert.equal(ra.report.rows_out, 4);
  assert.deepEqual(ra.report, rb.report);
  assert.ok(bytesOf(a, 'input_ids').equals(bytesOf(b, 'input_ids')));
  assert.ok(bytesOf(a, 'labels').equals(bytesOf(b, 'labels')));
});

test('Parquet and JSONL text documents: each record\'s "text" is one sample', async () => {
  const texts: string[] = [];
  for await (const rec of fileRecords(join(FIX, 'text.parquet'))) texts.push((rec.value as { text: string }).text);
  const jsonl = join(dir, 'docs.jsonl');
  writeFileSync(jsonl, texts.map((text) => JSON.stringify({ text })).join('\n'));
  const a = out(), b = out();
  const ra = await preprocess({ datasetType: 'text', inputGlob: join(FIX, 'text.parquet'), tokenizer: tok, seqLength: 15, outputDir: a });
  await preprocess({ datasetType: 'text', inputGlob: jsonl, tokenizer: tok, seqLength: 15, outputDir: b });
  assert.equal(ra.report.samples_in, 5);
  const expected = texts.flatMap((t) => tok.encode(t, { addBos: true, addEos: true }));
  assert.equal(ra.report.rows_out, Math.floor(expected.length / 16));
  const got = bytesOf(a, 'input_ids');
  assert.deepEqual([...new Int32Array(got.buffer, got.byteOffset, got.length / 4)], expected.slice(0, ra.report.rows_out * 16));
  assert.ok(got.equals(bytesOf(b, 'input_ids')));
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"text": "a"}\n{"content": "b"}\n');
  await assert.rejects(preprocess({ datasetType: 'text', inputGlob: bad, tokenizer: tok, seqLength: 15, outputDir: out() }), (e: unknown) => e instanceof DataError && e.message.startsWith(`${bad}:2: expected an object with a string "text"`));
});

test('a damaged Parquet file is a DataError naming the file', async () => {
  const whole = readFileSync(join(FIX, 'conversations.parquet'));
  for (const bytes of [whole.subarray(0, whole.length - 9), Buffer.from('PAR1 not really'), Buffer.concat([whole.subarray(0, 200), Buffer.alloc(64, 0xff), whole.subarray(264)])]) {
    const path = join(dir, `broken${made++}.parquet`);
    writeFileSync(path, bytes);
    await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: path, tokenizer: tok, seqLength: 63, outputDir: out() }), (e: unknown) => e instanceof DataError && e.message.includes(path));
  }
});

test('text files read line by line split into the paragraphs of a whole-file split', () => {
  const pieces = ['a', 'b c', '', ' ', '\t', '\r', '= T =', 'x\r', '  y'];
  let seed = 7;
  const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let k = 0; k < 300; k++) {
    const text = Array.from({ length: rand(12) }, () => pieces[rand(pieces.length)]).join('\n') + (rand(2) === 0 ? '\n' : '');
    const path = join(dir, 'para.txt');
    writeFileSync(path, text);
    assert.deepEqual([...textParagraphs(path)], paragraphs(text), JSON.stringify(text));
  }
});

/** The sources of a mix as small arrays, tagged by source. */
async function mix(lengths: number[], weights: number[], strategy: MixStrategy, seed = 0): Promise<string[]> {
  const open = (i: number): AsyncIterator<string> => (async function* () {
    for (let k = 0; k < lengths[i]!; k++) yield `${i}:${k}`;
  })();
  const got: string[] = [];
  for await (const { item } of mixSources(lengths.length, open, weights, { strategy, seed })) got.push(item);
  return got;
}

test('mixing: concat in order; interleave_under stops at the first exhausted source; interleave_over oversamples', async () => {
  assert.deepEqual(await mix([2, 3], [1, 1], 'concat'), ['0:0', '0:1', '1:0', '1:1', '1:2']);
  const under = await mix([1000, 1000], [0.7, 0.3], 'interleave_under', 3);
  assert.deepEqual(under, await mix([1000, 1000], [0.7, 0.3], 'interleave_under', 3), 'the same seed gives the same mix');
  assert.notDeepEqual(under, await mix([1000, 1000], [0.7, 0.3], 'interleave_under', 4));
  const zeros = under.filter((s) => s.startsWith('0:'));
  assert.equal(zeros.length, 1000, 'source 0 (weight 0.7) runs out first and ends the mix');
  const share = zeros.length / under.length;
  assert.ok(Math.abs(share - 0.7) < 0.03, `share of source 0: ${share}`);
  // Each source's samples come in their own order.
  assert.deepEqual(zeros, Array.from({ length: 1000 }, (_, k) => `0:${k}`));
  const over = await mix([10, 200], [0.5, 0.5], 'interleave_over', 1);
  const smallOnes = over.filter((s) => s.startsWith('0:'));
  assert.equal(over.filter((s) => s.startsWith('1:')).length, 200, 'the mix ends when the large source has run out once');
  assert.ok(smallOnes.length > 100, `the small source restarts: ${smallOnes.length} samples`);
  assert.deepEqual(smallOnes.slice(0, 12), [...Array.from({ length: 10 }, (_, k) => `0:${k}`), '0:0', '0:1']);
  await assert.rejects(mix([0, 5], [1, 1], 'interleave_under'), /input source 1 has no samples/);
});

test('--input specs: path[:weight]; weights on every source or none', async () => {
  assert.deepEqual(parseInputSpec('a.jsonl:0.7'), { pattern: 'a.jsonl', weight: 0.7 });
  assert.deepEqual(parseInputSpec('data/*.parquet:2'), { pattern: 'data/*.parquet', weight: 2 });
  assert.deepEqual(parseInputSpec('plain.jsonl'), { pattern: 'plain.jsonl' });
  assert.deepEqual(parseInputSpec('C:/x.json'), { pattern: 'C:/x.json' });
  assert.throws(() => parseInputSpec('a.jsonl:0'), ConfigError);
  const conv = join(FIX, 'conversations.jsonl');
  await assert.rejects(preprocess({ datasetType: 'qa', inputs: [{ pattern: conv, weight: 1 }, { pattern: conv }], tokenizer: tok, seqLength: 127, outputDir: out() }), /every source/);
  await assert.rejects(preprocess({ datasetType: 'qa', inputs: [{ pattern: conv, weight: 1 }, { pattern: conv, weight: 1 }], mixStrategy: 'concat', tokenizer: tok, seqLength: 127, outputDir: out() }), /interleave/);
  await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: conv, inputs: [{ pattern: conv }], tokenizer: tok, seqLength: 127, outputDir: out() }), /either --input_glob or/);
  // A weighted mix of a JSONL and a Parquet source.
  const { report } = await preprocess({ datasetType: 'qa', inputs: [{ pattern: conv, weight: 0.7 }, { pattern: join(FIX, 'conversations.parquet'), weight: 0.3 }], seed: 5, tokenizer: tok, seqLength: 127, outputDir: out() });
  assert.ok(report.samples_in >= 1 && report.samples_in <= 8, `${report.samples_in} samples`);
});

test('no rows to write: the error says why and suggests a --seq_length', async () => {
  const conv = join(FIX, 'conversations.jsonl');
  await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: conv, tokenizer: tok, seqLength: 8, truncation: 'drop', outputDir: out() }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.match(e.message, /no rows to write: every sample is longer than 8 tokens after the template \(rows hold seq_length \+ 1 = 9\): the shortest is (\d+), so all were dropped/);
    const shortest = Number(/the shortest is (\d+)/.exec(e.message)![1]);
    assert.match(e.hint ?? '', new RegExp(`use --seq_length \\d+ or more \\(${shortest - 1} is the least`));
    return true;
  });
  // Right truncation keeps nothing to train when the prompt alone fills the row.
  await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: conv, tokenizer: tok, seqLength: 8, outputDir: out() }), /every sample is longer than 8 tokens.*nothing to train once cut/);
  const small = join(dir, 'small.txt');
  writeFileSync(small, 'Two words.');
  await assert.rejects(preprocess({ datasetType: 'text', inputGlob: small, tokenizer: tok, seqLength: 64, outputDir: out() }), (e: unknown) => e instanceof DataError && /the input has \d+ tokens in all, less than one row of seq_length \+ 1 = 65/.test(e.message) && /--packing/.test(e.hint ?? ''));
  const empty = join(dir, 'empty.jsonl');
  writeFileSync(empty, '\n');
  await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: empty, tokenizer: tok, seqLength: 64, outputDir: out() }), /no rows to write: the input holds no samples/);
});
