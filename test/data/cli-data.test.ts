// `sftkit data alpaca` and `sftkit data preprocess` end to end: files written, report printed, errors without stacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
