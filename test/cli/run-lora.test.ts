// `sftkit run` with LoRA end to end on the demo base: train with --lora.rank (only adapters trainable, the
// checkpoint holds PEFT's files), eval with --lora.adapter, `convert --reversed --merge_lora` to a plain HF
// folder, and eval on it: the same loss as base + adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');
const BASE = join(root, 'assets', 'demo', 'base-model');

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('run --lora.rank trains adapters, eval --lora.adapter equals eval on the --merge_lora export', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-run-lora-'));
  try {
    const ckpt = join(dir, 'llama_tiny');
    assert.equal(sftkit(['convert', '--input_path', BASE, '--output_path', ckpt, '--model', 'llama']).status, 0);
    const conv = join(dir, 'conv.json');
    assert.equal(sftkit(['data', 'alpaca', '--data_path', join(root, 'assets', 'demo', 'alpaca_eval.json'), '--output_path', conv]).status, 0);
    const records = join(dir, 'records');
    const pre = sftkit(['data', 'preprocess', '--dataset_type', 'qa', '--input_glob', conv, '--tokenizer', ckpt, '--seq_length', '256', '--samples_num', '8', '--output_file', records]);
    assert.equal(pre.status, 0, pre.stderr);

    const out = join(dir, 'output');
    const run = sftkit(['run', '--load_checkpoint', ckpt, '--train_dataset_dir', records, '--output_dir', out, '--batch_size', '4', '--runner_config.max_steps', '2',
      '--optimizer.learning_rate', '0.01', '--lora.rank', '4', '--lora.alpha', '8', '--lora.target_modules', '[q_proj, v_proj, down_proj]']);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /tensors frozen/);
    const ck = join(out, 'checkpoint');
    const latest = (JSON.parse(readFileSync(join(ck, 'meta.json'), 'utf8')) as { latest: string }).latest;
    const ckDir = join(ck, latest);
    assert.ok(existsSync(join(ckDir, 'adapter_config.json')) && existsSync(join(ckDir, 'adapter_model.safetensors')));
    // The adapter and a reference to the base, not the base's weights.
    assert.ok(!existsSync(join(ckDir, 'model.safetensors')) && !existsSync(join(ckDir, 'config.json')));
    assert.equal((JSON.parse(readFileSync(join(ckDir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>)['base_model_name_or_path'], ckpt);
    assert.equal((JSON.parse(readFileSync(join(ckDir, 'sftkit.json'), 'utf8')) as { base_model: { dir: string } }).base_model.dir, ckpt);

    const evalWith = (args: string[], outDir: string): { loss: number } => {
      const r = sftkit(['run', '--run_mode', 'eval', '--eval_dataset_dir', records, '--output_dir', outDir, '--batch_size', '4', ...args]);
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(readFileSync(join(outDir, 'eval_results.json'), 'utf8')) as { loss: number };
    };
    const base = evalWith(['--load_checkpoint', ckpt], join(dir, 'e0'));
    const adapted = evalWith(['--load_checkpoint', ckpt, '--lora.adapter', ckDir], join(dir, 'e1'));
    assert.notEqual(adapted.loss, base.loss);
    // The LoRA checkpoint as --load_checkpoint: its base (the folder it names) with its adapter.
    assert.equal(evalWith(['--load_checkpoint', ckDir], join(dir, 'e3')).loss, adapted.loss);
    const plain = sftkit(['convert', '--reversed', '--input_path', ckDir, '--output_path', join(dir, 'plain')]);
    assert.notEqual(plain.status, 0);
    assert.match(plain.stderr, /a LoRA checkpoint holds only its adapter/);

    const merged = join(dir, 'merged');
    const conv2 = sftkit(['convert', '--reversed', '--merge_lora', '--input_path', ck, '--output_path', merged, '--dtype', 'float32']);
    assert.equal(conv2.status, 0, conv2.stderr);
    assert.ok(!existsSync(join(merged, 'adapter_config.json')));
    const m = evalWith(['--load_checkpoint', merged], join(dir, 'e2'));
    assert.ok(Math.abs(m.loss - adapted.loss) / adapted.loss <= 1e-5, `merged ${m.loss} vs adapter ${adapted.loss}`);

    const bad = sftkit(['convert', '--reversed', '--merge_lora', '--input_path', ckpt, '--output_path', join(dir, 'nope')]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /holds no LoRA adapter/);

    // The base moved away: resume names the missing base; --load_checkpoint names where it went.
    const moved = join(dir, 'moved-base');
    renameSync(ckpt, moved);
    const resume = (extra: string[]): ReturnType<typeof sftkit> =>
      sftkit(['run', '--train_dataset_dir', records, '--output_dir', out, '--batch_size', '4', '--runner_config.max_steps', '3', '--optimizer.learning_rate', '0.01',
        '--lora.rank', '4', '--lora.alpha', '8', '--lora.target_modules', '[q_proj, v_proj, down_proj]', '--resume_training', ...extra]);
    const gone = resume([]);
    assert.notEqual(gone.status, 0);
    assert.ok(gone.stderr.includes(`its base model ${ckpt} is missing`), gone.stderr);
    assert.match(gone.stderr, /put the base model back at .*--load_checkpoint/s);
    const again = resume(['--load_checkpoint', moved]);
    assert.equal(again.status, 0, again.stderr);
    assert.ok(again.stdout.includes(`LoRA base: ${moved} (--load_checkpoint) instead of the recorded ${ckpt}`), again.stdout);
    const last = (JSON.parse(readFileSync(join(ck, 'meta.json'), 'utf8')) as { latest: string }).latest;
    assert.equal((JSON.parse(readFileSync(join(ck, last, 'sftkit.json'), 'utf8')) as { base_model: { dir: string } }).base_model.dir, moved);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
