// Data parallel with LoRA adapters through `sftkit launch`: 2 ranks × batch b give the adapters of 1 rank with
// gradient accumulation 2 × b (ZeRO-1 sharding the adapters' moments), and a 2-rank LoRA checkpoint resumes at
// 2 ranks to the same adapters. Skips without MPI unless SFTKIT_REQUIRE_MPI=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors } from '../../src/formats/safetensors.ts';
import { needMpi, root, run } from './mpi-helper.ts';
import { relError } from '../helpers/native.ts';

const bin = join(root, 'bin', 'sftkit.js');

function adapters(dir: string): Float32Array {
  const f = openSafetensors(join(dir, 'adapter_model.safetensors'));
  try {
    const parts = [...f.tensors].sort((a, b) => (a.name < b.name ? -1 : 1)).map((t) => {
      const b = f.read(t.name);
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    });
    return Float32Array.from(parts.flatMap((p) => [...p]));
  } finally {
    f.close();
  }
}


test('LoRA: 2 ranks × b equal 1 rank × 2b accumulation (ZeRO-1); a 2-rank checkpoint resumes at 2 ranks', (t) => {
  if (!needMpi(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-dp-lora-'));
  try {
    const text = Array.from({ length: 40 }, (_, i) => `Item ${i}: the Congress met in the year ${1800 + i} and spoke of peace, trade and the common defense.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    const pre = run(process.execPath, [bin, 'data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32', '--output_file', records], 60_000);
    assert.equal(pre.status, 0, pre.stderr);
    const common = (out: string, extra: string[]): string[] => [
      'run', '--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--train_dataset_dir', records, '--output_dir', out,
      '--model.arch', 'configs/tiny/llama_tiny.json', '--runner_config.max_steps', '5', '--callbacks.checkpoint.save_checkpoint_steps', '3',
      '--lr_schedule.warmup_steps', '1', '--optimizer.learning_rate', '0.01', '--lora.rank', '4', '--lora.target_modules', 'all-linear', ...extra,
    ];
    const single = join(dir, 'single');
    const r1 = run(process.execPath, [bin, ...common(single, ['--batch_size', '2', '--gradient_accumulation_steps', '2'])], 120_000, { SFTKIT_THREADS: '2' });
    assert.equal(r1.status, 0, r1.stderr + r1.stdout);
    const ref = adapters(join(single, 'checkpoint', 'tiny-1_5'));
    assert.ok(ref.length > 0);

    const out = join(dir, 'dp');
    const r2 = run(process.execPath, [bin, 'launch', '--worker_num', '2', '--log_dir', join(out, 'logs'), '--', ...common(out, ['--batch_size', '2', '--parallel_config.optimizer_shard', 'true'])], 180_000);
    assert.equal(r2.status, 0, `${r2.stderr}\n${r2.stdout}\n${readFileSafe(join(out, 'logs', 'worker_0.log'))}`);
    const got = adapters(join(out, 'checkpoint', 'tiny-1_5'));
    assert.ok(relError(got, ref) <= 1e-6, `2 ranks: adapters differ from 1-rank accumulation by ${relError(got, ref)}`);

    const again = join(dir, 'resume');
    run('cp', ['-r', out, again], 10_000);
    rmSync(join(again, 'checkpoint', 'tiny-1_5'), { recursive: true });
    writeFileSync(join(again, 'checkpoint', 'meta.json'), JSON.stringify({ latest: 'tiny-1_3', checkpoints: ['tiny-1_3'] }));
    const r3 = run(process.execPath, [bin, 'launch', '--worker_num', '2', '--log_dir', join(again, 'logs'), '--', ...common(again, ['--batch_size', '2', '--parallel_config.optimizer_shard', 'true', '--resume_training'])], 180_000);
    assert.equal(r3.status, 0, r3.stderr + r3.stdout);
    assert.deepEqual(adapters(join(again, 'checkpoint', 'tiny-1_5')), got);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
