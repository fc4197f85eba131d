// `sftkit data alpaca` and `sftkit data preprocess` end to end: files written, report printed, errors without stacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const FIX = join(ROOT, 'test', 'fixtures');

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('data alpaca then data preprocess', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-data-'));
  try {
    const conv = join(dir, 'conv.json');
    let r = sftkit(['data', 'alpaca', '--data_path', join(FIX, 'data', 'alpaca_small.json'), '--output_path', conv]);
    assert.equal(r.status, 0, r.stderr);
    const golden = JSON.parse(readFileSync(join(FIX, 'data', 'golden_vicuna.json'), 'utf8')) as { alpaca_converted: string };
    assert.equal(readFileSync(conv, 'utf8'), golden.alpaca_converted);
    r = sftkit(['data', 'alpaca', '--data_path', join(FIX, 'data', 'alpaca_small.json'), '--output_path', conv]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /already exists\nhint: pass --force/);
    assert.doesNotMatch(r.stderr, /\n {4}at /);
    const out = join(dir, 'rec');
    r = sftkit(['data', 'preprocess', '--dataset_type', 'qa', '--input_glob', conv, '--model_file', join(FIX, 'tokenizer', 'bpe.model'), '--seq_length', '255', '--output_file', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /samples in: +8\nrows out: +8\n/);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { rows: number; report: { samples_in: number } };
    assert.equal(manifest.rows, 8);
    r = sftkit(['data', 'preprocess', '--input_glob', conv, '--seq_length', '255', '--output_file', join(dir, 'x')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /give exactly one of --model_file PATH or --tokenizer DIR/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('data preprocess over existing records: refused with a hint naming --output_file and --force; --force replaces only token records', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-data-'));
  try {
    const conv = join(dir, 'conv.json');
    assert.equal(sftkit(['data', 'alpaca', '--data_path', join(FIX, 'data', 'alpaca_small.json'), '--output_path', conv]).status, 0);
    const out = join(dir, 'rec');
    const preprocess = (seq: string, ...extra: string[]) =>
      sftkit(['data', 'preprocess', '--input_glob', conv, '--model_file', join(FIX, 'tokenizer', 'bpe.model'), '--seq_length', seq, '--output_file', out, ...extra]);
    assert.equal(preprocess('255').status, 0);
    let r = preprocess('127');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /already exists and is not an empty directory\nhint: choose another --output_file, pass --force to replace it, or remove it/);
    r = preprocess('127', '--force');
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { seq_length: number }).seq_length, 127);
    assert.deepEqual(readdirSync(dir).sort(), ['conv.json', 'rec']); // no temp or old folder left beside it
    // a folder that holds anything but token records is never replaced
    const other = join(dir, 'notes');
    mkdirSync(other);
    writeFileSync(join(other, 'keep.txt'), 'mine');
    r = sftkit(['data', 'preprocess', '--input_glob', conv, '--model_file', join(FIX, 'tokenizer', 'bpe.model'), '--seq_length', '127', '--output_file', other, '--force']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /holds something other than token records \(no manifest\.json\): --force replaces only token records/);
    assert.equal(readFileSync(join(other, 'keep.txt'), 'utf8'), 'mine');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('data preprocess: a short --seq_length says why nothing was written; one above max_position_embeddings warns; --input mixes sources', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-data-'));
  try {
    const model = join(dir, 'model');
    mkdirSync(model);
    writeFileSync(join(model, 'tokenizer.model'), readFileSync(join(FIX, 'tokenizer', 'bpe.model')));
    writeFileSync(join(model, 'config.json'), JSON.stringify({ model_type: 'llama', max_position_embeddings: 128 }));
    const conv = join(FIX, 'data', 'conversations.jsonl');
    let r = sftkit(['data', 'preprocess', '--input_glob', conv, '--tokenizer', model, '--seq_length', '8', '--truncation', 'drop', '--output_file', join(dir, 'a')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no rows to write: every sample is longer than 8 tokens after the template \(rows hold seq_length \+ 1 = 9\): the shortest is \d+/);
    assert.match(r.stderr, /hint: use --seq_length \d+ or more/);
    assert.doesNotMatch(r.stderr, /\n {4}at /);
    r = sftkit(['data', 'preprocess', '--input', `${conv}:0.7`, '--input', `${join(FIX, 'data', 'conversations.parquet')}:0.3`, '--seed', '3', '--tokenizer', model, '--seq_length', '255', '--output_file', join(dir, 'b')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: --seq_length 255 is above the model's max_position_embeddings 128 \(.*config\.json\); training refuses such rows unless rope scaling is set/);
    assert.match(r.stdout, /wrote \d+ rows to /);
    r = sftkit(['data', 'preprocess', '--input', `${conv}:0.7`, '--input', conv, '--tokenizer', model, '--seq_length', '64', '--output_file', join(dir, 'c')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /give a weight to every source/);
    assert.doesNotMatch(r.stderr, /warning/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
