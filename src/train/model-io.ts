// Models in and out of checkpoint directories: build a CausalLM from config.json (+ weights, any HF
// layout, checked against the architecture), and write a model checkpoint of its current parameters.
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';
import { TOKENIZER_FILES, copyInto, readSourceDtype, writeManifest } from '../formats/checkpoint-dir.ts';
import { confinedRealPath } from '../formats/confined-file.ts';
import { type WeightDtype, castFloat } from '../formats/dtypes.ts';
import { writeSafetensorsSharded, writeTextFile, type WrittenFile } from '../formats/safetensors-writer.ts';
import { planConversion } from '../formats/weight-plan.ts';
import { openWeightSource, type WeightSource } from '../formats/weight-source.ts';
import { type ModelConfig, readModelConfig } from '../models/config.ts';
import { expectedTensors } from '../models/tensor-table.ts';
import { Gpt2 } from '../models/gpt2.ts';
import { Llama } from '../models/llama.ts';
import type { CausalLM } from '../models/model.ts';
import { frozenBytesOf, quantizable } from '../nn/frozen-store.ts';
import type { WeightOptions } from '../nn/parameters.ts';
import { type FlatLayout, Storage, dtypeBytes, numel } from '../tensor/index.ts';
import type { ComputeBackend } from '../backend/compute.ts';
import { type ProcessGroup, ShardedParameters } from '../distributed/index.ts';
import type { RunConfig } from './config.ts';
import { frozenSet } from './freeze.ts';

/**
 * Which weights a run freezes and how it stores them: `freeze` and `model.base_dtype` of the run config (a LoRA
 * run freezes every base weight: its adapters are the trainable ones); at `parallel_config.zero_stage` 2 no full
 * gradient buffer is made (the gradients live in shards); at stage 3, given the run's process group, no full
 * trainable weight buffer either (each rank holds and loads its shard).
 */
export function weightOptionsOf(
  cfg: Pick<RunConfig, 'freeze' | 'model'> & Partial<Pick<RunConfig, 'lora'>> & { parallel_config?: { zero_stage: number } },
  names: readonly string[],
  pg?: ProcessGroup,
): WeightOptions {
  const lora = cfg.lora !== undefined && (cfg.lora.rank > 0 || cfg.lora.adapter !== '');
  const frozen = lora ? new Set(names) : frozenSet(names, cfg.freeze);
  const stage = cfg.parallel_config?.zero_stage ?? 0;
  // Stage 3 on several ranks: each rank allocates and loads only its part of the trainable weights.
  const shard = stage === 3 && !lora && pg && pg.size > 1
    ? { shard: { worldSize: pg.size, make: (layout: FlatLayout, backend: ComputeBackend) => new ShardedParameters({ layout, backend }, pg) } }
    : {};
  return { frozen: (n) => frozen.has(n), frozenDtype: cfg.model.base_dtype, gradients: stage < 2, ...shard };
}

export function createModel(config: ModelConfig, seed: number, weights: WeightOptions = {}): CausalLM {
  // A config whose weights alone exceed this machine's memory is refused before the allocation (it would
  // otherwise end in a native out-of-memory abort naming nothing). Frozen weights count at their dtype.
  const frozen = weights.frozen ?? (() => false);
  const frozenDtype = weights.frozenDtype ?? 'float32';
  const bytes = expectedTensors(config)
    .filter((t) => t.optional !== 'tied')
    .reduce((n, t) => n + (frozen(t.name) ? frozenBytesOf(t.name, t.shape, frozenDtype) : (numel(t.shape) * 4) / (weights.shard?.worldSize ?? 1)), 0);
  const params = expectedTensors(config).reduce((n, t) => n + numel(t.shape), 0);
  if (bytes > totalmem()) {
    throw new ConfigError(`the model of config.json needs ${(bytes / 2 ** 30).toFixed(1)} GiB for its ${params} fp32 parameters${weights.frozen && weights.frozenDtype !== undefined && weights.frozenDtype !== 'float32' ? ` (frozen ones in ${weights.frozenDtype})` : ''}; this machine has ${(totalmem() / 2 ** 30).toFixed(1)} GiB`, {
      where: 'config.json',
      hint: 'check num_hidden_layers, hidden_size, intermediate_size and vocab_size',
    });
  }
  return config.family === 'llama' ? new Llama(config, { seed, weights }) : new Gpt2(config, { seed, weights });
}

