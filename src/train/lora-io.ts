// LoRA adapters in and out of PEFT's files: adapter_config.json (PEFT's LoraConfig fields) and
// adapter_model.safetensors (`base_model.model.<module>.lora_A.weight`, A (r, in), B (out, r), fp32), so an
// adapter sftkit trains loads with PeftModel.from_pretrained and one PEFT wrote trains on, evaluates and
// predicts here. mergeLora folds W + s·B·A into the base weights (convert --merge_lora). modelFolderOf and
// loadModelFolder let every command that uses a model take a LoRA run's adapter-only checkpoint as the model.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, FormatError } from '../errors.ts';
import { type BaseModelRef, MANIFEST_FILE, hasTokenizerFiles, readJsonFile, readManifest } from '../formats/checkpoint-dir.ts';
import { confinedRealPath } from '../formats/confined-file.ts';
import { castFloat } from '../formats/dtypes.ts';
import { openSafetensors } from '../formats/safetensors.ts';
import { type WrittenFile, writeSafetensors, writeTextFile } from '../formats/safetensors-writer.ts';
import type { CausalLM } from '../models/model.ts';
import type { RunConfig } from './config.ts';
import { type LoadOptions, loadModel } from './model-io.ts';
import { type LoraModule, type LoraOptions, PEFT_PREFIX, attachLora, loraA, loraB, peftKey, planLora } from '../nn/lora.ts';
import { Rng } from '../tensor/index.ts';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** A folder holding a PEFT LoRA adapter. */
export function isAdapterDir(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG_FILE));
}

/** The fields of PEFT's LoraConfig sftkit reads; other fields PEFT writes are accepted and ignored (FEATURES_OFF aside). */
const adapterConfigSchema = z.looseObject({
  peft_type: z.literal('LORA'),
  r: z.int().positive(),
  lora_alpha: z.number().positive(),
  lora_dropout: z.number().min(0).lt(1).default(0),
  target_modules: z.union([z.array(z.string()).min(1), z.string()]),
  use_rslora: z.boolean().default(false),
  bias: z.literal('none').default('none'),
  fan_in_fan_out: z.boolean().default(false),
  base_model_name_or_path: z.string().nullable().optional(),
  rank_pattern: z.record(z.string(), z.int().positive()).nullable().optional(),
  alpha_pattern: z.record(z.string(), z.number().positive()).nullable().optional(),
  exclude_modules: z.union([z.array(z.string()), z.string()]).nullable().optional(),
  layers_to_transform: z.union([z.array(z.int().min(0)), z.int().min(0)]).nullable().optional(),
  layers_pattern: z.union([z.array(z.string()), z.string()]).nullable().optional(),
});

/**
 * Fields of PEFT's LoraConfig (0.21) that change what the adapter computes, or add weights other than LoRA's A
 * and B, which sftkit does not implement: an adapter that turns one on is refused naming it, rather than loaded
 * as plain LoRA and giving other outputs than PEFT. Off is absent, null, false, or an empty string, list or object.
 * Fields that only steer initialisation (init_lora_weights, loftq_config, eva_config, corda_config,
 * lora_ga_config), training (velora_config), or distribution (megatron_config) leave the saved A and B to mean
 * what they mean for plain LoRA, and are ignored.
 */
const FEATURES_OFF: readonly (readonly [field: string, what: string])[] = [
  ['use_dora', 'DoRA (weight-decomposed LoRA, a magnitude vector per module)'],
  ['lora_bias', 'a bias on lora_B'],
  ['modules_to_save', 'fully trained copies of other modules (modules_to_save)'],
  ['trainable_token_indices', 'trained embedding rows (trainable tokens)'],
  ['target_parameters', 'LoRA on parameters (target_parameters)'],
  ['layer_replication', 'layer replication'],
  ['alora_invocation_tokens', 'activated LoRA (alora_invocation_tokens)'],
  ['use_qalora', 'QA-LoRA'],
  ['use_bdlora', 'block-diagonal LoRA (use_bdlora)'],
  ['arrow_config', 'Arrow routing'],
  ['kasa_config', 'KaSA'],
  ['monteclora_config', 'MonteCLoRA'],
];

const isOff = (v: unknown): boolean =>
  v === undefined || v === null || v === false || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);

