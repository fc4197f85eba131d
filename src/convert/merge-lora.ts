// `sftkit convert --reversed --merge_lora`: a checkpoint of a LoRA run (PEFT adapter files and the base they name),
// or an adapter folder PEFT wrote (its base: adapter_config.json's base_model_name_or_path, a local folder) ->
// a plain HF folder whose weights are W + s·B·A (train/lora-io.ts's mergeLora), which any HF loader reads
// without PEFT. The merged model is written as a sftkit model checkpoint beside the output first, then
// exported by the ordinary --reversed path (same dtype rules, shards and tokenizer files), then removed.
// GGUF and MindSpore export read an adapter-only checkpoint through exportSourceOf: the same merge, in memory.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, FormatError } from '../errors.ts';
import { resolveCheckpointDir } from '../formats/checkpoint-dir.ts';
import { type WeightSource, type WeightTensor, openWeightSource } from '../formats/weight-source.ts';
import { type ModelConfig, readModelConfig } from '../models/config.ts';
import type { CausalLM } from '../models/model.ts';
import { BASE_MODEL_FLAG_HINT, type ModelFolder, isAdapterDir, isPeftFolder, loadModelFolder, mergeLora, modelFolderOf } from '../train/lora-io.ts';
import { writeModelCheckpoint } from '../train/model-io.ts';
import { convertCheckpointToHf } from './checkpoint-to-hf.ts';
import { type ConvertOptions, type ConvertReport, checkInputDir } from './hf-to-checkpoint.ts';

/** o.baseModel: the base model folder to merge into, instead of the one the checkpoint records (--base_model). */
export async function convertMergedLoraToHf(o: Omit<ConvertOptions, 'model'> & { baseModel?: string }): Promise<ConvertReport> {
  // An adapter folder without sftkit.json (PEFT's save_pretrained) is taken as it is.
  const dir = isPeftFolder(o.inputPath) ? o.inputPath : resolveCheckpointDir(o.inputPath);
  if (!isAdapterDir(dir)) {
    throw new ConfigError(`--merge_lora: ${dir} holds no LoRA adapter (adapter_config.json)`, { where: '--merge_lora', hint: 'pass the checkpoint of a LoRA run, or drop --merge_lora' });
  }
  // A LoRA run's checkpoint holds the adapter and names its base (sftkit.json's base_model), a PEFT folder in
  // adapter_config.json's base_model_name_or_path; an older checkpoint holds both.
  const folder = modelFolderOf(dir, BASE_MODEL_FLAG_HINT, o.baseModel ?? null);
  const tmp = `${o.outputPath}.merge-tmp`;
  const model = loadModelFolder({ ...folder, adapterDir: dir });
  try {
    mergeLora(model);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    writeModelCheckpoint(tmp, model, { assetsDir: folder.tokenizerDir, source: { path: dir, format: 'sftkit-lora-merged' } });
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    model.release();
  }
  try {
    return await convertCheckpointToHf({ ...o, inputPath: tmp });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The weights of a model in memory as a WeightSource (fp32, HF names); closing it releases the model. */
function modelWeightSource(model: CausalLM, dir: string): WeightSource {
  const tensors: WeightTensor[] = model.params.names.map((name) => ({ name, dtype: 'F32', shape: [...model.params.shape(name)], file: '(merged in memory)' }));
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    dir,
    format: 'merged',
    tensors,
    get: (name) => byName.get(name),
    read(name) {
      if (!byName.has(name)) throw new FormatError(`${dir}: the merged model has no tensor ${name}`, { where: `${dir}: ${name}` });
      const a = model.params.read(name);
      return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    },
    locate: () => null,
    close: () => model.release(),
  };
}

/**
 * The config and weights an exporter streams from the model folder `dir`: its own, or, for a LoRA run's
 * adapter-only checkpoint, its recorded base with the adapter folded in (W + s·B·A, mergeLora as --merge_lora
 * computes it), held in memory in fp32; `baseModel` (--base_model) replaces the recorded base. The caller closes
 * the source.
 */
export function exportSourceOf(dir: string, baseModel: string | null = null): { folder: ModelFolder; cfg: ModelConfig; source: WeightSource } {
  const folder = modelFolderOf(dir, BASE_MODEL_FLAG_HINT, baseModel);
  if (folder.adapterDir === null) {
    checkInputDir(dir);
    return { folder, cfg: readModelConfig(join(dir, 'config.json')), source: openWeightSource(dir) };
  }
  const model = loadModelFolder(folder);
  try {
    mergeLora(model);
  } catch (err) {
    model.release();
    throw err;
  }
  return { folder, cfg: model.config, source: modelWeightSource(model, dir) };
}
