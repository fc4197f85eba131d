// LoRA on Llama (every linear; rsLoRA on q/v) and GPT-2's Conv1D against PEFT's formula written out in plain
// PyTorch (scripts/reference/lora_parity.py): logits, loss, the gradients of every A and B, and 5 AdamW steps
// (losses and final adapters), in fp32, with the model-parity tolerances. Plus the init and bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { Gpt2 } from '../../src/models/gpt2.ts';
import { Llama } from '../../src/models/llama.ts';
import { type CausalLM, logits, lossSum, noDecay } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { linear } from '../../src/nn/linear.ts';
import { type LoraOptions, PEFT_PREFIX, attachLora } from '../../src/nn/lora.ts';
import * as T from '../../src/tensor/index.ts';
import { Rng, Tensor, backward, loadInto, scope } from '../../src/tensor/index.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { relError } from '../helpers/native.ts';

interface Fixture {
  config: Record<string, unknown>;
  lora: { r: number; alpha: number; use_rslora: boolean; dropout: number; target_modules: string[]; scale: number };
  ids: number[][];
  labels: number[][];
  loss: number;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; losses: number[] };
  tensors: { name: string; shape: number[]; offset: number }[];
}

const DIR = join(import.meta.dirname, '..', 'fixtures', 'models');

function build(name: string): { model: CausalLM; meta: Fixture; get: (n: string) => Float32Array } {
  const meta = JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8')) as Fixture;
  const buf = readFileSync(join(DIR, `${name}.bin`));
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const get = (n: string): Float32Array => {
    const t = meta.tensors.find((x) => x.name === n);
    if (!t) throw new Error(`fixture ${name} has no tensor ${n}`);
    return all.subarray(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1));
  };
  const config = parseModelConfig(meta.config, `${name}.json`);
  const model = config.family === 'llama' ? new Llama(config) : new Gpt2(config);
  for (const n of model.params.names) loadInto(model.params.get(n), get(`param:${n}`));
  const opts: LoraOptions = { rank: meta.lora.r, alpha: meta.lora.alpha, dropout: 0, target_modules: meta.lora.target_modules, use_rslora: meta.lora.use_rslora };
  attachLora(model.params, opts, new Rng(3), config.family === 'gpt2');
  const fixtureAdapters = meta.tensors.filter((t) => t.name.startsWith('lora:')).map((t) => t.name.slice('lora:'.length + PEFT_PREFIX.length));
  assert.deepEqual([...model.params.adapterNames].sort(), fixtureAdapters.sort());
  for (const n of model.params.adapterNames) loadInto(model.params.get(n), get(`lora:${PEFT_PREFIX}${n}`));
  return { model, meta, get };
}

function meanLoss(model: CausalLM, meta: Fixture, withLogits: boolean): { loss: Tensor; logits: Float32Array | null } {
  const B = meta.ids.length;
  const S = (meta.ids[0] as number[]).length;
  const hidden = model.forward(Tensor.from(meta.ids.flat(), [B, S], 'int32'), { positions: positionIds(B, S) });
  const lg = withLogits ? (T.noGrad(() => logits(model, hidden)).toArray() as Float32Array) : null;
  const { lossSum: sum, count } = lossSum(model, hidden, Tensor.from(meta.labels.flat(), [B, S], 'int32'), 7);
  return { loss: T.scale(sum, 1 / count), logits: lg };
}

for (const name of ['llama_lora', 'llama_rslora', 'gpt2_lora']) {
  test(`${name}: logits, loss and the gradients of every A and B match PyTorch; the base has none`, () => {
    const { model, meta, get } = build(name);
    try {
      assert.deepEqual(model.params.trainableNames, model.params.adapterNames);
      assert.equal(model.params.frozen.names.length, model.params.names.length);
      scope(() => {
        const { loss, logits: lg } = meanLoss(model, meta, true);
        assert.ok(relError(lg as Float32Array, get('logits')) <= 1e-4, `logits relative error ${relError(lg as Float32Array, get('logits'))}`);
        assert.ok(Math.abs(loss.item() - meta.loss) / meta.loss <= 1e-4, `loss ${loss.item()} vs ${meta.loss}`);
        model.params.zeroGrad();
        backward(loss);
      });
      for (const n of model.params.adapterNames) {
        const err = relError(model.params.grads.get(n).toArray() as Float32Array, get(`grad:${PEFT_PREFIX}${n}`));
        assert.ok(err <= 1e-3, `gradient of ${n}: relative error ${err.toExponential(2)}`);
      }
    } finally {
      model.release();
    }
  });

  test(`${name}: 5 AdamW steps over the adapters give PyTorch's losses and adapters`, () => {
    const { model, meta, get } = build(name);
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
      for (const n of model.params.adapterNames) {
        const err = relError(model.params.read(n), get(`after5:${PEFT_PREFIX}${n}`));
        assert.ok(err <= 1e-3, `${n} after 5 steps: relative error ${err.toExponential(2)}`);
      }
    } finally {
      model.release();
      opt.release();
    }
  });
}

function tinyLlama(): Llama {
  const c = parseModelConfig({ model_type: 'llama', vocab_size: 11, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, rms_norm_eps: 1e-5 }, 'tiny');
  if (c.family !== 'llama') throw new Error('not llama');
  return new Llama(c);
}

