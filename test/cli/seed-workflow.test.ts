// The README's workflow on the bundled tiny Llama (assets/demo/base-model, a Llama-2-style folder whose
// tokenizer_config.json says add_bos_token: true): convert -> data alpaca -> preprocess --model_file -> run.
// Records made from the bare tokenizer.model must be taken by the converted checkpoint (issue 24, defect 2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');
const BASE = join(root, 'assets', 'demo', 'base-model');

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('convert, data alpaca, preprocess --model_file and run: the records are accepted and training runs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-seed-'));
  try {
    const ckpt = join(dir, 'llama_tiny');
    const convert = sftkit(['convert', '--input_path', BASE, '--output_path', ckpt, '--model', 'llama']);
    assert.equal(convert.status, 0, convert.stderr);

    const conv = join(dir, 'alpaca-conversation.json');
    const alpaca = sftkit(['data', 'alpaca', '--data_path', join(root, 'assets', 'demo', 'alpaca_train.json'), '--output_path', conv]);
    assert.equal(alpaca.status, 0, alpaca.stderr);
    assert.match(alpaca.stdout, /wrote 2800 conversations/);

    const records = join(dir, 'alpaca-256');
    const pre = sftkit(['data', 'preprocess', '--dataset_type', 'qa', '--input_glob', conv, '--model_file', join(ckpt, 'tokenizer.model'), '--seq_length', '256', '--samples_num', '32', '--output_file', records]);
    assert.equal(pre.status, 0, pre.stderr);
    const manifest = JSON.parse(readFileSync(join(records, 'manifest.json'), 'utf8')) as { tokenizer: { identity: string }; rows: number };
    assert.equal(manifest.rows, 32);
    // The same tokenizer, loaded from the folder (where add_bos_token is true), has the same identity.
    assert.equal(manifest.tokenizer.identity, Tokenizer.fromDir(ckpt).identity);

    const out = join(dir, 'output');
    const run = sftkit(['run', '--config', 'configs/demo/finetune.yaml', '--load_checkpoint', ckpt, '--train_dataset_dir', records, '--output_dir', out,
      '--batch_size', '4', '--runner_config.max_steps', '2', '--callbacks.eval.do_eval', 'false', '--callbacks.loss_monitor.log_every', '1']);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /step 2\/2 .*loss \d/);
    const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });
    assert.deepEqual(steps.map((s) => s.step), [1, 2]);
    assert.ok(steps.every((s) => Number.isFinite(s.loss) && s.loss > 0));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
