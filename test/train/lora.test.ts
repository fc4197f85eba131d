// A LoRA run through the trainer: only the adapters train (optimizer state for them alone, the base unchanged),
// its checkpoints carry PEFT's adapter_config.json and adapter_model.safetensors, a stopped run resumes bit
// for bit, a PEFT adapter folder loads (and bad ones are refused naming the tensor), and merging gives a plain
// model whose logits equal base + adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { openSafetensors } from '../../src/formats/safetensors.ts';
import { writeSafetensors } from '../../src/formats/safetensors-writer.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { type CausalLM, logits } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import * as T from '../../src/tensor/index.ts';
import { Rng, Tensor, scope } from '../../src/tensor/index.ts';
import { ArrayBatchSource } from '../../src/train/batches.ts';
import { findResumeCheckpoint } from '../../src/train/checkpoint.ts';
import { type RunConfig, parseRunConfig } from '../../src/train/config.ts';
import { attachLoraFor, loadAdapter, mergeLora, writeAdapterFiles } from '../../src/train/lora-io.ts';
import { createModel, loadModel, weightOptionsOf, writeModelCheckpoint } from '../../src/train/model-io.ts';
import { Trainer } from '../../src/train/trainer.ts';
import { relError } from '../helpers/native.ts';

const LLAMA = {
  model_type: 'llama', vocab_size: 37, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64, bos_token_id: 1, eos_token_id: 2,
};
const GPT2 = { model_type: 'gpt2', vocab_size: 37, n_embd: 16, n_head: 4, n_layer: 2, n_positions: 32, layer_norm_epsilon: 1e-5 };

function rows(n: number, len: number, seed: number): { inputIds: Int32Array; labels: Int32Array }[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const inputIds = Int32Array.from({ length: len }, () => 3 + rng.int(30));
    const labels = Int32Array.from(inputIds);
    for (let t = 0; t < 1 + (i % 5); t++) labels[t] = -100;
    return { inputIds, labels };
  });
}

function config(out: string, lora: Record<string, unknown>): RunConfig {
  return parseRunConfig(
    {
      seed: 0,
      output_dir: out,
      runner_config: { epochs: 1, batch_size: 2, gradient_accumulation_steps: 1, clip_grad_norm: 1.0 },
      optimizer: { learning_rate: 2e-2, weight_decay: 0.1, beta2: 0.95 },
      lr_schedule: { type: 'cosine', warmup_steps: 1, warmup_ratio: 0 },
      callbacks: { checkpoint: { prefix: 'tiny', save_checkpoint_steps: 2, keep_checkpoint_max: 2 }, loss_monitor: { log_every: 1 } },
      lora,
    },
    'test',
  );
}

function baseModel(raw: Record<string, unknown>, cfg: RunConfig): CausalLM {
  const mc = parseModelConfig(raw, 'tiny');
  return createModel(mc, 3, weightOptionsOf(cfg, []));
}

function logitsOf(m: CausalLM): Float32Array {
  return scope(() => T.noGrad(() => logits(m, m.forward(Tensor.from([3, 5, 7, 11, 13, 4], [1, 6], 'int32'), { positions: positionIds(1, 6) }))).toArray() as Float32Array);
}

const tmp = (): string => mkdtempSync(join(tmpdir(), 'sftkit-lora-'));
const LORA = { rank: 4, alpha: 8, target_modules: ['q_proj', 'v_proj', 'down_proj'] };