/** Reads and checks adapter_config.json: LoraOptions, or a FormatError naming the file and field. */
export function readAdapterConfig(dir: string): { options: LoraOptions; fanInFanOut: boolean; base: string | null } {
  const path = join(dir, ADAPTER_CONFIG_FILE);
  if (!existsSync(path)) throw new FormatError(`${dir}: no ${ADAPTER_CONFIG_FILE}`, { where: path, hint: 'pass a PEFT LoRA adapter folder' });
  const raw = readJsonFile(path);
  const parsed = adapterConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') ?? '';
    throw new FormatError(`${path}: field "${field}" ${issue?.message ?? 'is invalid'}`, { where: `${path}: ${field}`, hint: 'sftkit reads PEFT LoRA adapters (peft_type LORA, bias none)' });
  }
  for (const [field, what] of FEATURES_OFF) {
    if (!isOff(raw[field])) {
      throw new FormatError(`${path}: field "${field}" is ${JSON.stringify(raw[field])}: ${what} is not implemented in sftkit, which reads plain LoRA adapters`, {
        where: `${path}: ${field}`,
        hint: 'merge the adapter into its base with PEFT (merge_and_unload) and load the merged model, or train a plain LoRA adapter',
      });
    }
  }
  const c = parsed.data;
  // PEFT's per-module ranks and alphas and its selection beyond target_modules, where set.
  const extra = Object.fromEntries(
    (['rank_pattern', 'alpha_pattern', 'exclude_modules', 'layers_to_transform', 'layers_pattern'] as const).filter((f) => !isOff(c[f])).map((f) => [f, c[f]]),
  ) as Pick<LoraOptions, 'rank_pattern' | 'alpha_pattern' | 'exclude_modules' | 'layers_to_transform' | 'layers_pattern'>;
  return {
    options: { rank: c.r, alpha: c.lora_alpha, dropout: c.lora_dropout, target_modules: c.target_modules, use_rslora: c.use_rslora, ...extra, every_target_name: false },
    fanInFanOut: c.fan_in_fan_out,
    base: c.base_model_name_or_path ?? null,
  };
}

/** The modules an adapter's config adapts in `model`: a FormatError naming adapter_config.json when it does not fit. */
function planFor(model: CausalLM, dir: string, options: LoraOptions): LoraModule[] {
  try {
    return planLora(model.params, options, model.config.family === 'gpt2');
  } catch (err) {
    if (err instanceof ConfigError) throw new FormatError(`${join(dir, ADAPTER_CONFIG_FILE)}: ${err.message}`, { where: join(dir, ADAPTER_CONFIG_FILE), hint: 'the adapter was made for another base model' });
    throw err;
  }
}

/**
 * Reads adapter_model.safetensors in `dir`: exactly the tensors named in `expected` (sftkit names to shapes),
 * as fp32. A tensor that belongs to no expected module, a missing one, a wrong shape or a non-float dtype is
 * a FormatError naming the file and tensor.
 */
function readAdapterTensors(dir: string, expected: ReadonlyMap<string, readonly number[]>): Map<string, Float32Array> {
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(path)) throw new FormatError(`${dir}: no ${ADAPTER_WEIGHTS_FILE}`, { where: path });
  const file = openSafetensors(confinedRealPath(path));
  try {
    const keys = new Set([...expected.keys()].map(peftKey));
    for (const t of file.tensors) {
      // PEFT writes the adapter's name into the key only for a non-default adapter (`lora_A.<name>.weight`).
      if (!keys.has(t.name)) {
        throw new FormatError(`${path}: tensor ${t.name} belongs to no LoRA module of this model that ${join(dir, ADAPTER_CONFIG_FILE)} targets`, { where: `${path}: ${t.name}`, hint: 'the adapter was made for another base model, or holds more than LoRA A/B weights' });
      }
    }
    const out = new Map<string, Float32Array>();
    for (const [name, want] of expected) {
      const key = peftKey(name);
      const t = file.get(key);
      if (!t) throw new FormatError(`${path}: tensor ${key} is missing`, { where: `${path}: ${key}` });
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
        throw new FormatError(`${path}: tensor ${key} has shape [${t.shape.join(', ')}], the model needs [${want.join(', ')}] (its sizes and the rank ${join(dir, ADAPTER_CONFIG_FILE)} gives, r or rank_pattern)`, {
          where: `${path}: ${key}`,
          hint: 'the adapter was made for another base model, or its adapter_config.json does not match its weights',
        });
      }
      if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') throw new FormatError(`${path}: tensor ${key} has dtype ${t.dtype}, not a float`, { where: `${path}: ${key}` });
      const bytes = castFloat(file.read(key), t.dtype, 'F32');
      const aligned = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes);
      out.set(name, new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4).slice());
    }
    return out;
  } finally {
    file.close();
  }
}

