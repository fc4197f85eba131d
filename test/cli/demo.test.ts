// The main job, shortened: `sftkit demo` on the bundled assets with a few samples and one epoch runs every
// step (convert, alpaca, preprocess, evaluate, fine-tune, evaluate, predict, report) and writes its outputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDemo } from '../../src/cli/demo/pipeline.ts';
import { StepPrinter } from '../../src/cli/progress.ts';

test('a shortened demo runs end to end and writes its report', async () => {
  const out = mkdtempSync(join(tmpdir(), 'sftkit-demo-'));
  try {
    const lines: string[] = [];
    const sink = { isTTY: false, write: (s: string) => lines.push(s) > 0 } as unknown as NodeJS.WriteStream;
    const report = await runDemo({ outputDir: out, trainSamples: 48, evalSamples: 14, epochs: 1, print: new StepPrinter(sink) });
    for (const f of ['report.md', 'loss_curve.png', 'metrics.jsonl', 'eval_results.json', 'predict_results.jsonl', 'base-checkpoint/sftkit.json', 'checkpoint/meta.json']) {
      assert.ok(existsSync(join(out, f)), f);
    }
    const png = readFileSync(join(out, 'loss_curve.png'));
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    assert.match(md, /\| base model \| \d+\.\d% \|/);
    assert.match(md, /\| fine-tuned \| \*\*\d+\.\d%\*\* \|/);
    assert.match(md, /majority answer/);
    assert.ok(report.steps > 0);
    assert.ok(report.before.em >= 0 && report.before.em <= 1 && report.after.em >= 0 && report.after.em <= 1);
    assert.ok(Number.isFinite(report.after.loss.loss) && report.after.loss.loss < report.before.loss.loss, 'fine-tuning lowers the held-out loss');
    assert.equal(report.timings.length, 8);
    assert.ok(lines.join('').includes('== 5. fine-tune all parameters'));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('the LoRA variant of the demo trains rank-64 adapters on every linear and saves them in PEFT format', async () => {
  const out = mkdtempSync(join(tmpdir(), 'sftkit-demo-lora-'));
  try {
    const lines: string[] = [];
    const sink = { isTTY: false, write: (s: string) => lines.push(s) > 0 } as unknown as NodeJS.WriteStream;
    const configPath = join(import.meta.dirname, '..', '..', 'configs', 'demo', 'finetune_lora.yaml');
    const report = await runDemo({ outputDir: out, trainSamples: 48, evalSamples: 14, epochs: 1, configPath, print: new StepPrinter(sink) });
    // 4 layers × 64 × ((256 + 256) · 4 attention projections + (256 + 688) · 3 MLP projections).
    assert.ok(lines.join('').includes('== 5. fine-tune LoRA adapters (rank 64, 1,249,280 trainable parameters)'));
    const ckpt = readdirSync(join(out, 'checkpoint')).filter((d) => d.startsWith('demo-lora-'));
    assert.equal(ckpt.length, 1);
    const adapter = JSON.parse(readFileSync(join(out, 'checkpoint', ckpt[0] as string, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(adapter.r, 64);
    assert.equal(adapter.lora_alpha, 64);
    assert.equal(adapter.lora_dropout, 0);
    assert.ok(!existsSync(join(out, 'checkpoint', ckpt[0] as string, 'model.safetensors')), 'the frozen base is not saved again');
    assert.ok(report.after.loss.loss < report.before.loss.loss, 'the adapters lower the held-out loss');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