test('a LoRA run trains the adapters only, saves them in PEFT format, and resumes bit for bit', async () => {
  const data = rows(8, 9, 5);
  const outA = tmp();
  const outB = tmp();
  try {
    const cfgA = config(outA, LORA);
    const mA = baseModel(LLAMA, cfgA);
    const baseBefore = mA.params.read('model.layers.0.self_attn.q_proj.weight');
    attachLoraFor(mA, cfgA, { resumeDir: null, training: true });
    const full = await new Trainer({ config: cfgA, model: mA, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null }).run();
    assert.equal(full.losses.length, 4);
    assert.deepEqual(mA.params.read('model.layers.0.self_attn.q_proj.weight'), baseBefore);
    assert.deepEqual(mA.params.trainableNames, mA.params.adapterNames);
    assert.equal(mA.params.adapterNames.length, 2 * 3 * 2);
    assert.ok(mA.params.read('model.layers.1.mlp.down_proj.lora_B.weight').some((v) => v !== 0), 'B trained');
    mA.release();

    const ck = findResumeCheckpoint(join(outA, 'checkpoint'), null, () => assert.fail('no warning'));
    const ac = JSON.parse(readFileSync(join(ck.dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(ac['peft_type'], 'LORA');
    assert.equal(ac['task_type'], 'CAUSAL_LM');
    assert.equal(ac['r'], 4);
    assert.equal(ac['lora_alpha'], 8);
    assert.equal(ac['bias'], 'none');
    assert.equal(ac['fan_in_fan_out'], false);
    assert.deepEqual(ac['target_modules'], ['q_proj', 'v_proj', 'down_proj']);
    const st = openSafetensors(join(ck.dir, 'adapter_model.safetensors'));
    assert.ok(st.get('base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight')?.shape.join() === '4,16');
    assert.ok(st.get('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight')?.shape.join() === '8,4');
    assert.equal(st.tensors.length, 12);
    st.close();
    const opt = openSafetensors(join(ck.dir, 'optimizer', 'rank_0.safetensors'));
    assert.deepEqual(opt.tensors.map((t) => t.name).filter((n) => n.startsWith('exp_avg.')).map((n) => n.slice(8)).sort(), st.tensors.map((t) => t.name.slice('base_model.model.'.length)).sort());
    opt.close();

    const cfgB = config(outB, LORA);
    const mB = baseModel(LLAMA, cfgB);
    attachLoraFor(mB, cfgB, { resumeDir: null, training: true });
    const trainer: Trainer = new Trainer({ config: cfgB, model: mB, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, events: { step: (s) => s.step === 2 && trainer.requestStop() } });
    const first = await trainer.run();
    mB.release();
    assert.deepEqual(first.losses, full.losses.slice(0, 2));
    const ckB = findResumeCheckpoint(join(outB, 'checkpoint'), null, () => assert.fail('no warning'));
    // As `sftkit run` resumes: the base mapped into the frozen store, the checkpoint's adapter attached.
    const mC = loadModel(ckB.dir, 0, { weights: (names) => weightOptionsOf(cfgB, names) });
    attachLoraFor(mC, cfgB, { resumeDir: ckB.dir, training: true });
    const rest = await new Trainer({ config: cfgB, model: mC, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, resume: ckB }).run();
    mC.release();
    assert.deepEqual(rest.losses, full.losses.slice(2));
  } finally {
    rmSync(outA, { recursive: true, force: true });
    rmSync(outB, { recursive: true, force: true });
  }
});

for (const [family, raw, targets] of [['llama', LLAMA, 'all-linear'], ['gpt2', GPT2, ['c_attn', 'c_proj', 'c_fc']]] as const) {
  test(`${family}: a PEFT adapter folder loads and merging it gives the logits of base + adapter (1e-5 rel)`, () => {
    const dir = tmp();
    try {
      const cfg = config(join(dir, 'out'), { rank: 2, alpha: 16, use_rslora: family === 'gpt2', target_modules: targets });
      const m = baseModel(raw, cfg);
      attachLoraFor(m, cfg, { resumeDir: null, training: true });
      // Train-like adapters: random B so the adapter changes the output.
      const rng = new Rng(9);
      for (const n of m.params.adapterNames) m.params.load(n, rng.fillNormal(new Float32Array(m.params.read(n).length), 0, 0.2));
      const ck = join(dir, 'ck');
      mkdirSync(ck);
      writeModelCheckpoint(ck, m, { assetsDir: null, source: { path: 'test', format: 'test' } });
      writeAdapterFiles(ck, m, 'tiny-base');
      const adapted = logitsOf(m);
      m.release();

      // Load base + PEFT adapter (as `run --lora.adapter DIR` does for eval/predict).
      const m2 = loadModel(ck, 0);
      const base = logitsOf(m2);
      loadAdapter(m2, ck);
      assert.deepEqual(logitsOf(m2), adapted);
      assert.ok(relError(base, adapted) > 1e-3, 'the adapter changes the logits');
      mergeLora(m2);
      assert.equal(m2.params.lora, null);
      const merged = logitsOf(m2);
      assert.ok(relError(merged, adapted) <= 1e-5, `merged vs adapted ${relError(merged, adapted)}`);
      m2.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('adapters that disagree with the model: a FormatError naming the tensor or module', () => {
  const dir = tmp();
  try {
    const cfg = config(join(dir, 'out'), LORA);
    const m = baseModel(LLAMA, cfg);
    attachLoraFor(m, cfg, { resumeDir: null, training: true });
    const ok = join(dir, 'ok');
    mkdirSync(ok);
    writeAdapterFiles(ok, m, null);
    m.release();
    const fresh = (): CausalLM => createModel(parseModelConfig(LLAMA, 'tiny'), 3);
    const variant = (name: string, edit: (acfg: Record<string, unknown>) => void, tensors?: { name: string; shape: number[] }[]): string => {
      const d = join(dir, name);
      cpSync(ok, d, { recursive: true });
      const acfg = JSON.parse(readFileSync(join(d, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      edit(acfg);
      writeFileSync(join(d, 'adapter_config.json'), JSON.stringify(acfg));
      if (tensors) writeSafetensors(join(d, 'adapter_model.safetensors'), tensors.map((t) => ({ ...t, dtype: 'F32' as const })), (s) => new Uint8Array(4 * s.shape.reduce((a, b) => a * b, 1)));
      return d;
    };
    const cases: [string, RegExp][] = [
      [variant('rank', (c) => { c['r'] = 2; }), /lora_A.weight has shape \[4, 16\], the model needs \[2, 16\]/],
      [variant('target', (c) => { c['target_modules'] = ['nope_proj']; }), /adapter_config.json: lora.target_modules: "nope_proj" matches no linear module/],
      [variant('type', (c) => { c['peft_type'] = 'PREFIX_TUNING'; }), /field "peft_type"/],
      [variant('dora', (c) => { c['use_dora'] = true; }), /field "use_dora"/],
      [variant('extra', () => {}, [{ name: 'base_model.model.model.embed_tokens.lora_embedding_A', shape: [4, 37] }]), /tensor base_model.model.model.embed_tokens.lora_embedding_A belongs to no LoRA module/],
      [variant('missing', () => {}, [{ name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', shape: [4, 16] }]), /tensor base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight is missing/],
    ];
    for (const [d, msg] of cases) {
      const mm = fresh();
      try {
        assert.throws(() => loadAdapter(mm, d), (e: unknown) => e instanceof FormatError && msg.test(e.message), d);
      } finally {
        mm.release();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('LoRA dropout with recompute is refused (the recomputed pass would draw other masks)', () => {
  const cfg = parseRunConfig({ output_dir: '/tmp/unused', model: { recompute: true }, lora: { rank: 2, dropout: 0.1 } }, 'test');
  const m = baseModel(LLAMA, cfg);
  try {
    assert.throws(() => attachLoraFor(m, cfg, { resumeDir: null, training: true }), /lora dropout 0.1 cannot be combined with model.recompute/);
  } finally {
    m.release();
  }
});
