// `sftkit run` end to end through the CLI: preprocess text into records, pretrain a tiny Llama, resume it,
// evaluate it; and bad flags exit non-zero with the nearest valid key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { readTfEvents } from '../../src/formats/tfevents.ts';
import { CURVE_PNG_WIDTH } from '../../src/train/report/loss-curve.ts';

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
    const first = sftkit(['run', ...common, '--runner_config.max_steps', '4', '--callbacks.tensorboard.enabled', 'true']);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /step 4\/4 .*loss \d/);
    // report.md and loss_curve.png: a PNG of CURVE_PNG_WIDTH pixels, and the final loss in the report.
    const png = readFileSync(join(out, 'loss_curve.png'));
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.equal(png.toString('latin1', 12, 16), 'IHDR');
    assert.equal(png.readUInt32BE(16), CURVE_PNG_WIDTH);
    assert.ok(png.readUInt32BE(20) > 400 && png.readUInt32BE(20) < 2000, `height ${png.readUInt32BE(20)}`);
    assert.equal(png.toString('latin1', png.length - 8, png.length - 4), 'IEND');
    const lastLoss = (readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number }).pop() as { loss: number }).loss;
    const report = readFileSync(join(out, 'report.md'), 'utf8');
    assert.match(report, /step 4 of 4, finished/);
    assert.ok(report.includes(`| final training loss (step 4) | ${lastLoss.toFixed(4)} |`), report);
    assert.match(report, /\| latest checkpoint \| `checkpoint\/tiny-1_4` \|/);
    assert.ok(readdirSync(out).every((f) => !f.startsWith('.')), 'no temp files left');
    const tb = readdirSync(join(out, 'tensorboard'));
    assert.equal(readTfEvents(readFileSync(join(out, 'tensorboard', tb[0] as string))).filter((e) => e.scalars.some((x) => x.tag === 'train/loss')).length, 4);
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

test('SIGINT finishes the step, saves a checkpoint and exits 130; predict writes its results', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-sigint-'));
  try {
    const text = Array.from({ length: 80 }, (_, i) => `The people of the year ${1800 + i} asked the Congress for roads, schools and peace.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    assert.equal(sftkit(['data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32', '--output_file', records]).status, 0);
    const out = join(dir, 'out');
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [bin, 'run', '--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--train_dataset_dir', records, '--output_dir', out, '--batch_size', '2', '--runner_config.max_steps', '100000', '--callbacks.checkpoint.save_checkpoint_steps', '100000'], {
      cwd: root,
      env: { ...process.env, SFTKIT_THREADS: '2' },
    });
    let stdout = '';
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (/step\s+3\//.test(stdout) && !child.killed) child.kill('SIGINT');
      });
      child.on('close', (c) => resolve(c));
    });
    assert.equal(code, 130, stdout);
    assert.match(stdout, /received SIGINT: finishing the step, saving a checkpoint/);
    const meta = JSON.parse(readFileSync(join(out, 'checkpoint', 'meta.json'), 'utf8')) as { latest: string };
    assert.match(meta.latest, /^tiny-1_\d+$/);

    // Predict from that checkpoint with the tokenizer folder of the records' model.
    const tok = join(dir, 'tok');
    mkdirSync(tok);
    copyFileSync('test/fixtures/tokenizer/bpe.model', join(tok, 'tokenizer.model'));
    const pred = sftkit(['run', '--run_mode', 'predict', '--load_checkpoint', join(out, 'checkpoint'), '--tokenizer', tok, '--output_dir', out, '--predict_data', 'The Congress', '--template', 'none', '--max_new_tokens', '5']);
    assert.equal(pred.status, 0, pred.stderr);
    const lines = readFileSync(join(out, 'predict_results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; output: string });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.prompt, 'The Congress');
    assert.equal(typeof lines[0]?.output, 'string');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
