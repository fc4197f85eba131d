// `sftkit run` end to end through the CLI: preprocess text into records, pretrain a tiny Llama, resume it,
// evaluate it; and bad flags exit non-zero with the nearest valid key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('preprocess, train, resume and evaluate through the CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-run-'));
  try {
    const text = Array.from({ length: 60 }, (_, i) => `The Congress shall meet on day ${i} of the session, and the people shall be heard in the year ${1800 + i}.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    const pre = sftkit(['data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32', '--output_file', records]);
    assert.equal(pre.status, 0, pre.stderr);
    const out = join(dir, 'out');
    const common = ['--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--train_dataset_dir', records, '--output_dir', out, '--batch_size', '4', '--callbacks.checkpoint.save_checkpoint_steps', '2'];
    const first = sftkit(['run', ...common, '--runner_config.max_steps', '4']);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /step 4\/4 .*loss \d/);
    const resumed = sftkit(['run', ...common, '--runner_config.max_steps', '6', '--resume_training']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stdout, /resuming from .*tiny-1_4 \(step 4\)/);
    assert.match(resumed.stdout, /step 6\/6/);
    assert.doesNotMatch(resumed.stdout, /step [1-4]\/6/);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
    assert.deepEqual(metrics, [1, 2, 3, 4, 5, 6]);

    const ev = sftkit(['run', '--run_mode', 'eval', '--load_checkpoint', join(out, 'checkpoint'), '--eval_dataset_dir', records, '--output_dir', out]);
    assert.equal(ev.status, 0, ev.stderr);
    const result = JSON.parse(ev.stdout.trim().split('\n').pop() ?? '{}') as { loss: number; perplexity: number; tokens: number };
    assert.ok(result.loss > 0 && Math.abs(result.perplexity - Math.exp(result.loss)) < 1e-6 * result.perplexity);
    assert.ok(existsSync(join(out, 'eval_results.json')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a misspelt override exits non-zero naming the nearest key', () => {
  const r = sftkit(['run', '--config', 'configs/gpt2/finetune_gpt2.yaml', '--optimizer.learnig_rate', '1e-4']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /unknown key \(did you mean '--optimizer\.learning_rate'\?\)/);
});
