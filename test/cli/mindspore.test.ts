// The MindSpore formats through the CLI: export a model as a MindFormers .ckpt, evaluate and fine-tune it
// straight from the .ckpt (same loss as from its sftkit checkpoint), convert it back; preprocess into MindRecord.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MindRecordReader } from '../../src/formats/mindrecord.ts';
import { readModelConfig } from '../../src/models/config.ts';
import { createModel, writeModelCheckpoint } from '../../src/train/model-io.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('convert --reversed --format mindspore, run --load_checkpoint X.ckpt, convert X.ckpt back; preprocess --output_format mindrecord', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-ms-'));
  try {
    const text = Array.from({ length: 40 }, (_, i) => `The Congress shall meet on day ${i} of the session, and the people shall be heard.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    const pre = ['data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32'];
    assert.equal(sftkit([...pre, '--output_file', records]).status, 0);
    const mr = sftkit([...pre, '--output_file', join(dir, 'corpus.mindrecord'), '--output_format', 'mindrecord']);
    assert.equal(mr.status, 0, mr.stderr);
    const reader = MindRecordReader.open(join(dir, 'corpus.mindrecord'));
    assert.equal(reader.seqLength, 32);
    assert.ok(reader.rowCount > 0);
    reader.close();

    // A model checkpoint of the tiny preset, with the tokenizer beside it.
    const model = createModel(readModelConfig('configs/tiny/llama_tiny.json'), 3);
    const ckptDir = join(dir, 'model');
    mkdirSync(ckptDir);
    writeModelCheckpoint(ckptDir, model, { assetsDir: null, source: { path: 'configs/tiny/llama_tiny.json', format: 'preset' } });
    model.release();
    copyFileSync('test/fixtures/tokenizer/bpe.model', join(ckptDir, 'tokenizer.model'));

    const msDir = join(dir, 'ms');
    mkdirSync(msDir);
    const exp = sftkit(['convert', '--reversed', '--format', 'mindspore', '--input_path', ckptDir, '--output_path', join(msDir, 'llama_tiny.ckpt')]);
    assert.equal(exp.status, 0, exp.stderr);
    assert.match(exp.stdout, /exported llama as a MindFormers checkpoint: 39 tensors/);
    copyFileSync(join(ckptDir, 'config.json'), join(msDir, 'config.json'));
    copyFileSync(join(ckptDir, 'tokenizer.model'), join(msDir, 'tokenizer.model'));

    const loss = (from: string): number => {
      const ev = sftkit(['run', '--run_mode', 'eval', '--load_checkpoint', from, '--eval_dataset_dir', records, '--output_dir', join(dir, `eval-${from.length}`)]);
      assert.equal(ev.status, 0, ev.stderr);
      return (JSON.parse(ev.stdout.trim().split('\n').pop() ?? '{}') as { loss: number }).loss;
    };
    const baseline = loss(ckptDir);
    // The MindRecord file evaluates directly (run --eval_dataset_dir X.mindrecord): the same rows, the same loss.
    const evMr = sftkit(['run', '--run_mode', 'eval', '--load_checkpoint', ckptDir, '--eval_dataset_dir', join(dir, 'corpus.mindrecord'), '--output_dir', join(dir, 'eval-mr')]);
    assert.equal(evMr.status, 0, evMr.stderr);
    assert.match(evMr.stdout, /does not record its tokenizer \(MindRecord\)/);
    assert.equal((JSON.parse(evMr.stdout.trim().split('\n').pop() ?? '{}') as { loss: number }).loss, baseline);
    assert.equal(loss(join(msDir, 'llama_tiny.ckpt')), baseline);

    const ft = sftkit(['run', '--run_mode', 'finetune', '--load_checkpoint', join(msDir, 'llama_tiny.ckpt'), '--train_dataset_dir', join(dir, 'corpus.mindrecord'), '--output_dir', join(dir, 'ft'), '--batch_size', '2', '--runner_config.max_steps', '1']);
    assert.equal(ft.status, 0, ft.stderr);
    assert.match(ft.stdout, /step 1\/1/);

    const back = sftkit(['convert', '--input_path', join(msDir, 'llama_tiny.ckpt'), '--output_path', join(dir, 'back')]);
    assert.equal(back.status, 0, back.stderr);
    assert.ok(existsSync(join(dir, 'back', 'tokenizer.model')));
    assert.equal(loss(join(dir, 'back')), baseline);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
