// Writes the sftkit-trained LoRA adapters that scripts/reference/peft_interop.py loads with the real PEFT
// library: a few AdamW steps of `sftkit run`'s Trainer with LoRA on the tiny HF fixtures
// test/fixtures/weights/llama-st-sharded (all seven Llama linears, rank 4, dropout 0.05) and
// test/fixtures/weights/gpt2-st (Conv1D c_attn, c_proj, c_fc, rank 2, rsLoRA), and copies the adapter files of
// the last checkpoint (adapter_config.json + adapter_model.safetensors, exactly as a LoRA run writes them) to
// test/fixtures/peft/sftkit-llama and test/fixtures/peft/sftkit-gpt2.
// Run from the repository root:  node --import tsx scripts/reference/peft_interop_sftkit.ts
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

await train('sftkit-llama', join('test', 'fixtures', 'weights', 'llama-st-sharded'), {
  rank: 4,
  alpha: 8,
  dropout: 0.05,
  target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
});
await train('sftkit-gpt2', join('test', 'fixtures', 'weights', 'gpt2-st'), { rank: 2, alpha: 4, use_rslora: true, target_modules: ['c_attn', 'c_proj', 'c_fc'] });