/**
 * Attaches the adapter in `dir` to `model` (freezing its base) and loads A and B. Every adapter tensor must
 * belong to a module the config targets, with the shape the model implies: else a FormatError naming it.
 */
export function loadAdapter(model: CausalLM, dir: string, seed = 0): void {
  const { options } = readAdapterConfig(dir);
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(path)) throw new FormatError(`${dir}: no ${ADAPTER_WEIGHTS_FILE}`, { where: path });
  planFor(model, dir, options);
  attachLora(model.params, options, new Rng(seed), model.config.family === 'gpt2');
  const expected = new Map(model.params.adapterNames.map((name) => [name, model.params.shape(name)] as const));
  for (const [name, values] of readAdapterTensors(dir, expected)) model.params.load(name, values);
}

/** One module of an adapter read apart from the model: A (r, in) and B (out, r) with its scale. */
export interface AdapterModuleWeights {
  module: LoraModule;
  a: Float32Array;
  b: Float32Array;
}

/**
 * Reads the PEFT adapter in `dir` for `model` without attaching it (serving several adapters over one base):
 * checked as loadAdapter checks it (targets, ranks, every tensor's presence, shape and dtype).
 */
export function readAdapter(model: CausalLM, dir: string): { options: LoraOptions; modules: AdapterModuleWeights[] } {
  const { options } = readAdapterConfig(dir);
  const plan = planFor(model, dir, options);
  const expected = new Map<string, readonly number[]>();
  for (const m of plan) {
    expected.set(loraA(m.module), [m.rank, m.inFeatures]);
    expected.set(loraB(m.module), [m.outFeatures, m.rank]);
  }
  const tensors = readAdapterTensors(dir, expected);
  return { options, modules: plan.map((m) => ({ module: m, a: tensors.get(loraA(m.module)) as Float32Array, b: tensors.get(loraB(m.module)) as Float32Array })) };
}

/** PEFT's adapter_config.json for the adapters of `model`. */
export function adapterConfigOf(model: CausalLM, base: string | null): Record<string, unknown> {
  const lora = model.params.lora;
  if (!lora) throw new ConfigError('the model has no LoRA adapters', { where: 'lora' });
  const o = lora.options;
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: base,
    r: o.rank,
    lora_alpha: o.alpha,
    lora_dropout: o.dropout,
    target_modules: o.target_modules,
    use_rslora: o.use_rslora,
    bias: 'none',
    fan_in_fan_out: model.config.family === 'gpt2',
    init_lora_weights: true,
    inference_mode: false,
    modules_to_save: null,
    exclude_modules: o.exclude_modules ?? null,
    layers_to_transform: o.layers_to_transform ?? null,
    layers_pattern: o.layers_pattern ?? null,
    use_dora: false,
    rank_pattern: o.rank_pattern ?? {},
    alpha_pattern: o.alpha_pattern ?? {},
  };
}

