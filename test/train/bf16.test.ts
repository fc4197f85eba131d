// bf16 mixed precision (model.dtype bfloat16): the S benchmark config trained 50 steps in fp32 and in bf16
// from the same init and data ends within 1% loss; weights stay fp32; a bf16 run stopped and resumed repeats
// its losses bit for bit; autocast reaches the backward GEMMs and the recomputed blocks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModelConfig } from '../../src/models/config.ts';
import { lossSum } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import * as T from '../../src/tensor/index.ts';
import { Rng, Tensor, backward, scope } from '../../src/tensor/index.ts';
import { ArrayBatchSource } from '../../src/train/batches.ts';
import { findResumeCheckpoint } from '../../src/train/checkpoint.ts';
import { parseRunConfig } from '../../src/train/config.ts';
import { createModel, loadModel } from '../../src/train/model-io.ts';
import { Trainer } from '../../src/train/trainer.ts';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'sftkit-bf16-'));
}

/**
 * Rows with learnable structure: tokens from a `span`-token part of the vocabulary, each mostly following from
 * the previous one by a fixed affine map (1 in 8 random), so 50 steps take the loss far below ln(vocab)
 * and the parameters move far enough for a precision problem to show.
 */
function structuredRows(n: number, len: number, seed: number, span = 64): { inputIds: Int32Array; labels: Int32Array }[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const ids = new Int32Array(len);
    ids[0] = 3 + rng.int(span);
    for (let t = 1; t < len; t++) ids[t] = 3 + (rng.int(8) === 0 ? rng.int(span) : (((ids[t - 1] as number) - 3) * 17 + 11) % span);
    return { inputIds: ids, labels: Int32Array.from(ids) };
  });
}

// bench/train/configs.json "S"
const S = {
  model_type: 'llama', vocab_size: 4096, hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4,
  num_attention_heads: 4, num_key_value_heads: 4, rms_norm_eps: 1e-5, max_position_embeddings: 256, bos_token_id: 1, eos_token_id: 2,
};

test('S config, 50 steps: bf16 final loss within 1% of fp32 from the same init and data; weights stay fp32', async (t) => {
  const steps = 50, batch = 8, seq = 256;
  const data = structuredRows(steps * batch, seq + 1, 5);
  const results: Record<string, number[]> = {};
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const out = tmp();
    const model = createModel(parseModelConfig(S, 'S'), 1);
    try {
      const cfg = parseRunConfig({
        seed: 0,
        output_dir: out,
        model: { dtype },
        runner_config: { epochs: 1, batch_size: batch, clip_grad_norm: 1.0 },
        optimizer: { learning_rate: 3e-3, weight_decay: 0.01 },
        lr_schedule: { type: 'cosine', warmup_steps: 5, warmup_ratio: 0 },
        callbacks: { checkpoint: { save_checkpoint_steps: 1000 } },
      }, 'test');
      const summary = await new Trainer({ config: cfg, model, train: new ArrayBatchSource(data, { batchSize: batch, shuffle: false }), assetsDir: null }).run();
      assert.equal(summary.steps, steps);
      for (const name of model.params.names) assert.equal(model.params.get(name).dtype, 'float32', name);
      results[dtype] = summary.losses;
    } finally {
      model.release();
      rmSync(out, { recursive: true, force: true });
    }
  }
  const f32 = results.float32 as number[], bf16 = results.bfloat16 as number[];
  const first = f32[0] as number, last32 = f32[steps - 1] as number, last16 = bf16[steps - 1] as number;
  // the run learned something (else agreement would prove nothing), and bf16 tracked it
  assert.ok(last32 < 0.5 * first, `fp32 loss ${first} -> ${last32}: too little learning for a meaningful comparison`);
  const rel = Math.abs(last16 - last32) / last32;
  t.diagnostic(`loss ${first.toFixed(4)} -> fp32 ${last32.toFixed(4)}, bf16 ${last16.toFixed(4)} (${(rel * 100).toFixed(3)}% apart)`);
  assert.ok(rel < 0.01, `final loss bf16 ${last16} vs fp32 ${last32}: ${(rel * 100).toFixed(2)}% apart`);
  // bf16 is really on: the first losses differ in their low bits
  assert.notEqual(bf16[0], f32[0]);
});

