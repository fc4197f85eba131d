// sftkit data preprocess: records equal the golden QA tokenization padded to seq_length + 1; truncation, packing,
// wiki chunking and the report; atomic output; the training-setup check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IGNORE_ID, openRecords, preprocess, validateRecordsFor } from '../../src/data/index.ts';
import { ConfigError, DataError } from '../../src/errors.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'data');
const tok = Tokenizer.fromSentencePiece(join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'bpe.model'));
const golden = JSON.parse(readFileSync(join(FIX, 'golden_vicuna.json'), 'utf8')) as { alpaca_converted: string; alpaca_vicuna: Array<{ ids: number[]; labels: number[] }> };
const tmp = (): string => mkdtempSync(join(tmpdir(), 'sftkit-pre-'));

function convFile(): string {
  const dir = tmp();
  writeFileSync(join(dir, 'conv.json'), golden.alpaca_converted);
  return join(dir, 'conv.json');
}

/** A column read the way numpy.memmap(path, dtype='<i4').reshape(rows, L) reads it. */
function column(dir: string, name: string, L: number): number[][] {
  const buf = readFileSync(join(dir, name));
  const a = new Int32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  return Array.from({ length: a.length / L }, (_, r) => Array.from(a.subarray(r * L, (r + 1) * L)));
}

const trainedOf = (labels: number[]): number => labels.slice(1).filter((l) => l !== IGNORE_ID).length;

test('qa rows are the golden samples padded with 0 and -100; the report counts everything', async () => {
  const out = join(tmp(), 'rec');
  const { manifest, report } = await preprocess({ datasetType: 'qa', inputGlob: convFile(), tokenizer: tok, seqLength: 255, outputDir: out });
  const L = 256;
  assert.deepEqual(readdirSync(out).sort(), ['input_ids-00000.bin', 'labels-00000.bin', 'manifest.json']);
  const ids = column(out, 'input_ids-00000.bin', L);
  const labels = column(out, 'labels-00000.bin', L);
  assert.equal(ids.length, 8);
  golden.alpaca_vicuna.forEach((g, r) => {
    assert.ok(g.ids.length <= L);
    assert.deepEqual(ids[r], [...g.ids, ...new Array<number>(L - g.ids.length).fill(0)]);
    assert.deepEqual(labels[r], [...g.labels, ...new Array<number>(L - g.ids.length).fill(IGNORE_ID)]);
  });
  const total = golden.alpaca_vicuna.reduce((s, g) => s + g.ids.length, 0);
  assert.deepEqual(report, {
    samples_in: 8,
    rows_out: 8,
    truncated: { count: 0, tokens_lost: 0 },
    dropped: { count: 0, by_reason: {} },
    tail_tokens_dropped: 0,
    total_tokens: total,
    trained_tokens: golden.alpaca_vicuna.reduce((s, g) => s + trainedOf(g.labels), 0),
    padding_fraction: (8 * L - total) / (8 * L),
    max_token_id: Math.max(...golden.alpaca_vicuna.flatMap((g) => g.ids)),
  });
  assert.equal(manifest.magic, 'sftkit-records');
  assert.equal(manifest.seq_length, 255);
  assert.equal(manifest.pad_id, 0);
  assert.equal(manifest.template, 'vicuna');
  assert.equal(manifest.tokenizer.identity, tok.identity);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')), manifest);
  const rec = openRecords(out);
  rec.verify();
  assert.deepEqual(Array.from(rec.row(3).inputIds), ids[3]);
  validateRecordsFor(rec, { tokenizerIdentity: tok.identity, seqLength: 255, vocabSize: 3000 });
  assert.throws(() => validateRecordsFor(rec, { tokenizerIdentity: 'x'.repeat(64), seqLength: 255, vocabSize: 3000 }), (e: unknown) => e instanceof DataError && /another tokenizer/.test(e.message));
  assert.throws(() => validateRecordsFor(rec, { tokenizerIdentity: tok.identity, seqLength: 512, vocabSize: 3000 }), (e: unknown) => e instanceof DataError && /seq_length 255, training uses 512/.test(e.message));
  assert.throws(() => validateRecordsFor(rec, { tokenizerIdentity: tok.identity, seqLength: 255, vocabSize: 2000 }), (e: unknown) => e instanceof DataError && /vocabulary/.test(e.message));
  rec.close();
  // The output exists now: a second run refuses and leaves it as it was.
  await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: convFile(), tokenizer: tok, seqLength: 64, outputDir: out }), ConfigError);
  assert.equal(openRecords(out).seqLength, 255);
});

