// bf16 mixed precision of the Llama forward/backward against scripts/reference/bf16_parity.py: equal (to fp32
// summation error) to a PyTorch reference of sftkit's semantics (every linear's operands rounded to bf16,
// forward and backward, outputs fp32), and near PyTorch's own bf16 autocast (which also rounds the linear
// outputs and runs attention in bf16, so only a bf16-sized tolerance applies).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LlamaConfig, parseModelConfig } from '../../src/models/config.ts';
import { Llama } from '../../src/models/llama.ts';
import { lossSum } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor, backward, loadInto, scope } from '../../src/tensor/index.ts';
import { relError } from '../helpers/native.ts';

interface Fixture {
  config: Record<string, unknown>;
  ids: number[][];
  labels: number[][];
  loss: { float32: number; emulated: number; autocast: number };
  tensors: { name: string; shape: number[]; offset: number }[];
}

const DIR = join(import.meta.dirname, '..', 'fixtures', 'models');
const meta = JSON.parse(readFileSync(join(DIR, 'llama_bf16.json'), 'utf8')) as Fixture;
const blob = readFileSync(join(DIR, 'llama_bf16.bin'));
const all = new Float32Array(blob.buffer, blob.byteOffset, blob.byteLength / 4);
function get(name: string): Float32Array {
  const t = meta.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`llama_bf16 fixture has no tensor ${name}`);
  return all.subarray(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1));
}

/** Mean loss and every gradient of one step of the fixture's model under `dtype` compute. */
function run(dtype: T.ComputeDtype): { loss: number; grads: Map<string, Float32Array>; names: readonly string[] } {
  const model = new Llama(parseModelConfig(meta.config, 'llama_bf16.json') as LlamaConfig);
  try {
    for (const n of model.params.names) loadInto(model.params.get(n), get(`param:${n}`));
    const B = meta.ids.length, S = (meta.ids[0] as number[]).length;
    return scope(() => {
      const loss = T.autocast(dtype, () => {
        const hidden = model.forward(Tensor.from(meta.ids.flat(), [B, S], 'int32'), { positions: positionIds(B, S) });
        const { lossSum: sum, count } = lossSum(model, hidden, Tensor.from(meta.labels.flat(), [B, S], 'int32'), 7);
        return T.scale(sum, 1 / count);
      });
      backward(loss);
      const grads = new Map(model.params.names.map((n) => [n, model.params.get(n).grad?.toArray() as Float32Array]));
      return { loss: loss.item(), grads, names: model.params.names };
    });
  } finally {
    model.release();
  }
}

test('bf16 Llama: loss and every gradient equal a PyTorch emulation of our semantics (fp32 summation error)', () => {
  const ours = run('bfloat16');
  assert.ok(Math.abs(ours.loss - meta.loss.emulated) / meta.loss.emulated < 2e-6, `loss ${ours.loss} vs ${meta.loss.emulated}`);
  for (const n of ours.names) {
    const e = relError(ours.grads.get(n) as Float32Array, get(`emulated:${n}`));
    assert.ok(e < 1e-4, `grad ${n}: rel error ${e.toExponential(2)} vs the bf16 emulation`);
  }
  // and bf16 is a real difference from fp32 at this size (the emulation is not fp32 in disguise)
  assert.ok(Math.abs(meta.loss.emulated - meta.loss.float32) > 1e-4);
});

test('bf16 Llama is near PyTorch bf16 autocast (loss 1e-3, gradients 3e-2 relative)', () => {
  const ours = run('bfloat16');
  assert.ok(Math.abs(ours.loss - meta.loss.autocast) / meta.loss.autocast < 1e-3, `loss ${ours.loss} vs autocast ${meta.loss.autocast}`);
  for (const n of ours.names) {
    const e = relError(ours.grads.get(n) as Float32Array, get(`autocast:${n}`));
    assert.ok(e < 3e-2, `grad ${n}: rel error ${e.toExponential(2)} vs PyTorch autocast`);
  }
});
