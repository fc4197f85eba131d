// Data-parallel training through `sftkit launch`: 2 ranks × batch b give the weights of 1 rank with
// gradient accumulation 2 × b (with and without ZeRO-1 optimizer sharding); a checkpoint written by 2 ranks
// resumes at 2 ranks and at 1; ZeRO-2 and ZeRO-3 at 2 and 4 ranks, resumed bit-exactly and at another world size and stage.
// Skips without MPI unless SFTKIT_REQUIRE_MPI=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors } from '../../src/formats/safetensors.ts';
import { needMpi, root, run } from './mpi-helper.ts';
import { relError } from '../helpers/native.ts';

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
      assert.ok(relError(got, ref) <= 1e-6, `optimizer_shard ${shard}: weights differ from 1-rank accumulation by ${relError(got, ref)}`);
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
      assert.ok(relError(got, ref) <= 1e-6, `resumed at ${ranks} rank(s): weights differ by ${relError(got, ref)}`);
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

test('ZeRO-2 through sftkit launch: 2 ranks × 2 and 4 ranks × 1 equal 1 rank × 2 × 2 and × 1 × 4; bit-exact resume; resume at 4 ranks with stage 1', (t) => {
  if (!needMpi(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-zero2-'));
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
    const launch = (np: number, out: string, extra: string[]) => {
      const r = run(process.execPath, [bin, 'launch', '--worker_num', String(np), '--log_dir', join(out, 'logs'), '--', ...common(out, extra)], 240_000);
      const logs = Array.from({ length: np }, (_, i) => readFileSafe(join(out, 'logs', `worker_${i}.log`))).join('\n');
      assert.equal(r.status, 0, `${r.stderr}\n${r.stdout}\n${logs}`);
      return logs;
    };
    // The global batch of every run below: 4 rows per step, the same rows.
    const single = join(dir, 'single');
    const r1 = run(process.execPath, [bin, ...common(single, ['--batch_size', '2', '--gradient_accumulation_steps', '2'])], 120_000, { SFTKIT_THREADS: '2' });
    assert.equal(r1.status, 0, r1.stderr + r1.stdout);
    const ref = weights(join(single, 'checkpoint', 'tiny-1_5'));
    // The same with the 4-rank runs' micro-batches of 1 row (GEMMs of other shapes round differently).
    const single1 = join(dir, 'single1');
    const r4 = run(process.execPath, [bin, ...common(single1, ['--batch_size', '1', '--gradient_accumulation_steps', '4'])], 120_000, { SFTKIT_THREADS: '2' });
    assert.equal(r4.status, 0, r4.stderr + r4.stdout);
    const ref1 = weights(join(single1, 'checkpoint', 'tiny-1_5'));

    const two = join(dir, 'z2-2');
    const logs = launch(2, two, ['--batch_size', '2', '--parallel_config.zero_stage', '2']);
    assert.match(logs, /optimizer state and gradients sharded \(ZeRO-2\)/);
    const got2 = weights(join(two, 'checkpoint', 'tiny-1_5'));
    assert.ok(relError(got2, ref) <= 1e-6, `2 ranks, stage 2: weights differ from 1-rank accumulation by ${relError(got2, ref)}`);
    const four = join(dir, 'z2-4');
    launch(4, four, ['--batch_size', '1', '--parallel_config.zero_stage', '2']);
    const got4 = weights(join(four, 'checkpoint', 'tiny-1_5'));
    assert.ok(relError(got4, ref1) <= 1e-6, `4 ranks, stage 2: weights differ from 1-rank accumulation by ${relError(got4, ref1)}`);

    // Resume the 2-rank stage-2 run from step 3: at 2 ranks stage 2 bit for bit; at 4 ranks stage 1 within 1e-6.
    for (const [np, stage, batch, name] of [[2, '2', '2', 'resume-2'], [4, '1', '1', 'resume-4']] as const) {
      const out = join(dir, name);
      run('cp', ['-r', two, out], 10_000);
      rmSync(join(out, 'checkpoint', 'tiny-1_5'), { recursive: true });
      writeFileSync(join(out, 'checkpoint', 'meta.json'), JSON.stringify({ latest: 'tiny-1_3', checkpoints: ['tiny-1_3'] }));
      launch(np, out, ['--batch_size', batch, '--parallel_config.zero_stage', stage, '--resume_training']);
      const got = weights(join(out, 'checkpoint', 'tiny-1_5'));
      if (np === 2) assert.deepEqual(got, got2, 'resumed at 2 ranks, stage 2: bit-exact');
      else {
        // Steps 1-3 ran with micro-batches of 2 rows, 4-5 of 1 row: allowed the spread that the micro-batch
        // shape alone makes between the two 1-rank references, on top of 1e-6.
        const spread = relError(ref, ref1);
        assert.ok(relError(got, ref1) <= 1e-6 + spread, `resumed at 4 ranks, stage 1: weights differ by ${relError(got, ref1)} (references differ by ${spread})`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ZeRO-3 through sftkit launch: 2 ranks × 2 and 4 ranks × 1 equal 1 rank × 2 × 2 and × 1 × 4; bit-exact resume; resume across stage and world size', (t) => {
  if (!needMpi(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-zero3-'));
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
    const launch = (np: number, out: string, extra: string[]) => {
      const r = run(process.execPath, [bin, 'launch', '--worker_num', String(np), '--log_dir', join(out, 'logs'), '--', ...common(out, extra)], 240_000);
      const logs = Array.from({ length: np }, (_, i) => readFileSafe(join(out, 'logs', `worker_${i}.log`))).join('\n');
      assert.equal(r.status, 0, `${r.stderr}\n${r.stdout}\n${logs}`);
      return logs;
    };
    const single = join(dir, 'single');
    const r1 = run(process.execPath, [bin, ...common(single, ['--batch_size', '2', '--gradient_accumulation_steps', '2'])], 120_000, { SFTKIT_THREADS: '2' });
    assert.equal(r1.status, 0, r1.stderr + r1.stdout);
    const ref = weights(join(single, 'checkpoint', 'tiny-1_5'));
    const single1 = join(dir, 'single1');
    const r4 = run(process.execPath, [bin, ...common(single1, ['--batch_size', '1', '--gradient_accumulation_steps', '4'])], 120_000, { SFTKIT_THREADS: '2' });
    assert.equal(r4.status, 0, r4.stderr + r4.stdout);
    const ref1 = weights(join(single1, 'checkpoint', 'tiny-1_5'));

    // 2 ranks with recompute (each layer gathered again for its backward) and evaluation every 2 steps (the
    // eval forward gathers too); 4 ranks without recompute (every layer kept gathered until its backward).
    const two = join(dir, 'z3-2');
    const logs = launch(2, two, ['--batch_size', '2', '--parallel_config.zero_stage', '3', '--model.recompute', 'true', '--callbacks.eval.do_eval', 'true', '--eval_dataset.dataset_dir', records, '--callbacks.eval.eval_steps', '2']);
    assert.match(logs, /optimizer state, gradients and weights sharded \(ZeRO-3\)/);
    assert.equal(readFileSync(join(two, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"type":"eval"')).length, 3);
    const got2 = weights(join(two, 'checkpoint', 'tiny-1_5'));
    assert.ok(relError(got2, ref) <= 1e-6, `2 ranks, stage 3: weights differ from 1-rank accumulation by ${relError(got2, ref)}`);
    const four = join(dir, 'z3-4');
    launch(4, four, ['--batch_size', '1', '--parallel_config.zero_stage', '3']);
    const got4 = weights(join(four, 'checkpoint', 'tiny-1_5'));
    assert.ok(relError(got4, ref1) <= 1e-6, `4 ranks, stage 3: weights differ from 1-rank accumulation by ${relError(got4, ref1)}`);
    // The step-3 checkpoint of a stage-3 run is the same model as the reference's (written by gathering).
    assert.ok(relError(weights(join(four, 'checkpoint', 'tiny-1_3')), weights(join(single1, 'checkpoint', 'tiny-1_3'))) <= 1e-6);

    // Resume the 2-rank stage-3 run from step 3: at 2 ranks stage 3 bit for bit; at 4 ranks stage 2 and at
    // 1 rank stage 0 within 1e-6.
    const cases = [[2, '3', '2', 'resume-2', two], [4, '2', '1', 'resume-4', two], [1, '0', '2', 'resume-1', two]] as const;
    for (const [np, stage, batch, name, from] of cases) {
      const out = join(dir, name);
      run('cp', ['-r', from, out], 10_000);
      rmSync(join(out, 'checkpoint', 'tiny-1_5'), { recursive: true });
      writeFileSync(join(out, 'checkpoint', 'meta.json'), JSON.stringify({ latest: 'tiny-1_3', checkpoints: ['tiny-1_3'] }));
      const extra = ['--batch_size', batch, '--parallel_config.zero_stage', stage, '--resume_training', ...(np === 2 ? ['--model.recompute', 'true', '--callbacks.eval.do_eval', 'true', '--eval_dataset.dataset_dir', records, '--callbacks.eval.eval_steps', '2'] : [])];
      if (np === 1) {
        const r = run(process.execPath, [bin, ...common(out, [...extra, '--gradient_accumulation_steps', '2'])], 120_000, { SFTKIT_THREADS: '2' });
        assert.equal(r.status, 0, r.stderr + r.stdout);
      } else {
        launch(np, out, extra);
      }
      const got = weights(join(out, 'checkpoint', 'tiny-1_5'));
      if (np === 2) assert.deepEqual(got, got2, 'resumed at 2 ranks, stage 3: bit-exact');
      else if (np === 1) assert.ok(relError(got, ref) <= 1e-6, `resumed at 1 rank, stage 0: weights differ by ${relError(got, ref)}`);
      else {
        const spread = relError(ref, ref1);
        assert.ok(relError(got, ref1) <= 1e-6 + spread, `resumed at 4 ranks, stage 2: weights differ by ${relError(got, ref1)} (references differ by ${spread})`);
      }
    }
    // A stage-2 checkpoint (4 ranks × 1 above, resumed) continued at stage 3 on 2 ranks.
    const z2 = join(dir, 'z2-to-3');
    run('cp', ['-r', join(dir, 'resume-4'), z2], 10_000);
    rmSync(join(z2, 'checkpoint', 'tiny-1_5'), { recursive: true });
    writeFileSync(join(z2, 'checkpoint', 'meta.json'), JSON.stringify({ latest: 'tiny-1_3', checkpoints: ['tiny-1_3'] }));
    launch(2, z2, ['--batch_size', '2', '--parallel_config.zero_stage', '3', '--resume_training']);
    assert.ok(relError(weights(join(z2, 'checkpoint', 'tiny-1_5')), ref) <= 1e-6, 'stage-2 checkpoint resumed at stage 3');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
