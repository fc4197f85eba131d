// QLoRA (issue 16): LoRA adapters over a frozen base held in NF4 (or int8, bf16) train like LoRA over the fp32
// base. The base's quantization moves the first loss a little (the format's own error); the claim tested is that
// training does not drift further: the two loss curves stay within twice their starting gap plus 1% of the loss,
// and both fall.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModelConfig } from '../../src/models/config.ts';
import { Rng } from '../../src/tensor/index.ts';
import { ArrayBatchSource } from '../../src/train/batches.ts';
import { parseRunConfig } from '../../src/train/config.ts';
import { attachLoraFor } from '../../src/train/lora-io.ts';
import { createModel, weightOptionsOf } from '../../src/train/model-io.ts';
import { Trainer } from '../../src/train/trainer.ts';

const LLAMA = {
  model_type: 'llama', vocab_size: 61, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64, bos_token_id: 1, eos_token_id: 2,
};

function rows(n: number, len: number, seed: number): { inputIds: Int32Array; labels: Int32Array }[] {
  const rng = new Rng(seed);
  // A learnable pattern: each row counts up from a random start, so the adapters have something to fit.
  return Array.from({ length: n }, () => {
    const start = 3 + rng.int(20);
    const inputIds = Int32Array.from({ length: len }, (_, t) => 3 + ((start + t) % 55));
    return { inputIds, labels: Int32Array.from(inputIds) };
  });
}

async function curve(baseDtype: 'float32' | 'bfloat16' | 'int8' | 'nf4', out: string): Promise<number[]> {
  const cfg = parseRunConfig(
    {
      seed: 0,
      output_dir: out,
      model: { base_dtype: baseDtype },
      runner_config: { epochs: 8, batch_size: 4, gradient_accumulation_steps: 1, clip_grad_norm: 1.0 },
      optimizer: { learning_rate: 2e-2, weight_decay: 0.0 },
      lr_schedule: { type: 'constant', warmup_steps: 0, warmup_ratio: 0 },
      callbacks: { checkpoint: { prefix: 'q', save_checkpoint_steps: 1000, keep_checkpoint_max: 1 }, loss_monitor: { log_every: 1 } },
      lora: { rank: 8, alpha: 16, target_modules: 'all-linear' },
    },
    'test',
  );
  const model = createModel(parseModelConfig(LLAMA, 'tiny'), 7, weightOptionsOf(cfg, []));
  try {
    attachLoraFor(model, cfg, { checkpointDir: null, training: true });
    const r = await new Trainer({ config: cfg, model, train: new ArrayBatchSource(rows(16, 17, 3), { batchSize: 4, seed: 0 }), assetsDir: null }).run();
    return r.losses;
  } finally {
    model.release();
  }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

test('LoRA over an NF4 / int8 / bf16 base follows LoRA over the fp32 base', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-qlora-'));
  try {
    const ref = await curve('float32', join(dir, 'f32'));
    // Losses of shuffled mini-batches are noisy: compare the first 4 steps' mean with the last 8's.
    const dropRef = mean(ref.slice(0, 4)) - mean(ref.slice(-8));
    assert.ok(dropRef > 0.3, `fp32 base: the loss fell by ${dropRef}`);
    for (const dtype of ['bfloat16', 'int8', 'nf4'] as const) {
      const got = await curve(dtype, join(dir, dtype));
      assert.equal(got.length, ref.length);
      // The base's own quantization error moves the starting loss (gap0); on top of it, the adapters must learn
      // as much (a drop at least 3/4 of fp32's) and end where fp32 ends, within a quarter of what fp32 learned.
      const gap0 = Math.abs(got[0]! - ref[0]!);
      const drop = mean(got.slice(0, 4)) - mean(got.slice(-8));
      const endGap = Math.abs(mean(got.slice(-8)) - mean(ref.slice(-8)));
      assert.ok(drop >= 0.75 * dropRef, `${dtype} base learned ${drop}, fp32 ${dropRef}`);
      assert.ok(endGap <= 0.25 * dropRef + 2 * gap0, `${dtype} base ends ${endGap} from fp32 (fp32 learned ${dropRef}, starting gap ${gap0})`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