/** Writes adapter_config.json and adapter_model.safetensors (fp32, PEFT's keys) into `dir`. */
export function writeAdapterFiles(dir: string, model: CausalLM, base: string | null): WrittenFile[] {
  const names = model.params.adapterNames;
  const specs = names.map((name) => ({ name: peftKey(name), dtype: 'F32' as const, shape: [...model.params.shape(name)] }));
  const weights = writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), specs, (spec) => {
    const a = model.params.read(spec.name.slice(PEFT_PREFIX.length));
    return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  });
  const cfg = writeTextFile(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(adapterConfigOf(model, base), null, 2)}\n`, () => ADAPTER_CONFIG_FILE);
  return [{ ...weights, name: ADAPTER_WEIGHTS_FILE }, cfg];
}

/**
 * Folds every adapter into its base weight, W + s·B·A (Conv1D: W + s·(B·A)ᵀ), computed in float64 and
 * stored back into the frozen store, and detaches LoRA: the model is then a plain one (its `names`).
 */
export function mergeLora(model: CausalLM): void {
  const lora = model.params.lora;
  if (!lora) throw new ConfigError('the model has no LoRA adapters to merge', { where: 'merge_lora' });
  for (const m of lora.modules.values()) {
    const A = model.params.read(loraA(m.module));
    const B = model.params.read(loraB(m.module));
    const wName = `${m.module}.weight`;
    const W = model.params.read(wName);
    const r = m.rank;
    const { inFeatures: nin, outFeatures: nout } = m;
    for (let o = 0; o < nout; o++) {
      for (let i = 0; i < nin; i++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += (B[o * r + k] as number) * (A[k * nin + i] as number);
        const at = m.fanInFanOut ? i * nout + o : o * nin + i;
        W[at] = (W[at] as number) + m.scale * d;
      }
    }
    model.params.load(wName, W);
  }
  model.params.lora = null;
}

/** The base a LoRA run's checkpoint refers to (sftkit.json's base_model) when it holds only its adapter, else null. */
export function adapterCheckpointBase(dir: string): BaseModelRef | null {
  if (!isAdapterDir(dir) || !existsSync(join(dir, MANIFEST_FILE))) return null;
  return readManifest(dir).base_model ?? null;
}

/** An adapter folder as PEFT's save_pretrained writes it: adapter files, and neither sftkit.json nor meta.json. */
export function isPeftFolder(dir: string): boolean {
  return isAdapterDir(dir) && !existsSync(join(dir, MANIFEST_FILE)) && !existsSync(join(dir, 'meta.json'));
}

/**
 * The base of an adapter folder PEFT (or anyone) wrote, without sftkit.json: adapter_config.json's
 * base_model_name_or_path, which must be a local model folder (a path relative to the working directory, as
 * PEFT reads it); sftkit does not download it. Else a FormatError naming the field.
 */
export function peftAdapterBase(dir: string): BaseModelRef {
  const path = join(dir, ADAPTER_CONFIG_FILE);
  const { base } = readAdapterConfig(dir);
  if (base === null || base === '') {
    throw new FormatError(`${path}: field "base_model_name_or_path" is empty: the adapter names no base model to fold it into`, {
      where: `${path}: base_model_name_or_path`,
      hint: 'set base_model_name_or_path to the local folder of its base model',
    });
  }
  const baseDir = resolve(base);
  if (!existsSync(join(baseDir, 'config.json'))) {
    throw new FormatError(`${path}: field "base_model_name_or_path" is ${JSON.stringify(base)}, which is not a local model folder (no config.json at ${baseDir}); sftkit does not download it`, {
      where: `${path}: base_model_name_or_path`,
      hint: 'download the base model (sftkit download) and set base_model_name_or_path to its folder',
    });
  }
  return { name_or_path: base, dir: baseDir };
}

/**
 * The folder to load the frozen base of an adapter-only checkpoint from: the one it records, which must still
 * hold a model; else a FormatError naming it. `elsewhere`: how the caller can name another copy of the base.
 */
export function baseDirOf(checkpointDir: string, base: BaseModelRef, elsewhere = 'pass --load_checkpoint naming the same base model'): string {
  if (existsSync(join(base.dir, 'config.json'))) return base.dir;
  const named = base.name_or_path === base.dir ? base.dir : `${base.name_or_path} (${base.dir})`;
  throw new FormatError(`${checkpointDir}: its base model ${named} is missing (no config.json there); a LoRA checkpoint holds only the adapter`, {
    where: join(checkpointDir, MANIFEST_FILE),
    hint: `put the base model back at ${base.dir}, or ${elsewhere}`,
  });
}

/** Whether a run config asks for LoRA (new adapters by lora.rank, or a PEFT adapter by lora.adapter). */
export function loraOn(cfg: Pick<RunConfig, 'lora'>): boolean {
  return cfg.lora.rank > 0 || cfg.lora.adapter !== '';
}

/**
 * The adapters of a run: those of the checkpoint it resumes or loads (adapter_config.json in it), else
 * lora.adapter (a PEFT folder, for any run mode), else new ones when training with lora.rank > 0. A model
 * without any stays as it is.
 */
export function attachLoraFor(model: CausalLM, cfg: Pick<RunConfig, 'lora' | 'seed'> & { model?: { recompute: boolean } }, at: { checkpointDir: string | null; training: boolean }): void {
  if (at.checkpointDir !== null && isAdapterDir(at.checkpointDir)) loadAdapter(model, at.checkpointDir, cfg.seed);
  else if (cfg.lora.adapter !== '') loadAdapter(model, cfg.lora.adapter, cfg.seed);
  else if (at.training && cfg.lora.rank > 0) {
    const { adapter: _adapter, ...options } = cfg.lora;
    attachLora(model.params, options, new Rng(cfg.seed), model.config.family === 'gpt2');
  }
}

/**
 * A folder a command uses as a model: a model of its own (config.json and weights), or a LoRA run's checkpoint
 * holding only its adapter, used over the base its sftkit.json records.
 */
export interface ModelFolder {
  /** The folder named: the generation config and the template recorded with the training data come from here. */
  dir: string;
  /** Where config.json and the weights are: `dir`, or the recorded base of an adapter-only checkpoint. */
  weightsDir: string;
  /** The tokenizer files: `dir`'s (a LoRA checkpoint carries its base's), else the base's. */
  tokenizerDir: string;
  /** The LoRA checkpoint (`dir`) whose adapter goes over weightsDir; null for a plain model. */
  adapterDir: string | null;
  /** The base as the checkpoint records it (name_or_path: what the run's --load_checkpoint said); null where it records none. */
  base: BaseModelRef | null;
}

/** How a command without a flag for it can use a LoRA checkpoint whose base has moved. */
const COPY_NAMING_BASE = "copy the checkpoint and set base_model.dir in the copy's sftkit.json to another copy of the base";

/** The hint of commands that take --base_model (chat, serve, convert). */
export const BASE_MODEL_FLAG_HINT = 'pass --base_model DIR naming another copy of the base';

/**
 * What the model folder `dir` holds. A LoRA run's adapter-only checkpoint resolves to its recorded base, which
 * must still be there: else a FormatError naming the checkpoint and the missing base, its hint ending in
 * `elsewhere` (how the command can name another copy of the base). `baseModel` (a command's --base_model): the
 * local folder of the base to use instead of the recorded one (a LoRA checkpoint or a PEFT adapter folder only;
 * the adapter is still checked against it when loaded).
 */
export function modelFolderOf(dir: string, elsewhere = COPY_NAMING_BASE, baseModel: string | null = null): ModelFolder {
  if (baseModel !== null) return adapterOver(dir, overridingBase(dir, baseModel));
  // An adapter saved by PEFT (save_pretrained): its base is adapter_config.json's base_model_name_or_path, a local folder.
  if (isPeftFolder(dir)) return adapterOver(dir, peftAdapterBase(dir));
  const base = adapterCheckpointBase(dir);
  if (base === null) {
    // A LoRA run whose base has no folder to refer to (model.arch, a MindSpore .ckpt) stores the base's weights
    // beside its adapter: both are the model.
    const both = isAdapterDir(dir) && existsSync(join(dir, MANIFEST_FILE));
    return { dir, weightsDir: dir, tokenizerDir: dir, adapterDir: both ? dir : null, base: null };
  }
  return adapterOver(dir, { ...base, dir: baseDirOf(dir, base, elsewhere) });
}

/** The adapter in `dir` over the model folder `base.dir` (tokenizer files: the adapter's own, else the base's). */
function adapterOver(dir: string, base: BaseModelRef): ModelFolder {
  return { dir, weightsDir: base.dir, tokenizerDir: hasTokenizerFiles(dir) ? dir : base.dir, adapterDir: dir, base };
}

/** --base_model for the LoRA checkpoint or PEFT folder `dir`: a local model folder, else a ConfigError. */
function overridingBase(dir: string, baseModel: string): BaseModelRef {
  const own = !isPeftFolder(dir) && adapterCheckpointBase(dir) === null;
  if (own) {
    const what = isAdapterDir(dir) ? "a LoRA checkpoint that holds its base's weights itself" : 'a model of its own, not a LoRA checkpoint';
    throw new ConfigError(`--base_model ${baseModel}: ${dir} is ${what}`, { where: '--base_model', hint: 'drop --base_model' });
  }
  const baseDir = resolve(baseModel);
  if (!existsSync(join(baseDir, 'config.json'))) {
    throw new ConfigError(`--base_model ${baseModel}: no model there (no config.json in ${baseDir})`, { where: '--base_model', hint: 'name the local folder of the base model the adapter was trained on' });
  }
  return { name_or_path: baseModel, dir: baseDir };
}

/**
 * The model of a folder: its own weights, or the base of an adapter-only checkpoint with the adapter attached,
 * as `run --run_mode predict --load_checkpoint <checkpoint>` loads it (so both generate the same tokens).
 */
export function loadModelFolder(folder: ModelFolder, seed = 0, opts: LoadOptions = {}): CausalLM {
  const model = loadModel(folder.weightsDir, seed, opts);
  if (folder.adapterDir === null) return model;
  try {
    loadAdapter(model, folder.adapterDir, seed);
  } catch (err) {
    model.release();
    throw err;
  }
  return model;
}
