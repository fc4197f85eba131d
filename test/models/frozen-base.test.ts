// A frozen base in low precision (model.base_dtype bfloat16, int8, nf4; issue 16): a model whose linears are
// quantized gives the logits and trainable gradients of the same model holding the dequantized values in
// fp32 — the panel GEMMs read the codes directly and never widen a whole weight — and the frozen store
// holds the codes and scales, not fp32.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseModelConfig } from '../../src/models/config.ts';
import { type CausalLM, logits, lossSum } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { embed } from '../../src/nn/embedding.ts';
import { quantizable } from '../../src/nn/frozen-store.ts';
import { ShapeError } from '../../src/errors.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor, backward, scope } from '../../src/tensor/index.ts';
import { createModel } from '../../src/train/model-io.ts';
import { relError } from '../helpers/native.ts';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'models');
const meta = JSON.parse(readFileSync(join(DIR, 'llama_gqa.json'), 'utf8')) as {
  config: Record<string, unknown>; ids: number[][]; labels: number[][]; tensors: { name: string; shape: number[]; offset: number }[];
};
const blob = readFileSync(join(DIR, 'llama_gqa.bin'));
const all = new Float32Array(blob.buffer, blob.byteOffset, blob.byteLength / 4);
const param = (n: string): Float32Array => {
  const t = meta.tensors.find((x) => x.name === `param:${n}`)!;
  return all.slice(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1));
};
const config = parseModelConfig(meta.config, 'llama_gqa.json');
const trainable = (n: string): boolean => n.includes('norm');

function build(dtype: 'float32' | 'bfloat16' | 'int8' | 'nf4', values: (n: string) => Float32Array): CausalLM {
  const model = createModel(config, 0, { frozen: (n) => !trainable(n), frozenDtype: dtype, initialise: false });
  for (const n of model.params.names) model.params.load(n, values(n));
  return model;
}

function run(model: CausalLM): { logits: Float32Array; loss: number; grads: Map<string, Float32Array> } {
  const B = meta.ids.length;
  const S = (meta.ids[0] as number[]).length;
  model.params.zeroGrad();
  const { lg, loss } = scope(() => {
    const hidden = model.forward(Tensor.from(meta.ids.flat(), [B, S], 'int32'), { positions: positionIds(B, S) });
    const lg = T.noGrad(() => T.matmul(hidden, T.mT(model.params.weight('lm_head.weight')))).toArray() as Float32Array;
    const { lossSum: sum, count } = lossSum(model, hidden, Tensor.from(meta.labels.flat(), [B, S], 'int32'), 7);
    const mean = T.scale(sum, 1 / count);
    const loss = mean.item();
    backward(mean);
    return { lg, loss };
  });
  const grads = new Map(model.params.trainableNames.map((n) => [n, model.params.grads.get(n).toArray() as Float32Array]));
  return { logits: lg, loss, grads };
}

for (const dtype of ['bfloat16', 'int8', 'nf4'] as const) {
  test(`base_dtype ${dtype}: logits and trainable gradients equal the fp32 model holding the dequantized weights`, () => {
    const low = build(dtype, param);
    // The same model in fp32 holding exactly what the low-precision store dequantizes to.
    const ref = build('float32', (n) => low.params.read(n));
    try {
      const a = run(low);
      const b = run(ref);
      assert.ok(relError(a.logits, b.logits) <= 1e-6, `logits: relative error ${relError(a.logits, b.logits)}`);
      assert.ok(Math.abs(a.loss - b.loss) <= 1e-6 * Math.abs(b.loss), `loss ${a.loss} vs ${b.loss}`);
      for (const [n, g] of b.grads) assert.ok(relError(a.grads.get(n)!, g) <= 1e-5, `gradient of ${n}: ${relError(a.grads.get(n)!, g)}`);
      // What the store holds: quantized linears, the rest in bfloat16 (dense bfloat16 for base_dtype bfloat16).
      let expected = 0;
      for (const n of low.params.frozen.names) {
        const shape = low.params.shape(n);
        const size = shape.reduce((x, y) => x * y, 1);
        if (dtype !== 'bfloat16' && quantizable(n, shape)) {
          const w = low.params.frozen.weight(n);
          assert.equal(w.kind, 'quantized', n);
          expected += dtype === 'int8' ? size + shape[0]! * 4 : Math.ceil(size / 2) + Math.ceil(size / 64) + Math.ceil(Math.ceil(size / 64) / 256) * 4;
        } else {
          expected += size * 2;
        }
      }
      assert.equal(low.params.counts().frozenBytes, expected);
      // The quantization error itself is the format's: each quantized weight within its relative RMS error for
      // normally distributed values (NF4's 16 levels about 9%, int8's 255 about 0.7%); bfloat16 rounding below 0.3%.
      const bound = dtype === 'nf4' ? 0.12 : dtype === 'int8' ? 0.012 : 0.003;
      for (const n of low.params.frozen.names) {
        const err = relError(low.params.read(n), param(n));
        assert.ok(err < bound, `${dtype} ${n}: relative error ${err}`);
      }
    } finally {
      low.release();
      ref.release();
    }
  });
}

test('a frozen bf16 embedding is read a row per token and a frozen bf16 head panel by panel: the widened results, bit for bit / within fp32 rounding', () => {
  const low = build('bfloat16', param);
  try {
    const B = meta.ids.length;
    const S = (meta.ids[0] as number[]).length;
    scope(() => {
      const ids = Tensor.from(meta.ids.flat(), [B, S], 'int32');
      assert.ok(low.params.frozenRows('model.embed_tokens.weight'), 'the embedding is a frozen bf16 row source');
      const rowwise = embed(ids, low.params, 'model.embed_tokens.weight').toArray() as Float32Array;
      const widened = T.embedding(low.params.weight('model.embed_tokens.weight'), ids).toArray() as Float32Array;
      assert.deepEqual(rowwise, widened);
      const hidden = T.noGrad(() => low.forward(ids, { positions: positionIds(B, S) }));
      const viaPanels = T.noGrad(() => logits(low, hidden)).toArray() as Float32Array;
      const viaWidened = T.noGrad(() => T.matmul(hidden, T.mT(low.params.weight('lm_head.weight')))).toArray() as Float32Array;
      assert.ok(relError(viaPanels, viaWidened) <= 1e-6, `logits: relative error ${relError(viaPanels, viaWidened)}`);
      const vocab = config.vocabSize;
      assert.throws(() => embed(Tensor.from([1, vocab], [1, 2], 'int32'), low.params, 'model.embed_tokens.weight'), (e: unknown) =>
        e instanceof ShapeError && e.message === `embedding model.embed_tokens.weight: token id ${vocab} (position 1) is outside the vocabulary of ${vocab}`);
    });
  } finally {
    low.release();
  }
});
