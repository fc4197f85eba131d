// `sftkit run` for a newcomer (issue 20): flags named as other trainers name them suggest our key by meaning,
// `run --help` lists every config key from the schema, and rows longer than the model's positions are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeConfigKeys } from '../../src/train/config.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--lr, --learning_rate, --max_steps and --bs suggest the key they mean', () => {
  const cases: [string, string][] = [
    ['--lr', 'optimizer.learning_rate'],
    ['--learning_rate', 'optimizer.learning_rate'],
    ['--max_steps', 'runner_config.max_steps'],
    ['--bs', 'runner_config.batch_size'],
  ];
  for (const [flag, key] of cases) {
    const r = sftkit(['run', '--config', 'configs/tiny/pretrain_llama_tiny.yaml', flag, '3']);
    assert.equal(r.status, 1, flag);
    assert.equal(r.stderr.trim(), `sftkit: override ${flag}: unknown key (did you mean '--${key}'?)`);
  }
});

test('run --help lists every config key with its default, kind and flag', () => {
  const r = sftkit(['run', '--help']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /--section\.key VALUE/);
  const lines = r.stdout.split('\n');
  for (const k of describeConfigKeys()) {
    assert.ok(lines.some((l) => l.trimStart().startsWith(`${k.key} `)), `${k.key} is listed`);
  }
  assert.match(r.stdout, /^ {2}optimizer\.learning_rate +0\.00001 +number$/m);
  assert.match(r.stdout, /^ {2}runner_config\.batch_size +1 +integer +\(--batch_size\)$/m);
  assert.match(r.stdout, /^ {2}lr_schedule\.type +"cosine" +constant \| linear \| cosine$/m);
});

test('records longer than max_position_embeddings are refused at training unless rope_scaling is set', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-positions-'));
  try {
    const text = Array.from({ length: 24 }, (_, i) => `The Congress shall meet on day ${i} of the session, and the people shall be heard in the year ${1800 + i}.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    const pre = sftkit(['data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32', '--output_file', records]);
    assert.equal(pre.status, 0, pre.stderr);
    const tiny = JSON.parse(readFileSync('configs/tiny/llama_tiny.json', 'utf8')) as Record<string, unknown>;
    const small = { ...tiny, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 16 };
    writeFileSync(join(dir, 'short.json'), JSON.stringify(small));
    writeFileSync(join(dir, 'scaled.json'), JSON.stringify({ ...small, rope_scaling: { type: 'linear', factor: 2.0 } }));
    const train = (arch: string, out: string): ReturnType<typeof sftkit> =>
      sftkit(['run', '--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--model.arch', join(dir, arch), '--train_dataset_dir', records, '--output_dir', join(dir, out), '--batch_size', '2', '--runner_config.max_steps', '1']);

    const refused = train('short.json', 'out-short');
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /seq_length 32 is above the model's max_position_embeddings 16/);
    assert.match(refused.stderr, /hint: preprocess again with --seq_length 16 or less, or set rope_scaling/);

    const scaled = train('scaled.json', 'out-scaled');
    assert.equal(scaled.status, 0, scaled.stderr);
    assert.match(scaled.stdout, /step 1\/1 /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