test('A is Kaiming-uniform U(±1/√in) from the seeded RNG, B is zero, and the adapted model starts equal to the base', () => {
  const m = tinyLlama();
  try {
    const before = scope(() => T.noGrad(() => logits(m, m.forward(Tensor.from([1, 2, 3], [1, 3], 'int32'), { positions: positionIds(1, 3) }))).toArray() as Float32Array);
    attachLora(m.params, { rank: 2, alpha: 4, dropout: 0, target_modules: ['q_proj', 'down_proj'], use_rslora: false }, new Rng(5), false);
    assert.deepEqual(m.params.adapterNames.filter((n) => n.includes('layers.0')), [
      'model.layers.0.self_attn.q_proj.lora_A.weight', 'model.layers.0.self_attn.q_proj.lora_B.weight',
      'model.layers.0.mlp.down_proj.lora_A.weight', 'model.layers.0.mlp.down_proj.lora_B.weight',
    ]);
    const a = m.params.read('model.layers.0.mlp.down_proj.lora_A.weight');
    const bound = 1 / Math.sqrt(12);
    assert.ok(a.every((v) => Math.abs(v) <= bound) && a.some((v) => Math.abs(v) > bound / 2));
    const r = new Rng(5); // draws in model order: layer 0's q_proj A (2×8), then its down_proj A (2×12)
    r.fillUniform(new Float32Array(16), -1 / Math.sqrt(8), 1 / Math.sqrt(8));
    assert.deepEqual(a, r.fillUniform(new Float32Array(24), -bound, bound));
    assert.ok(m.params.read('model.layers.0.mlp.down_proj.lora_B.weight').every((v) => v === 0));
    const after = scope(() => T.noGrad(() => logits(m, m.forward(Tensor.from([1, 2, 3], [1, 3], 'int32'), { positions: positionIds(1, 3) }))).toArray() as Float32Array);
    assert.deepEqual(after, before);
  } finally {
    m.release();
  }
});

test('bad LoRA settings: a ConfigError naming the module or pattern', () => {
  const cases: [Partial<LoraOptions>, RegExp][] = [
    [{ target_modules: ['qq_proj'] }, /"qq_proj" matches no linear module/],
    [{ target_modules: 'model\\.layers\\.9\\..*' }, /matches no linear module/],
    [{ target_modules: ['embed_tokens'] }, /matches no linear module/],
    [{ target_modules: '(' }, /invalid regex/],
    [{ rank: 5 }, /lora.rank 5 exceeds model.layers.0.self_attn.k_proj \(4×8\)/],
    [{ rank: 0 }, /positive integer/],
    [{ dropout: 1 }, /dropout/],
  ];
  for (const [bad, msg] of cases) {
    const m = tinyLlama();
    try {
      assert.throws(() => attachLora(m.params, { rank: 2, alpha: 4, dropout: 0, target_modules: ['q_proj', 'k_proj'], use_rslora: false, ...bad }, new Rng(1), false), (e: unknown) => e instanceof ConfigError && msg.test(e.message));
    } finally {
      m.release();
    }
  }
});

test('a regex target selects by full module name (PEFT), e.g. only layer 1', () => {
  const m = tinyLlama();
  try {
    attachLora(m.params, { rank: 2, alpha: 2, dropout: 0, target_modules: 'model\\.layers\\.1\\.self_attn\\.(q|v)_proj', use_rslora: false }, new Rng(1), false);
    assert.deepEqual([...m.params.lora?.modules.keys() ?? []], ['model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
  } finally {
    m.release();
  }
});

test('dropout drops the adapter input only while gradients are recorded, scaled by 1/(1-p)', () => {
  const m = tinyLlama();
  try {
    attachLora(m.params, { rank: 2, alpha: 4, dropout: 0.5, target_modules: ['q_proj'], use_rslora: false }, new Rng(5), false);
    const rng = new Rng(2);
    for (const n of m.params.adapterNames) m.params.load(n, rng.fillNormal(new Float32Array(m.params.read(n).length), 0, 0.5));
    const run = (): Float32Array => scope(() => logits(m, m.forward(Tensor.from([1, 2, 3, 4], [1, 4], 'int32'), { positions: positionIds(1, 4) })).toArray() as Float32Array);
    const evalA = T.noGrad(run);
    const evalB = T.noGrad(run);
    assert.deepEqual(evalA, evalB);
    const trainA = run();
    const trainB = run();
    assert.notDeepEqual(trainA, evalA);
    assert.notDeepEqual(trainA, trainB);
    // p = 0 keeps training equal to eval.
    (m.params.lora?.modules.get('model.layers.0.self_attn.q_proj') as { dropout: number }).dropout = 0;
    (m.params.lora?.modules.get('model.layers.1.self_attn.q_proj') as { dropout: number }).dropout = 0;
    assert.deepEqual(run(), evalA);
    // The kept inputs are scaled by 1/(1-p): A sums x (all ones), B copies, so the delta is s·2·(inputs kept).
    const mod = m.params.lora?.modules.get('model.layers.0.self_attn.q_proj') as { dropout: number; scale: number };
    mod.dropout = 0.5;
    const name = 'model.layers.0.self_attn.q_proj';
    m.params.load(`${name}.lora_A.weight`, Float32Array.from({ length: 16 }, (_, i) => (i < 8 ? 1 : 0)));
    m.params.load(`${name}.lora_B.weight`, Float32Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? 1 : 0)));
    const x = Tensor.from(new Float32Array(8).fill(1), [1, 8]);
    const full = scope(() => T.noGrad(() => linear(x, m.params, name)).toArray() as Float32Array);
    const noLora = full.map((v) => v - mod.scale * 8);
    for (let t = 0; t < 5; t++) {
      const y = scope(() => linear(x, m.params, name).toArray() as Float32Array);
      const kept = (y[0]! - noLora[0]!) / (mod.scale * 2);
      assert.ok(Math.abs(kept - Math.round(kept)) < 1e-4 && kept >= 0 && kept <= 8, `kept ${kept}`);
      y.forEach((v, o) => assert.ok(Math.abs(v - noLora[o]! - mod.scale * 2 * Math.round(kept)) < 1e-4));
    }
  } finally {
    m.release();
  }
});