export interface LoadOptions {
  /** Frozen weights and their dtype (weightOptionsOf); default: everything trainable. */
  weights?: (names: readonly string[]) => WeightOptions;
  /**
   * Map frozen weights from the checkpoint's safetensors instead of copying them, where the stored dtype is
   * the frozen dtype and the offset is aligned to it (default true): their pages are the file's, read on use.
   */
  mapFrozen?: boolean;
}

const SAFETENSORS_DTYPE: Record<'float32' | 'bfloat16', WeightDtype> = { float32: 'F32', bfloat16: 'BF16' };

/** A model from a folder holding config.json and weights (a sftkit model checkpoint or an HF folder). */
export function loadModel(dir: string, seed = 0, opts: LoadOptions = {}): CausalLM {
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) {
    // A LoRA run's checkpoint holds its adapter and refers to its base (sftkit.json's base_model).
    const adapter = existsSync(join(dir, 'adapter_config.json'));
    throw new ConfigError(`${dir}: no config.json${adapter ? ' (a LoRA adapter without its base model)' : ''}`, {
      where: cfgPath,
      hint: adapter
        ? 'load its base model and pass this folder as the adapter (run: --lora.adapter DIR; serve: --adapter NAME=DIR)'
        : 'pass a model checkpoint (sftkit convert) or an HF model folder',
    });
  }
  // readModelConfig opens it by path: refuse a config.json that links out of the folder before it does.
  confinedRealPath(cfgPath);
  // A training checkpoint's config.json says float32 (what it stores); the dtype the weights were published in
  // comes from its sftkit.json, so the next checkpoint carries it on and `convert --reversed` writes it back.
  const read = readModelConfig(cfgPath);
  const config: ModelConfig = { ...read, torchDtype: readSourceDtype(dir) ?? read.torchDtype };
  return loadModelFrom(config, openWeightSource(dir), seed, opts);
}

/**
 * A model of `config` with the weights of `source` (any WeightSource with HF names: an HF folder, or a
 * MindSpore .ckpt read through its name table); the source is closed when done.
 */
export function loadModelFrom(config: ModelConfig, source: WeightSource, seed = 0, opts: LoadOptions = {}): CausalLM {
  let model: CausalLM | null = null;
  try {
    // Every weight present with the shape config.json implies before anything is allocated: a config of
    // 4,000 layers next to the weights of 2 must fail here, not after a 12 GB allocation.
    const plan = planConversion(config, source.tensors, source.dir);
    const weights = opts.weights?.(expectedTensors(config).filter((t) => t.optional !== 'tied').map((t) => t.name)) ?? {};
    // Every weight is written below: no random initialisation.
    model = createModel(config, seed, { ...weights, initialise: false });
    const params = model.params;
    const mappings = new Map<string, Storage>();
    for (const t of plan.tensors) {
      const at = opts.mapFrozen !== false && params.isFrozen(t.name) ? source.locate(t.source) : null;
      // Dense frozen weights map when the file holds them in the store's dtype; under an nf4/int8 store the
      // weights that are not quantized (embeddings, norms) are bfloat16 and map as such.
      const store = params.frozen.dtype;
      const dtype = store === 'float32' || store === 'bfloat16' ? store : quantizable(t.name, t.shape) ? null : 'bfloat16';
      if (at && dtype && t.dtype === SAFETENSORS_DTYPE[dtype] && at.begin % dtypeBytes(dtype) === 0) {
        let file = mappings.get(at.path);
        if (!file) {
          file = Storage.mmap(confinedRealPath(at.path));
          mappings.set(at.path, file);
        }
        params.frozen.map(t.name, t.shape, file, at.begin, dtype);
        continue;
      }
      const data = castFloat(source.read(t.source), t.dtype, 'F32');
      // A Float32Array view needs a 4-byte-aligned offset; bytes read at an odd place are copied first (into a
      // new Uint8Array: a Buffer's slice() would be a view at the same odd place).
      const aligned = data.byteOffset % 4 === 0 ? data : new Uint8Array(data);
      params.load(t.name, new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4));
    }
    return model;
  } catch (err) {
    model?.release();
    throw err;
  } finally {
    source.close();
  }
}

