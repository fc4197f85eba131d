// The trainer: LR schedules, loss normalisation invariant to accumulation, exact resume, checkpoint
// layout and fallback, freezing, the non-finite guard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModelConfig } from '../../src/models/config.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { Rng, loadInto } from '../../src/tensor/index.ts';
import { ArrayBatchSource } from '../../src/train/batches.ts';
import { findResumeCheckpoint } from '../../src/train/checkpoint.ts';
import { type RunConfig, parseRunConfig } from '../../src/train/config.ts';
import { learningRate } from '../../src/train/lr-schedule.ts';
import { createModel, loadModel, weightOptionsOf } from '../../src/train/model-io.ts';
import { openSafetensors } from '../../src/formats/safetensors.ts';
import { ConfigError } from '../../src/errors.ts';
import { Trainer, TrainingError } from '../../src/train/trainer.ts';
import { readTfEvents } from '../../src/formats/tfevents.ts';

const MODEL = {
  model_type: 'llama', vocab_size: 37, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64, bos_token_id: 1, eos_token_id: 2,
};

function rows(n: number, len: number, seed: number): { inputIds: Int32Array; labels: Int32Array }[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const inputIds = Int32Array.from({ length: len }, () => 3 + rng.int(30));
    const labels = Int32Array.from(inputIds);
    // Mask a prompt of varying length, so rows hold different numbers of trained tokens.
    for (let t = 0; t < 1 + (i % 5); t++) labels[t] = -100;
    return { inputIds, labels };
  });
}

function config(out: string, extra: Record<string, unknown> = {}): RunConfig {
  return parseRunConfig(
    {
      seed: 0,
      output_dir: out,
      runner_config: { epochs: 2, batch_size: 2, gradient_accumulation_steps: 1, clip_grad_norm: 1.0 },
      optimizer: { learning_rate: 1e-2, weight_decay: 0.1, beta2: 0.95 },
      lr_schedule: { type: 'cosine', warmup_steps: 2, warmup_ratio: 0 },
      callbacks: { checkpoint: { prefix: 'tiny', save_checkpoint_steps: 2, keep_checkpoint_max: 2 }, loss_monitor: { log_every: 1 } },
      ...extra,
    },
    'test',
  );
}

function model(): CausalLM {
  return createModel(parseModelConfig(MODEL, 'tiny'), 3);
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'sftkit-train-'));
}

test('LR schedules follow HF definitions, with the warm-up ramp one step later so no step trains at lr 0', () => {
  const s = { type: 'cosine' as const, warmupSteps: 10, totalSteps: 110, lr: 1e-3, lrEnd: 0 };
  // Warm-up: step s trains at lr·(s+1)/(W+1); step W reaches the peak, as in HF.
  assert.equal(learningRate(s, 0), 1e-3 / 11);
  assert.equal(learningRate(s, 5), (1e-3 * 6) / 11);
  assert.equal(learningRate(s, 9), (1e-3 * 10) / 11);
  assert.equal(learningRate(s, 10), 1e-3);
  for (let i = 1; i <= 10; i++) assert.ok(learningRate(s, i) > learningRate(s, i - 1), `warm-up rises at step ${i}`);
  // One warm-up step in a one-step run: it trains (at half the lr), never at 0.
  assert.equal(learningRate({ ...s, warmupSteps: 1, totalSteps: 1 }, 0), 5e-4);
  assert.ok(learningRate({ ...s, warmupSteps: Math.ceil(0.03 * 1), totalSteps: 1 }, 0) > 0);
  assert.ok(Math.abs(learningRate(s, 60) - 5e-4) < 1e-15);
  assert.ok(Math.abs(learningRate({ ...s, lrEnd: 1e-4 }, 60) - 5.5e-4) < 1e-15);
  assert.ok(Math.abs(learningRate({ ...s, type: 'linear' }, 35) - 7.5e-4) < 1e-15);
  assert.equal(learningRate({ ...s, type: 'constant' }, 100), 1e-3);
});

