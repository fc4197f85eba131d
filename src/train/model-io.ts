// Models in and out of checkpoint directories: build a CausalLM from config.json (+ weights, any HF
// layout, checked against the architecture), and write a model checkpoint of its current parameters.
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';
import { TOKENIZER_FILES, copyInto, writeManifest } from '../formats/checkpoint-dir.ts';
import { confinedRealPath } from '../formats/confined-file.ts';
import { castFloat } from '../formats/dtypes.ts';
import { writeSafetensorsSharded, writeTextFile, type WrittenFile } from '../formats/safetensors-writer.ts';
import { planConversion } from '../formats/weight-plan.ts';
import { openWeightSource, type WeightSource } from '../formats/weight-source.ts';
import { type ModelConfig, readModelConfig } from '../models/config.ts';
import { expectedTensors } from '../models/tensor-table.ts';
import { Gpt2 } from '../models/gpt2.ts';
import { Llama } from '../models/llama.ts';
import type { CausalLM } from '../models/model.ts';
import { loadInto } from '../tensor/index.ts';

export function createModel(config: ModelConfig, seed: number): CausalLM {
  // Parameters are fp32; a config whose weights alone exceed this machine's memory is refused before the
  // allocation (it would otherwise end in a native out-of-memory abort naming nothing).
  const params = expectedTensors(config).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  if (params * 4 > totalmem()) {
    throw new ConfigError(`the model of config.json needs ${(params * 4 / 2 ** 30).toFixed(1)} GiB for its ${params} fp32 parameters; this machine has ${(totalmem() / 2 ** 30).toFixed(1)} GiB`, {
      where: 'config.json',
      hint: 'check num_hidden_layers, hidden_size, intermediate_size and vocab_size',
    });
  }
  return config.family === 'llama' ? new Llama(config, { seed }) : new Gpt2(config, { seed });
}

/** A model from a folder holding config.json and weights (a sftkit model checkpoint or an HF folder). */
export function loadModel(dir: string, seed = 0): CausalLM {
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw new ConfigError(`${dir}: no config.json`, { where: cfgPath, hint: 'pass a model checkpoint (sftkit convert) or an HF model folder' });
  // readModelConfig opens it by path: refuse a config.json that links out of the folder before it does.
  confinedRealPath(cfgPath);
  const config = readModelConfig(cfgPath);
  return loadModelFrom(config, openWeightSource(dir), seed);
}

/**
 * A model of `config` with the weights of `source` (any WeightSource with HF names: an HF folder, or a
 * MindSpore .ckpt read through its name table); the source is closed when done.
 */
export function loadModelFrom(config: ModelConfig, source: WeightSource, seed = 0): CausalLM {
  let model: CausalLM | null = null;
  try {
    // Every weight present with the shape config.json implies before anything is allocated: a config of
    // 4,000 layers next to the weights of 2 must fail here, not after a 12 GB allocation.
    const plan = planConversion(config, source.tensors, source.dir);
    model = createModel(config, seed);
    for (const t of plan.tensors) {
      const data = castFloat(source.read(t.source), t.dtype, 'F32');
      // A Float32Array view needs a 4-byte-aligned offset; bytes read at an odd place are copied first (into a
      // new Uint8Array: a Buffer's slice() would be a view at the same odd place).
      const aligned = data.byteOffset % 4 === 0 ? data : new Uint8Array(data);
      loadInto(model.params.get(t.name), new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4));
    }
    return model;
  } catch (err) {
    model?.release();
    throw err;
  } finally {
    source.close();
  }
}

/** Writes config.json, generation_config.json, model.safetensors (fp32) and tokenizer files into `dir`. */
export function writeModelFiles(dir: string, model: CausalLM, opts: { assetsDir: string | null; maxShardBytes?: number }): WrittenFile[] {
  const names = model.params.names;
  const specs = names.map((name) => ({ name, dtype: 'F32' as const, shape: [...model.params.get(name).shape] }));
  const files = writeSafetensorsSharded(
    dir,
    specs,
    (spec) => {
      const a = model.params.get(spec.name).toArray() as Float32Array;
      return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    },
    { maxShardBytes: opts.maxShardBytes ?? 5e9 },
  );
  const cfg = model.config;
  files.push(writeTextFile(join(dir, 'config.json'), `${JSON.stringify({ ...cfg.raw, torch_dtype: 'float32' }, null, 2)}\n`, () => 'config.json'));
  const genSrc = opts.assetsDir ? join(opts.assetsDir, 'generation_config.json') : null;
  if (genSrc && existsSync(genSrc)) {
    files.push(copyInto(genSrc, dir));
  } else {
    const gen: Record<string, unknown> = { _from_model_config: true };
    if (cfg.bosTokenId !== null) gen['bos_token_id'] = cfg.bosTokenId;
    if (cfg.eosTokenIds.length > 0) gen['eos_token_id'] = cfg.eosTokenIds.length === 1 ? cfg.eosTokenIds[0] : cfg.eosTokenIds;
    if (cfg.padTokenId !== null) gen['pad_token_id'] = cfg.padTokenId;
    files.push(writeTextFile(join(dir, 'generation_config.json'), `${JSON.stringify(gen, null, 2)}\n`, () => 'generation_config.json'));
  }
  if (opts.assetsDir) {
    for (const name of TOKENIZER_FILES) {
      if (existsSync(join(opts.assetsDir, name))) files.push(copyInto(join(opts.assetsDir, name), dir));
    }
  }
  return files;
}

/** Writes a complete model checkpoint (the files above plus sftkit.json) into an existing empty `dir`. */
export function writeModelCheckpoint(dir: string, model: CausalLM, opts: { assetsDir: string | null; source: { path: string; format: string } }): void {
  const files = writeModelFiles(dir, model, opts);
  writeManifest(dir, { model_type: model.config.modelType, dtype: 'float32', source: opts.source }, files);
}

