// Data-parallel training through `sftkit launch`: 2 ranks × batch b give the weights of 1 rank with
// gradient accumulation 2 × b (with and without ZeRO-1 optimizer sharding); a checkpoint written by 2 ranks
// resumes at 2 ranks and at 1. Skips without MPI unless SFTKIT_REQUIRE_MPI=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors } from '../../src/formats/safetensors.ts';
import { needMpi, root, run } from './mpi-helper.ts';

const bin = join(root, 'bin', 'sftkit.js');

function weights(dir: string): Float32Array {
  const f = openSafetensors(join(dir, 'model.safetensors'));
  try {
    const parts = f.tensors.map((t) => {
      const b = f.read(t.name);
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    });
    const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return all;
  } finally {
    f.close();
  }
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += ((a[i] as number) - (b[i] as number)) ** 2;
    den += (b[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
}

test('2 ranks × b equal 1 rank × 2b accumulation, with and without ZeRO-1; resume at 2 and at 1 rank', (t) => {
  if (!needMpi(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-dp-'));
  try {
    const text = Array.from({ length: 40 }, (_, i) => `Item ${i}: the Congress met in the year ${1800 + i} and spoke of peace, trade and the common defense.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    const pre = run(process.execPath, [bin, 'data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32', '--output_file', records], 60_000);
    assert.equal(pre.status, 0, pre.stderr);
    const common = (out: string, extra: string[]): string[] => [
      'run', '--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--train_dataset_dir', records, '--output_dir', out,
      '--model.arch', 'configs/tiny/llama_tiny.json', '--runner_config.max_steps', '5', '--callbacks.checkpoint.save_checkpoint_steps', '3',
      '--lr_schedule.warmup_steps', '1', ...extra,
    ];
    const single = join(dir, 'single');
    const r1 = run(process.execPath, [bin, ...common(single, ['--batch_size', '2', '--gradient_accumulation_steps', '2'])], 120_000, { SFTKIT_THREADS: '2' });
    assert.equal(r1.status, 0, r1.stderr + r1.stdout);
    const ref = weights(join(single, 'checkpoint', 'tiny-1_5'));

    for (const shard of ['false', 'true']) {
      const out = join(dir, `dp-${shard}`);
      const r2 = run(process.execPath, [bin, 'launch', '--worker_num', '2', '--log_dir', join(out, 'logs'), '--', ...common(out, ['--batch_size', '2', '--parallel_config.optimizer_shard', shard])], 180_000);
      assert.equal(r2.status, 0, `${r2.stderr}\n${r2.stdout}\n${readFileSafe(join(out, 'logs', 'worker_0.log'))}\n${readFileSafe(join(out, 'logs', 'worker_1.log'))}`);
      const got = weights(join(out, 'checkpoint', 'tiny-1_5'));
      assert.ok(relDiff(got, ref) <= 1e-6, `optimizer_shard ${shard}: weights differ from 1-rank accumulation by ${relDiff(got, ref)}`);
    }

    // Resume the sharded 2-rank run from step 3: at 2 ranks and at 1 rank (re-sharded), both reach step 5's weights.
    for (const [ranks, name] of [[2, 'resume2'], [1, 'resume1']] as const) {
      const out = join(dir, name);
      const src = join(dir, 'dp-true');
      rmSync(out, { recursive: true, force: true });
      run('cp', ['-r', src, out], 10_000);
      rmSync(join(out, 'checkpoint', 'tiny-1_5'), { recursive: true });
      writeFileSync(join(out, 'checkpoint', 'meta.json'), JSON.stringify({ latest: 'tiny-1_3', checkpoints: ['tiny-1_3'] }));
      const args = ranks === 2
        ? [bin, 'launch', '--worker_num', '2', '--log_dir', join(out, 'logs'), '--', ...common(out, ['--batch_size', '2', '--parallel_config.optimizer_shard', 'true', '--resume_training'])]
        : [bin, ...common(out, ['--batch_size', '2', '--gradient_accumulation_steps', '2', '--resume_training'])];
      const r = run(process.execPath, args, 180_000, ranks === 1 ? { SFTKIT_THREADS: '2' } : {});
      assert.equal(r.status, 0, r.stderr + r.stdout);
      const got = weights(join(out, 'checkpoint', 'tiny-1_5'));
      assert.ok(relDiff(got, ref) <= 1e-6, `resumed at ${ranks} rank(s): weights differ by ${relDiff(got, ref)}`);
    }
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
