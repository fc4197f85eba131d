// Writes the sftkit-trained LoRA adapters that scripts/reference/peft_interop.py loads with the real PEFT
// library: 4 AdamW steps of `sftkit run`'s Trainer with LoRA on the tiny HF fixtures
// test/fixtures/weights/llama-st-sharded and test/fixtures/weights/gpt2-st (variants below), copying the adapter
// files of the last checkpoint (adapter_config.json + adapter_model.safetensors, exactly as a LoRA run writes
// them) to test/fixtures/peft/sftkit-*. One variant trains on test/fixtures/peft/peft-llama (written by PEFT), so
// peft_interop.py runs this script itself, after writing the PEFT adapters; run it from the repository root.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../../src/tensor/index.ts';
import { ArrayBatchSource } from '../../src/train/batches.ts';
import { findResumeCheckpoint } from '../../src/train/checkpoint.ts';
import { parseRunConfig } from '../../src/train/config.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, attachLoraFor } from '../../src/train/lora-io.ts';
import { loadModel, weightOptionsOf } from '../../src/train/model-io.ts';
import { Trainer } from '../../src/train/trainer.ts';

const OUT = join('test', 'fixtures', 'peft');

function rows(n: number, len: number, vocab: number, seed: number): { inputIds: Int32Array; labels: Int32Array }[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const inputIds = Int32Array.from({ length: len }, () => 3 + rng.int(vocab - 4));
    const labels = Int32Array.from(inputIds);
    for (let t = 0; t < 1 + (i % 3); t++) labels[t] = -100;
    return { inputIds, labels };
  });
}

async function train(name: string, baseDir: string, lora: Record<string, unknown>): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'sftkit-peft-interop-'));
  try {
    const cfg = parseRunConfig(
      {
        seed: 0,
        output_dir: work,
        runner_config: { epochs: 1, batch_size: 2, gradient_accumulation_steps: 1, clip_grad_norm: 1.0 },
        optimizer: { learning_rate: 5e-2, weight_decay: 0.0, beta2: 0.95 },
        lr_schedule: { type: 'constant', warmup_steps: 0, warmup_ratio: 0 },
        callbacks: { checkpoint: { prefix: name, save_checkpoint_steps: 4, keep_checkpoint_max: 1 }, loss_monitor: { log_every: 1 } },
        lora,
      },
      name,
    );
    const model = loadModel(baseDir, 0, { weights: (names) => weightOptionsOf(cfg, names) });
    attachLoraFor(model, cfg, { checkpointDir: null, training: true });
    const res = await new Trainer({ config: cfg, model, train: new ArrayBatchSource(rows(8, 10, 64, 7), { batchSize: 2, seed: 0 }), assetsDir: null, base: { name_or_path: baseDir, dir: baseDir } }).run();
    model.release();
    const ck = findResumeCheckpoint(join(work, 'checkpoint'), null, () => {});
    const dest = join(OUT, name);
    mkdirSync(dest, { recursive: true });
    for (const f of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]) copyFileSync(join(ck.dir, f), join(dest, f));
    console.log(`${dest}: ${res.losses.length} steps, losses ${res.losses.map((l) => l.toFixed(4)).join(' ')}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const LLAMA = join('test', 'fixtures', 'weights', 'llama-st-sharded');
const GPT2 = join('test', 'fixtures', 'weights', 'gpt2-st');
// Every Llama linear by name, rank 4, dropout.
await train('sftkit-llama', LLAMA, { rank: 4, alpha: 8, dropout: 0.05, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
// rsLoRA and a regular expression (written to adapter_config.json as a string, which PEFT full-matches).
await train('sftkit-llama-rslora', LLAMA, { rank: 8, alpha: 16, use_rslora: true, target_modules: String.raw`model\.layers\.\d+\.(self_attn\.(q|k)_proj|mlp\.down_proj)` });
// GPT-2's Conv1D (fan_in_fan_out) with 'all-linear', which PEFT expands itself.
await train('sftkit-gpt2', GPT2, { rank: 2, alpha: 4, use_rslora: true, target_modules: 'all-linear' });
// Training on an adapter PEFT wrote (per-module ranks and alphas): sftkit writes rank_pattern/alpha_pattern back.
await train('sftkit-from-peft-llama', LLAMA, { adapter: join(OUT, 'peft-llama') });
// The same with layers_to_transform, layers_pattern and exclude_modules.
await train('sftkit-from-peft-llama-layers', LLAMA, { adapter: join(OUT, 'peft-llama-layers') });
