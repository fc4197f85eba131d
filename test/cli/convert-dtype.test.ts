// `convert --reversed` after fine-tuning a bf16 base (issue 20): training stores float32, and the export goes
// back in the dtype the weights were published in (sftkit.json's source_dtype) unless --dtype says otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');
const BASE = join(root, 'assets', 'demo', 'base-model');

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The dtypes of a safetensors file's tensors, from its header. */
function storedDtypes(file: string): Set<string> {
  const fd = openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const header = Buffer.alloc(Number(len.readBigUInt64LE(0)));
    readSync(fd, header, 0, header.length, 8);
    const json = JSON.parse(header.toString('utf8')) as Record<string, { dtype?: string }>;
    return new Set(Object.entries(json).filter(([k]) => k !== '__metadata__').map(([, v]) => v.dtype as string));
  } finally {
    closeSync(fd);
  }
}

const configDtype = (dir: string): unknown => (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { torch_dtype?: unknown }).torch_dtype;

test('a bf16 base fine-tuned in float32 exports as bf16 by default, as float32 with --dtype float32', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-convert-dtype-'));
  try {
    assert.equal(configDtype(BASE), 'bfloat16');
    assert.deepEqual(storedDtypes(join(BASE, 'model.safetensors')), new Set(['BF16']));
    const ckpt = join(dir, 'base');
    const conv = sftkit(['convert', '--input_path', BASE, '--output_path', ckpt]);
    assert.equal(conv.status, 0, conv.stderr);
    assert.equal((JSON.parse(readFileSync(join(ckpt, 'sftkit.json'), 'utf8')) as { source_dtype?: string }).source_dtype, 'bfloat16');

    const text = Array.from({ length: 24 }, (_, i) => `Name a color of the year ${1900 + i}. Blue, like the sea on day ${i}.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    const pre = sftkit(['data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', join(ckpt, 'tokenizer.model'), '--seq_length', '32', '--output_file', records]);
    assert.equal(pre.status, 0, pre.stderr);
    const out = join(dir, 'out');
    const run = sftkit(['run', '--config', 'configs/demo/finetune.yaml', '--load_checkpoint', ckpt, '--train_dataset_dir', records, '--output_dir', out, '--batch_size', '2', '--runner_config.max_steps', '1', '--callbacks.eval.do_eval', 'false']);
    assert.equal(run.status, 0, run.stderr);
    // The training checkpoint stores float32 and carries the published dtype on.
    const trained = join(out, 'checkpoint', (JSON.parse(readFileSync(join(out, 'checkpoint', 'meta.json'), 'utf8')) as { latest: string }).latest);
    assert.equal(configDtype(trained), 'float32');
    assert.deepEqual(storedDtypes(join(trained, 'model.safetensors')), new Set(['F32']));

    const hf = join(dir, 'hf');
    const back = sftkit(['convert', '--reversed', '--input_path', join(out, 'checkpoint'), '--output_path', hf]);
    assert.equal(back.status, 0, back.stderr);
    assert.match(back.stdout, /GB bfloat16 /);
    assert.match(back.stdout, /dtype: bfloat16, the dtype the weights were published in \(pass --dtype float32/);
    assert.equal(configDtype(hf), 'bfloat16');
    assert.deepEqual(storedDtypes(join(hf, 'model.safetensors')), new Set(['BF16']));

    const hf32 = join(dir, 'hf32');
    const back32 = sftkit(['convert', '--reversed', '--input_path', join(out, 'checkpoint'), '--output_path', hf32, '--dtype', 'float32']);
    assert.equal(back32.status, 0, back32.stderr);
    assert.doesNotMatch(back32.stdout, /published/);
    assert.equal(configDtype(hf32), 'float32');
    assert.deepEqual(storedDtypes(join(hf32, 'model.safetensors')), new Set(['F32']));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
