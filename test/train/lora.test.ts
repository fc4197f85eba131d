// A LoRA run through the trainer: only the adapters train (optimizer state for them alone, the base unchanged),
// its checkpoints carry PEFT's adapter_config.json and adapter_model.safetensors, a stopped run resumes bit
// for bit, a PEFT adapter folder loads (and bad ones are refused naming the tensor), and merging gives a plain
// model whose logits equal base + adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
import { adapterCheckpointBase, attachLoraFor, baseDirOf, loadAdapter, mergeLora, writeAdapterFiles } from '../../src/train/lora-io.ts';
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

/** A base model checkpoint of the tiny Llama in `dir` (what a LoRA run's checkpoints refer to). */
function writeBase(dir: string): void {
  const m = createModel(parseModelConfig(LLAMA, 'tiny'), 3);
  mkdirSync(dir);
  writeModelCheckpoint(dir, m, { assetsDir: null, source: { path: 'test', format: 'test' } });
  m.release();
}

/** The base loaded as `sftkit run` loads it for training: every weight frozen, mapped from the file. */
const loadBase = (dir: string, cfg: RunConfig): CausalLM => loadModel(dir, 0, { weights: (names) => weightOptionsOf(cfg, names) });

const dirSize = (dir: string): number => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).reduce((n, e) => n + statSync(join(e.parentPath, e.name)).size, 0);

/**
 * Trains 4 steps in one go and as 2 + 2 with a stop and a resume from the adapter-only checkpoint (as
 * `sftkit run --resume_training` does: the base re-loaded from the folder sftkit.json names); returns both.
 */
async function stopAndResume(lora: Record<string, unknown>, work: string): Promise<{ full: number[]; resumed: number[]; ckDir: string; baseDir: string }> {
  const data = rows(8, 9, 5);
  const baseDir = join(work, 'base');
  writeBase(baseDir);
  const base = { name_or_path: 'tiny-base', dir: baseDir };
  const cfgA = config(join(work, 'a'), lora);
  const mA = loadBase(baseDir, cfgA);
  attachLoraFor(mA, cfgA, { checkpointDir: null, training: true });
  const full = await new Trainer({ config: cfgA, model: mA, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, base }).run();
  mA.release();

  const cfgB = config(join(work, 'b'), lora);
  const mB = loadBase(baseDir, cfgB);
  attachLoraFor(mB, cfgB, { checkpointDir: null, training: true });
  const trainer: Trainer = new Trainer({ config: cfgB, model: mB, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, base, events: { step: (s) => s.step === 2 && trainer.requestStop() } });
  const first = await trainer.run();
  mB.release();
  assert.deepEqual(first.losses, full.losses.slice(0, 2));
  const ckB = findResumeCheckpoint(join(work, 'b', 'checkpoint'), null, () => assert.fail('no warning'));
  const recorded = adapterCheckpointBase(ckB.dir);
  assert.deepEqual(recorded, base);
  const mC = loadBase(baseDirOf(ckB.dir, recorded as NonNullable<typeof recorded>), cfgB);
  attachLoraFor(mC, cfgB, { checkpointDir: ckB.dir, training: true });
  const rest = await new Trainer({ config: cfgB, model: mC, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, base, resume: ckB }).run();
  mC.release();
  return { full: full.losses, resumed: [...first.losses, ...rest.losses], ckDir: ckB.dir, baseDir };
}

test('a LoRA run trains the adapters only, saves them in PEFT format, and resumes bit for bit', async () => {
  const data = rows(8, 9, 5);
  const outA = tmp();
  try {
    const cfgA = config(outA, LORA);
    const mA = baseModel(LLAMA, cfgA);
    const baseBefore = mA.params.read('model.layers.0.self_attn.q_proj.weight');
    attachLoraFor(mA, cfgA, { checkpointDir: null, training: true });
    const full = await new Trainer({ config: cfgA, model: mA, train: new ArrayBatchSource(data, { batchSize: 2, seed: 0 }), assetsDir: null, base: { name_or_path: 'org/tiny', dir: '/nowhere' } }).run();
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
    assert.equal(ac['base_model_name_or_path'], 'org/tiny');
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
  } finally {
    rmSync(outA, { recursive: true, force: true });
  }
});