test('the same data gives the same update with accumulation 1x4 and 4x1', () => {
  const data = rows(8, 9, 1);
  const finals = [
    { batch_size: 4, gradient_accumulation_steps: 1 },
    { batch_size: 1, gradient_accumulation_steps: 4 },
  ].map(async (rc) => {
    const out = tmp();
    const m = model();
    try {
      const cfg = config(out, { runner_config: { epochs: 1, clip_grad_norm: 1.0, ...rc }, callbacks: { checkpoint: { save_checkpoint_steps: 1000 } } });
      const src = new ArrayBatchSource(data, { batchSize: rc.batch_size, shuffle: false });
      const summary = await new Trainer({ config: cfg, model: m, train: src, assetsDir: null }).run();
      return { losses: summary.losses, params: m.params.values.all.toArray() as Float32Array };
    } finally {
      m.release();
      rmSync(out, { recursive: true, force: true });
    }
  });
  return Promise.all(finals).then(([a, b]) => {
    const A = a as { losses: number[]; params: Float32Array };
    const B = b as { losses: number[]; params: Float32Array };
    assert.equal(A.losses.length, 2);
    for (let i = 0; i < 2; i++) assert.ok(Math.abs((A.losses[i] as number) - (B.losses[i] as number)) <= 1e-6 * Math.abs(A.losses[i] as number));
    let num = 0;
    let den = 0;
    for (let i = 0; i < A.params.length; i++) {
      num += ((A.params[i] as number) - (B.params[i] as number)) ** 2;
      den += (A.params[i] as number) ** 2;
    }
    assert.ok(Math.sqrt(num / den) <= 1e-6, `parameters differ by ${Math.sqrt(num / den)}`);
  });
});

test('a run stopped after step k and resumed gives the same losses bit for bit', async () => {
  const data = rows(12, 9, 2);
  const outA = tmp();
  const outB = tmp();
  try {
    const mA = model();
    const full = await new Trainer({ config: config(outA), model: mA, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null }).run();
    mA.release();
    assert.equal(full.losses.length, 12);

    const mB = model();
    const trainer: Trainer = new Trainer({
      config: config(outB),
      model: mB,
      train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }),
      assetsDir: null,
      events: { step: (s) => s.step === 7 && trainer.requestStop() },
    });
    const first = await trainer.run();
    mB.release();
    assert.equal(first.stoppedEarly, true);
    assert.deepEqual(first.losses, full.losses.slice(0, 7));

    const ck = findResumeCheckpoint(join(outB, 'checkpoint'), null, () => assert.fail('no warning expected'));
    assert.equal(ck.name, 'tiny-2_7');
    const mC = loadModel(ck.dir);
    const rest = await new Trainer({ config: config(outB), model: mC, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, resume: ck }).run();
    mC.release();
    assert.deepEqual(rest.losses, full.losses.slice(7));
    const metrics = readFileSync(join(outA, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number });
    assert.deepEqual(metrics.map((m) => m.step), Array.from({ length: 12 }, (_, i) => i + 1));
  } finally {
    rmSync(outA, { recursive: true, force: true });
    rmSync(outB, { recursive: true, force: true });
  }
});

