// Graceful preemption under `sftkit launch`: SIGTERM to the launcher reaches both ranks, which agree on the
// step, save one checkpoint together (each its rank file) and end with 143; resuming at 2 ranks gives the
// losses and weights of an uninterrupted 2-rank run bit for bit. Skips without MPI unless SFTKIT_REQUIRE_MPI=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needMpi, root, run } from './mpi-helper.ts';

const bin = join(root, 'bin', 'sftkit.js');

function readFileSafe(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}

/** Starts a launch and sends SIGTERM to the launcher once rank 0 has logged step `at`. */
function launchAndStop(args: string[], log: string, at: number): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [bin, 'launch', ...args], { cwd: root, env: { ...process.env, SFTKIT_THREADS: '1' } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setInterval(() => {
    const steps = [...readFileSafe(log).matchAll(/^step\s+(\d+)\//gm)].map((m) => Number(m[1]));
    if (steps.some((s) => s >= at)) {
      clearInterval(timer);
      child.kill('SIGTERM');
    }
  }, 20);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ code, stderr });
    }),
  );
}

function metricLines(out: string): string[] {
  // Everything but the speed, which differs between runs.
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => l.replace(/,"tokens_per_s":[^,}]*/, ''));
}

function weightsHash(checkpoint: string): string {
  return (JSON.parse(readFileSync(join(checkpoint, 'sftkit.json'), 'utf8')) as { files: Record<string, string> }).files['model.safetensors'] as string;
}

test('SIGTERM to sftkit launch: both ranks save the same step and exit 143; resuming at 2 ranks is bit-identical', async (t) => {
  if (!needMpi(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-preempt-dp-'));
  try {
    const text = Array.from({ length: 80 }, (_, i) => `Item ${i}: the Congress met in the year ${1800 + i} and spoke of peace, trade and the common defense.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    const pre = run(process.execPath, [bin, 'data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32', '--output_file', records], 60_000);
    assert.equal(pre.status, 0, pre.stderr);
    const arch = join(dir, 'arch.json');
    writeFileSync(arch, JSON.stringify({
      model_type: 'llama', vocab_size: 4096, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4,
      num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
    }));
    const launchArgs = (out: string, extra: string[] = []): string[] => [
      '--worker_num', '2', '--log_dir', join(out, 'logs'), '--',
      'run', '--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--model.arch', arch, '--train_dataset_dir', records, '--output_dir', out,
      '--batch_size', '2', '--runner_config.max_steps', '60', '--callbacks.checkpoint.save_checkpoint_steps', '20',
      '--parallel_config.optimizer_shard', 'true', ...extra,
    ];
    const logs = (out: string): string => `${readFileSafe(join(out, 'logs', 'worker_0.log'))}\n${readFileSafe(join(out, 'logs', 'worker_1.log'))}`;

    const ref = join(dir, 'ref');
    const whole = run(process.execPath, [bin, 'launch', ...launchArgs(ref)], 180_000);
    assert.equal(whole.status, 0, `${whole.stderr}\n${logs(ref)}`);

    const out = join(dir, 'out');
    const stopped = await launchAndStop(launchArgs(out), join(out, 'logs', 'worker_0.log'), 5);
    assert.equal(stopped.code, 143, `${stopped.stderr}\n${logs(out)}`);
    assert.match(stopped.stderr, /received SIGTERM: every worker saves a checkpoint after its current step and stops/);
    assert.match(stopped.stderr, /stopped on SIGTERM: the workers saved a checkpoint at the same step; continue with --resume_training/);
    const w0 = readFileSafe(join(out, 'logs', 'worker_0.log'));
    const k = Number(/stopped after step (\d+) \(received SIGUSR1\)/.exec(w0)?.[1]);
    assert.ok(k >= 5 && k < 60, w0);
    // One checkpoint at step k, written by both ranks; no rank aborted the job.
    const meta = JSON.parse(readFileSync(join(out, 'checkpoint', 'meta.json'), 'utf8')) as { latest: string };
    assert.match(meta.latest, new RegExp(`^tiny-\\d+_${k}$`));
    const latest = join(out, 'checkpoint', meta.latest);
    assert.deepEqual(readdirSync(latest).filter((f) => f.startsWith('rank_')).sort(), ['rank_0.json', 'rank_1.json']);
    assert.deepEqual(readdirSync(join(latest, 'optimizer')).sort(), ['rank_0.safetensors', 'rank_1.safetensors']);
    assert.doesNotMatch(logs(out), /aborting every rank|MPI_ABORT/);

    const resumed = run(process.execPath, [bin, 'launch', ...launchArgs(out, ['--resume_training'])], 180_000);
    assert.equal(resumed.status, 0, `${resumed.stderr}\n${logs(out)}`);
    assert.deepEqual(metricLines(out), metricLines(ref));
    const names = readdirSync(join(ref, 'checkpoint')).sort();
    assert.deepEqual(readdirSync(join(out, 'checkpoint')).sort(), names);
    const last = names[names.length - 1] as string;
    assert.equal(weightsHash(join(out, 'checkpoint', last)), weightsHash(join(ref, 'checkpoint', last)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