test('a LoRA checkpoint holds the adapter and a reference to its base, not the base; resume re-loads the base bit for bit', async () => {
  const work = tmp();
  try {
    const { full, resumed, ckDir, baseDir } = await stopAndResume(LORA, work);
    assert.deepEqual(resumed, full);
    // The adapter, its optimizer state, trainer state, generation config: no config.json, no base weights.
    assert.deepEqual(readdirSync(ckDir).sort(), ['adapter_config.json', 'adapter_model.safetensors', 'generation_config.json', 'optimizer', 'rank_0.json', 'sftkit.json', 'trainer_state.json']);
    const adapterBytes = statSync(join(ckDir, 'adapter_model.safetensors')).size;
    const baseBytes = statSync(join(baseDir, 'model.safetensors')).size;
    // adapter + 2 moments + JSON; the base alone is larger than all of it.
    assert.ok(dirSize(ckDir) < 3 * adapterBytes + 64 * 1024, `checkpoint ${dirSize(ckDir)} B, adapter ${adapterBytes} B`);
    assert.ok(dirSize(ckDir) < baseBytes, `checkpoint ${dirSize(ckDir)} B vs base ${baseBytes} B`);
    const manifest = JSON.parse(readFileSync(join(ckDir, 'sftkit.json'), 'utf8')) as { base_model: unknown };
    assert.deepEqual(manifest.base_model, { name_or_path: 'tiny-base', dir: baseDir });

    // Base gone: a FormatError naming the checkpoint and the missing base, with what to do.
    rmSync(baseDir, { recursive: true });
    const recorded = adapterCheckpointBase(ckDir) as NonNullable<ReturnType<typeof adapterCheckpointBase>>;
    assert.throws(
      () => baseDirOf(ckDir, recorded),
      (e: unknown) => e instanceof FormatError && e.message.includes(`base model tiny-base (${baseDir}) is missing`) && /put the base model back at .*--load_checkpoint/.test(e.hint ?? ''),
    );
    assert.throws(() => loadModel(ckDir), /no config.json \(a LoRA adapter without its base model\)/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('LoRA dropout 0.1: the masks\' RNG is saved with the checkpoint, so resume is bit-exact', async () => {
  const work = tmp();
  try {
    const { full, resumed, ckDir } = await stopAndResume({ ...LORA, dropout: 0.1 }, work);
    assert.deepEqual(resumed, full);
    const rank = JSON.parse(readFileSync(join(ckDir, 'rank_0.json'), 'utf8')) as { lora_rng?: { s: number[] }; rng: { s: number[] } };
    assert.ok(rank.lora_rng !== undefined && rank.lora_rng.s.length === 4);
    assert.notDeepEqual(rank.lora_rng.s, rank.rng.s);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

for (const [family, raw, targets] of [['llama', LLAMA, 'all-linear'], ['gpt2', GPT2, ['c_attn', 'c_proj', 'c_fc']]] as const) {
  test(`${family}: a PEFT adapter folder loads and merging it gives the logits of base + adapter (1e-5 rel)`, () => {
    const dir = tmp();
    try {
      const cfg = config(join(dir, 'out'), { rank: 2, alpha: 16, use_rslora: family === 'gpt2', target_modules: targets });
      const m = baseModel(raw, cfg);
      attachLoraFor(m, cfg, { checkpointDir: null, training: true });
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
    attachLoraFor(m, cfg, { checkpointDir: null, training: true });
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
      [variant('dora', (c) => { c['use_dora'] = true; }), /field "use_dora" is true: DoRA .* is not implemented in sftkit/],
      // PEFT features that change what the adapter computes: refused by name, never loaded as plain LoRA.
      [variant('lora_bias', (c) => { c['lora_bias'] = true; }), /field "lora_bias" is true: a bias on lora_B/],
      [variant('save', (c) => { c['modules_to_save'] = ['lm_head']; }), /field "modules_to_save" is \["lm_head"\]/],
      [variant('alora', (c) => { c['alora_invocation_tokens'] = [5, 6]; }), /field "alora_invocation_tokens"/],
      [variant('replicate', (c) => { c['layer_replication'] = [[0, 2]]; }), /field "layer_replication"/],
      [variant('bias', (c) => { c['bias'] = 'all'; }), /field "bias"/],
      // PEFT's layers_to_transform / exclude_modules are honoured: tensors of the layers or modules they leave out are refused.
      [variant('layers', (c) => { c['layers_to_transform'] = [0]; }), /tensor base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight belongs to no LoRA module/],
      [variant('exclude', (c) => { c['exclude_modules'] = 'model\\.layers\\.0\\..*'; }), /tensor base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight belongs to no LoRA module/],
      [variant('exclude_all', (c) => { c['exclude_modules'] = ['q_proj', 'v_proj', 'down_proj']; }), /adapter_config.json: lora.target_modules: "q_proj", "v_proj", "down_proj" match no linear module of this model \(after exclude_modules/],
      [variant('layers_type', (c) => { c['layers_to_transform'] = ['0']; }), /field "layers_to_transform"/],
      [variant('rank_pattern', (c) => { c['rank_pattern'] = { 'layers\\.0\\.self_attn\\.q_proj': 2 }; }), /q_proj.lora_A.weight has shape \[4, 16\], the model needs \[2, 16\]/],
      [variant('rank_regex', (c) => { c['rank_pattern'] = { '(q_proj': 2 }; }), /adapter_config.json: lora.rank_pattern: invalid regex/],
      [variant('rank_big', (c) => { c['rank_pattern'] = { v_proj: 12 }; }), /adapter_config.json: lora.rank 12 exceeds model.layers.0.self_attn.v_proj \(8×16\)/],
      [variant('rank_type', (c) => { c['rank_pattern'] = { v_proj: 2.5 }; }), /field "rank_pattern.v_proj"/],
      [variant('extra', () => {}, [{ name: 'base_model.model.model.embed_tokens.lora_embedding_A', shape: [4, 37] }]), /tensor base_model.model.model.embed_tokens.lora_embedding_A belongs to no LoRA module/],
      [variant('missing', () => {}, [{ name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', shape: [4, 16] }]), /tensor base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight is missing/],
    ];
    // Harmless fields PEFT writes (off, or about initialisation only), and fields of later PEFT versions: accepted.
    const harmless = variant('harmless', (c) => {
      Object.assign(c, { modules_to_save: [], lora_bias: false, use_dora: false, layers_to_transform: null, exclude_modules: null, loftq_config: {}, init_lora_weights: 'gaussian', megatron_config: null, some_future_field: { x: 1 } });
      // As PEFT: a listed name that matches nothing is let be in an adapter's config (a run's own config refuses it).
      c['target_modules'] = ['q_proj', 'v_proj', 'down_proj', 'query_key_value'];
    });
    const mh = fresh();
    try {
      loadAdapter(mh, harmless);
      assert.equal(mh.params.adapterNames.length, 12);
    } finally {
      mh.release();
    }
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