/** sftkit.json's source_dtype for a checkpoint of `model`: the torch_dtype its weights were published in, when known. */
export function sourceDtypeOf(model: CausalLM): { source_dtype?: string } {
  return model.config.torchDtype === null ? {} : { source_dtype: model.config.torchDtype };
}

/** Writes config.json, generation_config.json, model.safetensors (fp32) and tokenizer files into `dir`. */
export function writeModelFiles(dir: string, model: CausalLM, opts: { assetsDir: string | null; maxShardBytes?: number }): WrittenFile[] {
  const names = model.params.names;
  const specs = names.map((name) => ({ name, dtype: 'F32' as const, shape: [...model.params.shape(name)] }));
  const files = writeSafetensorsSharded(
    dir,
    specs,
    (spec) => {
      // Frozen weights too, widened to fp32: a checkpoint is always the whole model in one dtype.
      const a = model.params.read(spec.name);
      return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    },
    { maxShardBytes: opts.maxShardBytes ?? 5e9 },
  );
  files.push(writeTextFile(join(dir, 'config.json'), `${JSON.stringify({ ...model.config.raw, torch_dtype: 'float32' }, null, 2)}\n`, () => 'config.json'));
  files.push(...writeAssetFiles(dir, model, opts.assetsDir));
  return files;
}

/**
 * Writes generation_config.json and the tokenizer files (copied from `assetsDir` when it has them) into `dir`:
 * the part of a model checkpoint that is not the model (a LoRA checkpoint holds these beside its adapter).
 */
export function writeAssetFiles(dir: string, model: CausalLM, assetsDir: string | null): WrittenFile[] {
  const files: WrittenFile[] = [];
  const cfg = model.config;
  const genSrc = assetsDir ? join(assetsDir, 'generation_config.json') : null;
  if (genSrc && existsSync(genSrc)) {
    files.push(copyInto(genSrc, dir));
  } else {
    const gen: Record<string, unknown> = { _from_model_config: true };
    if (cfg.bosTokenId !== null) gen['bos_token_id'] = cfg.bosTokenId;
    if (cfg.eosTokenIds.length > 0) gen['eos_token_id'] = cfg.eosTokenIds.length === 1 ? cfg.eosTokenIds[0] : cfg.eosTokenIds;
    if (cfg.padTokenId !== null) gen['pad_token_id'] = cfg.padTokenId;
    files.push(writeTextFile(join(dir, 'generation_config.json'), `${JSON.stringify(gen, null, 2)}\n`, () => 'generation_config.json'));
  }
  if (assetsDir) {
    for (const name of TOKENIZER_FILES) {
      if (existsSync(join(assetsDir, name))) files.push(copyInto(join(assetsDir, name), dir));
    }
  }
  return files;
}

/** Writes a complete model checkpoint (the files above plus sftkit.json) into an existing empty `dir`. */
export function writeModelCheckpoint(dir: string, model: CausalLM, opts: { assetsDir: string | null; source: { path: string; format: string } }): void {
  const files = writeModelFiles(dir, model, opts);
  writeManifest(dir, { model_type: model.config.modelType, dtype: 'float32', ...sourceDtypeOf(model), source: opts.source }, files);
}