test('long samples: right truncation keeps what trains, drop counts them; nothing all-masked is written', async () => {
  const lens = golden.alpaca_vicuna.map((g) => g.ids.length);
  const seq = 149;
  const rightDir = join(tmp(), 'r');
  const right = await preprocess({ datasetType: 'qa', inputGlob: convFile(), tokenizer: tok, seqLength: seq, outputDir: rightDir });
  const cut = golden.alpaca_vicuna.map((g) => ({ ids: g.ids.slice(0, seq + 1), labels: g.labels.slice(0, seq + 1) }));
  const keep = cut.filter((g) => trainedOf(g.labels) > 0);
  const long = lens.filter((n) => n > seq + 1).length;
  assert.ok(long >= 2 && keep.length < 8, `fixture gives both cases (${lens})`);
  assert.equal(right.report.rows_out, keep.length);
  assert.deepEqual(right.report.dropped, { count: 8 - keep.length, by_reason: { 'nothing to train after truncation': 8 - keep.length } });
  assert.equal(right.report.truncated.count, long - (8 - keep.length));
  const rec = openRecords(rightDir);
  for (let r = 0; r < rec.rows; r++) {
    const row = rec.row(r);
    assert.deepEqual(Array.from(row.labels), [...(keep[r] as { labels: number[] }).labels, ...new Array<number>(seq + 1 - (keep[r] as { ids: number[] }).ids.length).fill(IGNORE_ID)]);
    assert.ok(trainedOf(Array.from(row.labels)) > 0);
  }
  rec.close();
  const drop = await preprocess({ datasetType: 'qa', inputGlob: convFile(), tokenizer: tok, seqLength: seq, outputDir: join(tmp(), 'd'), truncation: 'drop' });
  assert.equal(drop.report.rows_out, 8 - long);
  assert.deepEqual(drop.report.dropped, { count: long, by_reason: { 'longer than seq_length': long } });
  assert.deepEqual(drop.report.truncated, { count: 0, tokens_lost: 0 });
});

test('packing puts several samples in a row with segment ids; each segment is its sample', async () => {
  const out = join(tmp(), 'p');
  const { report, manifest } = await preprocess({ datasetType: 'qa', inputGlob: convFile(), tokenizer: tok, seqLength: 511, outputDir: out, packing: true });
  assert.equal(manifest.packed, true);
  const rec = openRecords(out);
  assert.equal(rec.hasSegments, true);
  assert.ok(rec.rows < 8, `packed into ${rec.rows} rows`);
  const samples: Array<{ ids: number[]; labels: number[] }> = [];
  for (let r = 0; r < rec.rows; r++) {
    const { inputIds, labels, segmentIds } = rec.row(r);
    const seg = Array.from(segmentIds as Int32Array);
    const count = Math.max(...seg);
    for (let s = 1; s <= count; s++) {
      const at = seg.indexOf(s);
      const end = seg.lastIndexOf(s) + 1;
      assert.ok(seg.slice(at, end).every((x) => x === s), 'segments are contiguous');
      samples.push({ ids: Array.from(inputIds.subarray(at, end)), labels: Array.from(labels.subarray(at, end)) });
    }
    const pad = seg.indexOf(0);
    if (pad >= 0) {
      assert.ok(seg.slice(pad).every((x) => x === 0), 'padding only at the end');
      assert.ok(Array.from(inputIds.subarray(pad)).every((x) => x === 0));
      assert.ok(Array.from(labels.subarray(pad)).every((x) => x === IGNORE_ID));
    }
  }
  rec.close();
  assert.deepEqual(samples, golden.alpaca_vicuna.map((g) => ({ ids: g.ids, labels: g.labels })));
  assert.equal(report.rows_out, rec.rows);
  assert.equal(report.total_tokens, golden.alpaca_vicuna.reduce((s, g) => s + g.ids.length, 0));
});

test('wiki: blank-line paragraphs, headings dropped, BOS/EOS each, cut into whole rows, tail counted', async () => {
  const dir = tmp();
  const text = ' = Valley Forge = \n\n The army wintered there .\nIt was cold .\n \n = = Legacy = = \n\n\n A park keeps the site today .\n';
  writeFileSync(join(dir, 'wiki.txt'), text);
  const paras = [' The army wintered there .\nIt was cold .', ' A park keeps the site today .\n'];
  const stream = paras.flatMap((p) => tok.encode(p, { addBos: true, addEos: true }));
  const seq = 7;
  const { report } = await preprocess({ datasetType: 'wiki', inputGlob: join(dir, '*.txt'), tokenizer: tok, seqLength: seq, outputDir: join(dir, 'rec'), repeat: 2 });
  const all = [...stream, ...stream];
  const rows = Math.floor(all.length / (seq + 1));
  assert.equal(report.samples_in, 8);
  assert.deepEqual(report.dropped, { count: 4, by_reason: { 'wiki heading': 4 } });
  assert.equal(report.rows_out, rows);
  assert.equal(report.tail_tokens_dropped, all.length - rows * (seq + 1));
  const ids = column(join(dir, 'rec'), 'input_ids-00000.bin', seq + 1);
  assert.deepEqual(ids.flat(), all.slice(0, rows * (seq + 1)));
  assert.deepEqual(column(join(dir, 'rec'), 'labels-00000.bin', seq + 1), ids);
});

test('bad options and inputs are errors before anything is written', async () => {
  const dir = tmp();
  await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: join(dir, '*.json'), tokenizer: tok, seqLength: 8, outputDir: join(dir, 'o') }), /no files match/);
  await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: convFile(), tokenizer: tok, seqLength: 8, outputDir: join(dir, 'o'), template: 'zephyr' as 'hf' }), ConfigError);
  writeFileSync(join(dir, 'bad.jsonl'), '{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}\n');
  await assert.rejects(preprocess({ datasetType: 'qa', inputGlob: join(dir, 'bad.jsonl'), tokenizer: tok, seqLength: 8, outputDir: join(dir, 'o') }), /bad\.jsonl:1\.messages\[1\]\.role: unknown role "bot"/);
  assert.equal(existsSync(join(dir, 'o')), false);
  mkdirSync(join(dir, 'empty'));
  assert.equal(readdirSync(dir).filter((n) => n.startsWith('.')).length, 0, 'no temp directories left behind');
});