const TINY = {
  model_type: 'llama', vocab_size: 37, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64, bos_token_id: 1, eos_token_id: 2,
};

test('a bf16 run stopped and resumed repeats its losses bit for bit (fp32 checkpoints and moments)', async () => {
  const data = structuredRows(12, 9, 2, 30);
  const cfg = (out: string) => parseRunConfig({
    seed: 0, output_dir: out, model: { dtype: 'bfloat16' },
    runner_config: { epochs: 1, batch_size: 2 }, optimizer: { learning_rate: 1e-2 },
    callbacks: { checkpoint: { prefix: 'tiny', save_checkpoint_steps: 3, keep_checkpoint_max: 2 } },
  }, 'test');
  const outA = tmp(), outB = tmp();
  try {
    const mA = createModel(parseModelConfig(TINY, 'tiny'), 3);
    const full = await new Trainer({ config: cfg(outA), model: mA, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null }).run();
    mA.release();
    const mB = createModel(parseModelConfig(TINY, 'tiny'), 3);
    const trainer: Trainer = new Trainer({
      config: cfg(outB), model: mB, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null,
      events: { step: (s) => s.step === 3 && trainer.requestStop() },
    });
    const first = await trainer.run();
    mB.release();
    const ck = findResumeCheckpoint(join(outB, 'checkpoint'), null, () => {});
    const mC = loadModel(ck.dir);
    for (const name of mC.params.names) assert.equal(mC.params.get(name).dtype, 'float32');
    const rest = await new Trainer({ config: cfg(outB), model: mC, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, resume: ck }).run();
    mC.release();
    assert.deepEqual([...first.losses, ...rest.losses], full.losses);
  } finally {
    rmSync(outA, { recursive: true, force: true });
    rmSync(outB, { recursive: true, force: true });
  }
});

/** Loss and every gradient of one forward/backward of the tiny model, under the given compute dtype. */
function lossAndGrads(dtype: T.ComputeDtype, recompute: boolean): { loss: number; grads: Float32Array[] } {
  const model = createModel(parseModelConfig(TINY, 'tiny'), 4);
  try {
    const rng = new Rng(9);
    const ids = Int32Array.from({ length: 2 * 8 }, () => 3 + rng.int(30));
    return scope(() => {
      const loss = T.autocast(dtype, () => {
        const h = model.forward(Tensor.from(ids, [2, 8], 'int32'), { positions: positionIds(2, 8, {}), recompute });
        return lossSum(model, h, Tensor.from(ids, [2, 8], 'int32')).lossSum;
      });
      // backward outside the scope, as the matmul and cross-entropy rules must remember their dtype
      backward(loss);
      return { loss: loss.item(), grads: model.params.names.map((n) => model.params.get(n).grad?.toArray() as Float32Array) };
    });
  } finally {
    model.release();
  }
}

test('autocast: backward outside the scope keeps bf16; recompute repeats the bf16 forward exactly', () => {
  const f32 = lossAndGrads('float32', false);
  const bf = lossAndGrads('bfloat16', false);
  const bfRe = lossAndGrads('bfloat16', true);
  assert.equal(T.computeDtype(), 'float32');
  assert.notEqual(bf.loss, f32.loss);
  assert.ok(Math.abs(bf.loss - f32.loss) / f32.loss < 1e-2);
  assert.equal(bfRe.loss, bf.loss);
  bf.grads.forEach((g, i) => {
    assert.deepEqual(bfRe.grads[i], g, `gradient ${i} with recompute`);
    assert.notDeepEqual(g, f32.grads[i], `gradient ${i} is not bf16`);
  });
});
