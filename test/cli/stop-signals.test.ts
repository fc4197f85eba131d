// Graceful preemption: SIGTERM or SIGUSR1 mid-run saves the step and exits 128 + signal; resuming gives the
// losses and weights of a run that never stopped, bit for bit. The time limit and a second signal end a
// process whose event loop is busy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import { DEFAULT_STOP_TIMEOUT_S, stopExitCode, stopSignalOfExitCode, stopTimeoutSeconds } from '../../src/cli/stop-signals.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/**
 * Runs `node args`; `onLine` sees each stdout line with the child, to signal it. Resolves when the child ends.
 */
function runChild(args: string[], onLine: (line: string, pid: number) => void = () => {}): Promise<Ended> {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, SFTKIT_THREADS: '1' } });
  let stdout = '';
  let stderr = '';
  let pending = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() as string;
    for (const line of lines) onLine(line, child.pid as number);
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, seconds: (performance.now() - t0) / 1000 })));
}

/** Sends `signal` once, on the first progress line at or past step `at`. */
function signalAtStep(at: number, signal: NodeJS.Signals): (line: string, pid: number) => void {
  let sent = false;
  return (line, pid) => {
    const m = /^step\s+(\d+)\//.exec(line);
    if (!sent && m && Number(m[1]) >= at) {
      sent = true;
      process.kill(pid, signal);
    }
  };
}

interface Metric {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
}

function metrics(out: string): Metric[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Metric & { tokens_per_s: number })
    .map(({ step, loss, lr, grad_norm }) => ({ step, loss, lr, grad_norm }));
}

function weightsHash(checkpoint: string): string {
  return (JSON.parse(readFileSync(join(checkpoint, 'sftkit.json'), 'utf8')) as { files: Record<string, string> }).files['model.safetensors'] as string;
}

test('exit codes are 128 + the signal; SFTKIT_STOP_TIMEOUT is checked', () => {
  assert.deepEqual([stopExitCode('SIGINT'), stopExitCode('SIGTERM'), stopExitCode('SIGUSR1')], [130, 143, 138]);
  assert.equal(stopSignalOfExitCode(138), 'SIGUSR1');
  assert.equal(stopSignalOfExitCode(1), null);
  assert.equal(stopTimeoutSeconds({}), DEFAULT_STOP_TIMEOUT_S);
  assert.equal(stopTimeoutSeconds({ SFTKIT_STOP_TIMEOUT: '2.5' }), 2.5);
  for (const bad of ['0', '-1', 'soon', 'Infinity']) assert.throws(() => stopTimeoutSeconds({ SFTKIT_STOP_TIMEOUT: bad }), ConfigError, bad);
});

test('SIGTERM and then SIGUSR1 mid-run save and exit 143 and 138; resuming matches an uninterrupted run bit for bit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-preempt-'));
  try {
    const text = Array.from({ length: 80 }, (_, i) => `The people of the year ${1800 + i} asked the Congress for roads, schools and peace.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    const pre = await runChild([bin, 'data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32', '--output_file', records]);
    assert.equal(pre.code, 0, pre.stderr);
    const arch = join(dir, 'arch.json');
    writeFileSync(arch, JSON.stringify({
      model_type: 'llama', vocab_size: 4096, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4,
      num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
    }));
    const common = (out: string): string[] => [
      bin, 'run', '--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--model.arch', arch, '--train_dataset_dir', records, '--output_dir', out,
      '--batch_size', '2', '--runner_config.max_steps', '200', '--callbacks.checkpoint.save_checkpoint_steps', '50',
    ];
    const ref = join(dir, 'ref');
    const whole = await runChild(common(ref));
    assert.equal(whole.code, 0, whole.stderr);

    const out = join(dir, 'out');
    const first = await runChild(common(out), signalAtStep(20, 'SIGTERM'));
    assert.equal(first.code, 143, first.stdout + first.stderr);
    assert.match(first.stdout, /received SIGTERM: finishing the step, saving a checkpoint and exiting within 300 s/);
    const k = Number(/stopped after step (\d+) \(received SIGTERM\): saved .*tiny-\d+_\1; continue with --resume_training/.exec(first.stdout)?.[1]);
    assert.ok(k >= 20 && k < 200, first.stdout);
    assert.deepEqual(metrics(out).map((m) => m.step), Array.from({ length: k }, (_, i) => i + 1));

    const second = await runChild([...common(out), '--resume_training'], signalAtStep(k + 20, 'SIGUSR1'));
    assert.equal(second.code, 138, second.stdout + second.stderr);
    assert.match(second.stdout, new RegExp(`resuming from .*_${k} \\(step ${k}\\)`));
    assert.match(second.stdout, /stopped after step \d+ \(received SIGUSR1\)/);

    const last = await runChild([...common(out), '--resume_training']);
    assert.equal(last.code, 0, last.stdout + last.stderr);
    assert.deepEqual(metrics(out), metrics(ref));
    const names = readdirSync(join(ref, 'checkpoint')).sort();
    assert.deepEqual(readdirSync(join(out, 'checkpoint')).sort(), names);
    assert.equal(weightsHash(join(out, 'checkpoint', names[names.length - 1] as string)), weightsHash(join(ref, 'checkpoint', names[names.length - 1] as string)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the time limit ends a process stuck after a stop signal; a second SIGTERM ends it at once', async () => {
  const child = join(import.meta.dirname, 'stop-signals-child.ts');
  const onReady = (signals: NodeJS.Signals[]) => {
    let next = 0;
    return (line: string, pid: number): void => {
      if ((line === 'ready' || line.startsWith('stopping on')) && next < signals.length) process.kill(pid, signals[next++] as NodeJS.Signals);
    };
  };
  const stuck = await runChild(['--import', 'tsx', child, '1'], onReady(['SIGTERM']));
  assert.equal(stuck.signal, 'SIGKILL', stuck.stdout + stuck.stderr);
  assert.match(stuck.stderr, /^sftkit: no checkpoint within 1 s of SIGTERM \(SFTKIT_STOP_TIMEOUT\); killing this process\. The previous checkpoint is kept\.$/m);
  assert.ok(stuck.seconds < 20, `took ${stuck.seconds} s`);

  const twice = await runChild(['--import', 'tsx', child, '60'], onReady(['SIGTERM', 'SIGTERM']));
  assert.equal(twice.signal, 'SIGTERM', twice.stdout + twice.stderr);
  assert.match(twice.stdout, /stopping on SIGTERM/);
  assert.ok(twice.seconds < 20, `took ${twice.seconds} s`);
});
