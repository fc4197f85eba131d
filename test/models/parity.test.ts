// Llama (GQA, llama3 rope scaling, untied), Qwen2 (qkv bias, tied), GPT-2, Mistral (sliding window 4 over
// 9 tokens) and Qwen2 with use_sliding_window (window 3 on its second layer only, by max_window_layers) against plain-PyTorch references written to HF's math (scripts/reference/model_parity.py,
// window_parity.py): logits, loss, every parameter gradient, and the losses of 5 AdamW steps, in fp32.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseModelConfig } from '../../src/models/config.ts';
import { Gpt2 } from '../../src/models/gpt2.ts';
import { Llama } from '../../src/models/llama.ts';
import { type CausalLM, logits, lossSum, noDecay } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor, backward, loadInto, scope } from '../../src/tensor/index.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { relError } from '../helpers/native.ts';

interface Fixture {
  config: Record<string, unknown>;
  ids: number[][];
  labels: number[][];
  loss: number;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; losses: number[] };
  tensors: { name: string; shape: number[]; offset: number }[];
}

const DIR = join(import.meta.dirname, '..', 'fixtures', 'models');

function load(name: string): { meta: Fixture; get: (n: string) => Float32Array } {
  const meta = JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8')) as Fixture;
  const buf = readFileSync(join(DIR, `${name}.bin`));
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const get = (n: string): Float32Array => {
    const t = meta.tensors.find((x) => x.name === n);
    if (!t) throw new Error(`fixture ${name} has no tensor ${n}`);
    return all.subarray(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1));
  };
  return { meta, get };
}

function build(name: string): { model: CausalLM; meta: Fixture; get: (n: string) => Float32Array } {
  const { meta, get } = load(name);
  const config = parseModelConfig(meta.config, `${name}.json`);
  const model = config.family === 'llama' ? new Llama(config) : new Gpt2(config);
  for (const n of model.params.names) loadInto(model.params.get(n), get(`param:${n}`));
  return { model, meta, get };
}

function meanLoss(model: CausalLM, meta: Fixture, withLogits: boolean): { loss: Tensor; logits: Float32Array | null } {
  const B = meta.ids.length;
  const S = (meta.ids[0] as number[]).length;
  const ids = Tensor.from(meta.ids.flat(), [B, S], 'int32');
  const labels = Tensor.from(meta.labels.flat(), [B, S], 'int32');
  const hidden = model.forward(ids, { positions: positionIds(B, S) });
  const lg = withLogits ? (T.noGrad(() => logits(model, hidden)).toArray() as Float32Array) : null;
  const { lossSum: sum, count } = lossSum(model, hidden, labels, 7);
  return { loss: T.scale(sum, 1 / count), logits: lg };
}

for (const name of ['llama_gqa', 'qwen2_tied', 'gpt2', 'mistral_window', 'qwen2_window']) {
  test(`${name}: logits, loss and every gradient match PyTorch`, () => {
    const { model, meta, get } = build(name);
    try {
      scope(() => {
        const { loss, logits: lg } = meanLoss(model, meta, true);
        assert.ok(relError(lg as Float32Array, get('logits')) <= 1e-4, `logits relative error ${relError(lg as Float32Array, get('logits'))}`);
        assert.ok(Math.abs(loss.item() - meta.loss) / meta.loss <= 1e-4, `loss ${loss.item()} vs ${meta.loss}`);
        model.params.zeroGrad();
        backward(loss);
      });
      for (const n of model.params.names) {
        const g = model.params.grads.get(n).toArray() as Float32Array;
        const err = relError(g, get(`grad:${n}`));
        assert.ok(err <= 1e-3, `gradient of ${n}: relative error ${err.toExponential(2)}`);
      }
    } finally {
      model.release();
    }
  });

  test(`${name}: 5 AdamW steps give PyTorch's losses`, () => {
    const { model, meta } = build(name);
    const a = meta.adamw;
    const opt = new AdamW(model.params.values, model.params.grads, { lr: a.lr, beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: a.weight_decay, noDecay });
    try {
      const losses: number[] = [];
      for (let i = 0; i < 5; i++) {
        model.params.zeroGrad();
        losses.push(
          scope(() => {
            const { loss } = meanLoss(model, meta, false);
            backward(loss);
            return loss.item();
          }),
        );
        opt.update(a.lr);
      }
      assert.ok(relError(losses, a.losses) <= 1e-4, `losses ${losses} vs ${a.losses}`);
    } finally {
      model.release();
      opt.release();
    }
  });
}

test('recompute gives the same gradients as keeping activations', () => {
  const { model, meta } = build('llama_gqa');
  try {
    const grads = [false, true].map((recompute) => {
      model.params.zeroGrad();
      scope(() => {
        const B = meta.ids.length;
        const S = (meta.ids[0] as number[]).length;
        const hidden = model.forward(Tensor.from(meta.ids.flat(), [B, S], 'int32'), { positions: positionIds(B, S), recompute });
        const { lossSum: sum } = lossSum(model, hidden, Tensor.from(meta.labels.flat(), [B, S], 'int32'));
        backward(sum);
      });
      return model.params.grads.all.toArray() as Float32Array;
    });
    assert.deepEqual(Buffer.from((grads[1] as Float32Array).buffer), Buffer.from((grads[0] as Float32Array).buffer));
  } finally {
    model.release();
  }
});

// Each windowed fixture depends on its windows: with none, or (Qwen2) on every layer, the logits differ.
for (const [name, change] of [
  ['mistral_window', { sliding_window: null }],
  ['qwen2_window', { use_sliding_window: false }],
  ['qwen2_window', { max_window_layers: 0 }],
] as const) {
  test(`${name}: the reference depends on which layers are windowed (${JSON.stringify(change)} differs)`, () => {
    const { meta, get } = load(name);
    const config = parseModelConfig({ ...meta.config, ...change }, `${name}.json`);
    if (config.family !== 'llama') assert.fail('not llama');
    const model = new Llama(config);
    try {
      for (const n of model.params.names) loadInto(model.params.get(n), get(`param:${n}`));
      scope(() => {
        const { logits: lg } = meanLoss(model, meta, true);
        assert.ok(relError(lg as Float32Array, get('logits')) > 1e-3, `a model with other windows (${config.windowedLayers}) matches the reference`);
      });
    } finally {
      model.release();
    }
  });
}