test('checkpoints follow the layout, keep at most keep_checkpoint_max, and a corrupt latest falls back', async () => {
  const out = tmp();
  try {
    const m = model();
    await new Trainer({ config: config(out), model: m, train: new ArrayBatchSource(rows(12, 9, 3), { batchSize: 2 }), assetsDir: null }).run();
    m.release();
    const root = join(out, 'checkpoint');
    const meta = JSON.parse(readFileSync(join(root, 'meta.json'), 'utf8')) as { latest: string; checkpoints: string[] };
    assert.deepEqual(meta, { latest: 'tiny-2_12', checkpoints: ['tiny-2_10', 'tiny-2_12'] });
    assert.deepEqual(readdirSync(root).sort(), ['meta.json', 'tiny-2_10', 'tiny-2_12']);
    const latest = join(root, 'tiny-2_12');
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'sftkit.json', 'trainer_state.json', 'rank_0.json', 'optimizer/rank_0.safetensors']) {
      assert.ok(existsSync(join(latest, f)), f);
    }
    // Corrupt the latest: resume falls back to the previous one, with a warning.
    const w = join(latest, 'model.safetensors');
    const bytes = readFileSync(w);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0xff;
    writeFileSync(w, bytes);
    const warnings: string[] = [];
    const ck = findResumeCheckpoint(root, null, (msg) => warnings.push(msg));
    assert.equal(ck.name, 'tiny-2_10');
    assert.match(warnings[0] ?? '', /tiny-2_12 is unusable.*model\.safetensors/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('frozen parameters do not change', async () => {
  const out = tmp();
  const m = model();
  try {
    const before = m.params.get('model.embed_tokens.weight').toArray() as Float32Array;
    const layer0 = m.params.get('model.layers.0.mlp.up_proj.weight').toArray() as Float32Array;
    const cfg = config(out, { freeze: { include: ['embed_tokens', '^model\\.layers\\.0\\.'], exclude: ['layernorm'] }, runner_config: { epochs: 1, batch_size: 2 } });
    await new Trainer({ config: cfg, model: m, train: new ArrayBatchSource(rows(4, 9, 4), { batchSize: 2 }), assetsDir: null }).run();
    assert.deepEqual(m.params.get('model.embed_tokens.weight').toArray(), before);
    assert.deepEqual(m.params.get('model.layers.0.mlp.up_proj.weight').toArray(), layer0);
    assert.notDeepEqual(m.params.get('model.layers.0.input_layernorm.weight').toArray(), new Float32Array(16).fill(1));
  } finally {
    m.release();
    rmSync(out, { recursive: true, force: true });
  }
});

test('a non-finite loss stops training, naming the step', async () => {
  const out = tmp();
  const m = model();
  try {
    loadInto(m.params.get('model.norm.weight'), new Float32Array(16).fill(NaN));
    const run = new Trainer({ config: config(out), model: m, train: new ArrayBatchSource(rows(4, 9, 5), { batchSize: 2 }), assetsDir: null }).run();
    await assert.rejects(run, (e: unknown) => e instanceof TrainingError && /step 1: loss is NaN/.test(e.message));
  } finally {
    m.release();
    rmSync(out, { recursive: true, force: true });
  }
});

test('a stop request ends the run after the current step with one checkpoint, or before the first step with none', async () => {
  const data = rows(12, 9, 6);
  const out = tmp();
  try {
    // Asked while the model was loading: no step, nothing saved, the code kept for the caller.
    const mA = model();
    const early = new Trainer({ config: config(out), model: mA, train: new ArrayBatchSource(data, { batchSize: 2 }), assetsDir: null });
    early.requestStop('received SIGTERM', 143);
    const a = await early.run();
    mA.release();
    assert.deepEqual({ steps: a.steps, stoppedEarly: a.stoppedEarly, stopReason: a.stopReason, stopCode: a.stopCode, lastCheckpoint: a.lastCheckpoint }, {
      steps: 0, stoppedEarly: true, stopReason: 'received SIGTERM', stopCode: 143, lastCheckpoint: null,
    });
    assert.equal(existsSync(join(out, 'checkpoint')), false);

    // Asked during step 3 (saves every 2 steps): step 3 finishes and is saved once; a second request changes nothing.
    const mB = model();
    const trainer: Trainer = new Trainer({
      config: config(out),
      model: mB,
      train: new ArrayBatchSource(data, { batchSize: 2 }),
      assetsDir: null,
      events: {
        step: (s) => {
          if (s.step !== 3) return;
          trainer.requestStop('received SIGUSR1', 138);
          trainer.requestStop('received SIGINT', 130);
        },
      },
    });
    const b = await trainer.run();
    mB.release();
    assert.deepEqual({ steps: b.steps, stopReason: b.stopReason, stopCode: b.stopCode }, { steps: 3, stopReason: 'received SIGUSR1', stopCode: 138 });
    assert.equal(b.lastCheckpoint, join(out, 'checkpoint', 'tiny-1_3'));
    assert.deepEqual(readdirSync(join(out, 'checkpoint')).sort(), ['meta.json', 'tiny-1_2', 'tiny-1_3']);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('with frozen weights (mapped from the checkpoint on resume) a stopped and resumed run gives the same losses bit for bit', async () => {
  const data = rows(8, 9, 7);
  const freeze = { include: ['embed_tokens', 'self_attn', 'mlp\\.(gate|up)_proj'], exclude: ['layers\\.1\\.self_attn\\.o_proj'] };
  const cfgOf = (out: string): RunConfig => config(out, { freeze, runner_config: { epochs: 1, batch_size: 2, clip_grad_norm: 1.0 } });
  const outA = tmp();
  const outB = tmp();
  try {
    const mA = model();
    const frozenBefore = mA.params.read('model.layers.0.self_attn.q_proj.weight');
    const full = await new Trainer({ config: cfgOf(outA), model: mA, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null }).run();
    // Frozen weights moved to the frozen store: no gradient, no optimizer state, unchanged.
    assert.equal(mA.params.isFrozen('model.layers.0.self_attn.q_proj.weight'), true);
    assert.equal(mA.params.isFrozen('model.layers.1.self_attn.o_proj.weight'), false);
    assert.equal(mA.params.get('model.layers.0.self_attn.q_proj.weight').grad, null);
    assert.deepEqual(mA.params.read('model.layers.0.self_attn.q_proj.weight'), frozenBefore);
    const trainable = mA.params.trainableNames;
    assert.ok(trainable.every((n) => !/embed_tokens|self_attn\.[qkv]_proj|gate_proj|up_proj/.test(n)), trainable.join(' '));
    assert.ok(trainable.includes('model.layers.1.self_attn.o_proj.weight') && trainable.includes('lm_head.weight'));
    mA.release();
    // The optimizer file holds moments of the trainable weights only; the model file holds every weight.
    const ckA = findResumeCheckpoint(join(outA, 'checkpoint'), null, () => assert.fail('no warning expected'));
    const opt = openSafetensors(join(ckA.dir, 'optimizer', 'rank_0.safetensors'));
    assert.deepEqual(opt.tensors.map((t) => t.name).filter((n) => n.startsWith('exp_avg.')).sort(), trainable.map((n) => `exp_avg.${n}`).sort());
    opt.close();
    const weights = openSafetensors(join(ckA.dir, 'model.safetensors'));
    assert.equal(weights.tensors.length, mA.params.names.length);
    weights.close();

    const mB = model();
    const trainer: Trainer = new Trainer({
      config: cfgOf(outB),
      model: mB,
      train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }),
      assetsDir: null,
      events: { step: (s) => s.step === 2 && trainer.requestStop() },
    });
    const first = await trainer.run();
    mB.release();
    assert.deepEqual(first.losses, full.losses.slice(0, 2));
    const ck = findResumeCheckpoint(join(outB, 'checkpoint'), null, () => assert.fail('no warning expected'));
    // Loaded as `sftkit run` loads it: frozen weights straight into the frozen store, as mappings of the file.
    const mC = loadModel(ck.dir, 0, { weights: (names) => weightOptionsOf(cfgOf(outB), names) });
    assert.ok(mC.params.counts().frozenMappedBytes > 0, 'frozen weights are mapped from model.safetensors');
    assert.equal(mC.params.counts().frozenMappedBytes, mC.params.counts().frozenBytes);
    const rest = await new Trainer({ config: cfgOf(outB), model: mC, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, resume: ck }).run();
    mC.release();
    assert.deepEqual(rest.losses, full.losses.slice(2));
  } finally {
    rmSync(outA, { recursive: true, force: true });
    rmSync(outB, { recursive: true, force: true });
  }
});

test('frozen weights stored in bfloat16 hold half the bytes and compute with their rounded values', async () => {
  const out = tmp();
  try {
    const cfg = config(out, { freeze: { include: ['mlp'], exclude: [] }, model: { base_dtype: 'bfloat16' }, runner_config: { epochs: 1, batch_size: 2 } });
    const m32 = model();
    const ref = m32.params.read('model.layers.0.mlp.up_proj.weight');
    const mbf = createModel(parseModelConfig(MODEL, 'tiny'), 3, weightOptionsOf(cfg, m32.params.names));
    m32.release();
    const w = mbf.params.get('model.layers.0.mlp.up_proj.weight');
    assert.equal(w.dtype, 'bfloat16');
    const counts = mbf.params.counts();
    assert.equal(counts.frozenBytes, counts.frozenParams * 2);
    // Round to nearest even, as torch.bfloat16 does; the compute weight is that value widened exactly.
    const got = mbf.params.read('model.layers.0.mlp.up_proj.weight');
    const bits = new Uint32Array(ref.buffer.slice(0));
    for (let i = 0; i < ref.length; i++) {
      const b = bits[i] as number;
      const rounded = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) << 16;
      assert.equal(new Float32Array(new Uint32Array([rounded >>> 0]).buffer)[0], got[i], `element ${i}`);
    }
    const summary = await new Trainer({ config: cfg, model: mbf, train: new ArrayBatchSource(rows(4, 9, 8), { batchSize: 2 }), assetsDir: null }).run();
    assert.ok(summary.losses.every(Number.isFinite));
    assert.deepEqual(mbf.params.read('model.layers.0.mlp.up_proj.weight'), got);
    mbf.release();
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('generation metrics asked for during training run at each eval step, or are refused when they cannot', async () => {
  const out = tmp();
  const m = model();
  try {
    const cfg = config(out, { runner_config: { epochs: 1, batch_size: 2 }, callbacks: { eval: { do_eval: true, eval_steps: 1, metrics: ['perplexity', 'em'] } } });
    const src = new ArrayBatchSource(rows(4, 9, 9), { batchSize: 2 });
    const refused = new Trainer({ config: cfg, model: m, train: src, evalSource: src, assetsDir: null }).run();
    await assert.rejects(refused, (e: unknown) => e instanceof ConfigError && /callbacks\.eval\.metrics em/.test(e.message) && e.where === 'callbacks.eval.metrics');
    assert.equal(existsSync(join(out, 'metrics.jsonl')), false);

    const asked: string[][] = [];
    const seen: number[] = [];
    await new Trainer({
      config: cfg, model: m, train: src, evalSource: src, assetsDir: null,
      generationMetrics: (metrics) => {
        asked.push(metrics);
        return { em: 0.25 * asked.length };
      },
      events: { eval: (step, r) => seen.push(step, r.metrics?.['em'] ?? NaN) },
    }).run();
    assert.deepEqual(asked, [['em'], ['em']]);
    assert.deepEqual(seen, [1, 0.25, 2, 0.5]);
    const evals = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; metrics?: { em: number } }).filter((l) => l.type === 'eval');
    assert.deepEqual(evals.map((e) => e.metrics?.em), [0.25, 0.5]);
  } finally {
    m.release();
    rmSync(out, { recursive: true, force: true });
  }
});

test('callbacks.tensorboard writes train and eval scalars that read back equal to metrics.jsonl', async () => {
  const out = tmp();
  const m = model();
  try {
    const cfg = config(out, {
      runner_config: { epochs: 1, batch_size: 2 },
      callbacks: { eval: { do_eval: true, eval_steps: 2, metrics: ['perplexity', 'em'] }, tensorboard: { enabled: true } },
    });
    const src = new ArrayBatchSource(rows(8, 9, 4), { batchSize: 2 });
    await new Trainer({ config: cfg, model: m, train: src, evalSource: src, assetsDir: null, generationMetrics: () => ({ em: 0.375 }) }).run();
    const files = readdirSync(join(out, 'tensorboard'));
    assert.equal(files.length, 1);
    assert.match(files[0] as string, /^events\.out\.tfevents\.\d+\./);
    const events = readTfEvents(readFileSync(join(out, 'tensorboard', files[0] as string)));
    assert.equal(events[0]?.fileVersion, 'brain.Event:2');
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | string | Record<string, number>>);
    const want = lines.map((l): { step: number; scalars: Record<string, number> } =>
      l['type'] === 'train'
        ? { step: l['step'] as number, scalars: { 'train/loss': l['loss'] as number, 'train/lr': l['lr'] as number, 'train/grad_norm': l['grad_norm'] as number, 'train/tokens_per_s': l['tokens_per_s'] as number } }
        : { step: l['step'] as number, scalars: { 'eval/loss': l['loss'] as number, 'eval/perplexity': l['perplexity'] as number, 'eval/em': 0.375 } },
    );
    const got = events.slice(1).map((e) => ({ step: e.step, scalars: Object.fromEntries(e.scalars.map((s) => [s.tag, s.value])) }));
    assert.deepEqual(got, want.map((w) => ({ step: w.step, scalars: Object.fromEntries(Object.entries(w.scalars).map(([k, v]) => [k, Math.fround(v)])) })));
    assert.deepEqual(got.map((g) => g.step), [1, 2, 2, 3, 4, 4]);
  } finally {
    m.release();
    rmSync(out, { recursive: true, force: true });
  }
});

test('early stopping keeps the best checkpoint past keep_checkpoint_max, stops after patience evals, and resumes its state', async () => {
  // em by step (mode max): best 0.5 at step 2; steps 3 and 4 do not beat it, so patience 2 stops after step 4.
  const em: Record<number, number> = { 1: 0.1, 2: 0.5, 3: 0.4, 4: 0.5, 5: 0.9, 6: 0.9, 7: 0.9, 8: 0.9 };
  const data = rows(8, 9, 5);
  const settings = {
    runner_config: { epochs: 2, batch_size: 2 },
    callbacks: {
      checkpoint: { prefix: 'tiny', save_checkpoint_steps: 2, keep_checkpoint_max: 1 },
      eval: { do_eval: true, eval_steps: 1, metrics: ['perplexity', 'em'] },
      early_stopping: { enabled: true, metric: 'em', patience: 2 },
    },
  };
  const trainer = (out: string, m: CausalLM, extra: Partial<ConstructorParameters<typeof Trainer>[0]> = {}): Trainer => {
    let step = 0;
    return new Trainer({
      config: config(out, settings), model: m, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), evalSource: new ArrayBatchSource(data.slice(0, 2), { batchSize: 2 }), assetsDir: null,
      generationMetrics: () => ({ em: em[step] ?? 0 }),
      ...extra,
      events: { step: (s) => { step = s.step; extra.events?.step?.(s); } },
    });
  };
  const outA = tmp();
  const outB = tmp();
  try {
    const mA = model();
    const full = await trainer(outA, mA).run();
    mA.release();
    assert.equal(full.steps, 4);
    assert.match(full.earlyStopped ?? '', /em did not improve on 0\.5 \(step 2\) by more than 0 in 2 evals; stopped after step 4/);
    assert.deepEqual(full.best, { metric: 'em', value: 0.5, step: 2, checkpoint: join(outA, 'checkpoint', 'tiny-1_2') });
    const meta = JSON.parse(readFileSync(join(outA, 'checkpoint', 'meta.json'), 'utf8')) as { latest: string; checkpoints: string[]; best: string };
    assert.deepEqual(meta, { latest: 'tiny-1_4', checkpoints: ['tiny-1_2', 'tiny-1_4'], best: 'tiny-1_2' });
    assert.deepEqual(readdirSync(join(outA, 'checkpoint')).sort(), ['meta.json', 'tiny-1_2', 'tiny-1_4']);

    // Stopped after step 3 (one eval without improvement) and resumed: the second one still stops it at step 4.
    const mB = model();
    const first = trainer(outB, mB, { events: { step: (s) => s.step === 3 && first.requestStop() } });
    const part = await first.run();
    mB.release();
    assert.equal(part.stoppedEarly, true);
    const ck = findResumeCheckpoint(join(outB, 'checkpoint'), null, () => assert.fail('no warning expected'));
    assert.equal(ck.name, 'tiny-1_3');
    assert.deepEqual(ck.state.early_stopping, { best_value: 0.5, best_step: 2, best_checkpoint: 'tiny-1_2', bad_evals: 1 });
    const mC = loadModel(ck.dir);
    const rest = await trainer(outB, mC, { resume: ck }).run();
    mC.release();
    assert.equal(rest.steps, 4);
    assert.deepEqual([...part.losses, ...rest.losses], full.losses);
    assert.deepEqual(rest.best, { metric: 'em', value: 0.5, step: 2, checkpoint: join(outB, 'checkpoint', 'tiny-1_2') });
  } finally {
    rmSync(outA, { recursive: true, force: true });
    rmSync(outB, { recursive: true, force: true });
  }
});

test('early stopping without evaluation, or on a metric the evals do not compute, is refused', async () => {
  const out = tmp();
  const m = model();
  try {
    const src = new ArrayBatchSource(rows(4, 9, 6), { batchSize: 2 });
    const noEval = config(out, { callbacks: { early_stopping: { enabled: true } } });
    await assert.rejects(new Trainer({ config: noEval, model: m, train: src, assetsDir: null }).run(), (e: unknown) => e instanceof ConfigError && e.where === 'callbacks.early_stopping.enabled');
    const noMetric = config(out, { callbacks: { eval: { do_eval: true }, early_stopping: { enabled: true, metric: 'f1' } } });
    await assert.rejects(new Trainer({ config: noMetric, model: m, train: src, evalSource: src, assetsDir: null }).run(), (e: unknown) => e instanceof ConfigError && /metric f1 is not computed/.test(e.message));
  } finally {
    m.release();
    rmSync(out, { recursive: true, force: true });
  }
});

test('the report hook runs after every save with where the run stands; a failing report is a warning', async () => {
  const out = tmp();
  const m = model();
  try {
    const cfg = config(out, { runner_config: { epochs: 1, batch_size: 2 } });
    const seen: string[] = [];
    await new Trainer({
      config: cfg, model: m, train: new ArrayBatchSource(rows(8, 9, 7), { batchSize: 2 }), assetsDir: null,
      report: async (p) => {
        seen.push(`${p.step}/${p.totalSteps} ${p.status} ${p.lastCheckpoint?.split('/').pop()}`);
      },
    }).run();
    assert.deepEqual(seen, ['2/4 running tiny-1_2', '4/4 finished tiny-1_4']);
    const warnings: string[] = [];
    const summary = await new Trainer({
      config: config(join(out, 'b'), { runner_config: { epochs: 1, batch_size: 2 } }), model: m, train: new ArrayBatchSource(rows(8, 9, 7), { batchSize: 2 }), assetsDir: null,
      report: () => Promise.reject(new Error('disk full')),
      events: { warn: (w) => warnings.push(w) },
    }).run();
    assert.equal(summary.steps, 4);
    assert.deepEqual(warnings, ['could not write the run report: disk full', 'could not write the run report: disk full']);
  } finally {
    m.release();
    rmSync(out, { recursive: true, force: true });
  }
});
