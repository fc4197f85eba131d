// `sftkit convert --reversed --merge_lora`: a checkpoint of a LoRA run (PEFT adapter files and the base they name),
// or an adapter folder PEFT wrote (its base: adapter_config.json's base_model_name_or_path, a local folder) ->
// a plain HF folder whose weights are W + s·B·A (train/lora-io.ts's mergeLora), which any HF loader reads
// without PEFT. The merged model is written as a sftkit model checkpoint beside the output first, then
// exported by the ordinary --reversed path (same dtype rules, shards and tokenizer files), then removed.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';
import { MANIFEST_FILE, resolveCheckpointDir } from '../formats/checkpoint-dir.ts';
import { adapterCheckpointBase, baseDirOf, isAdapterDir, loadAdapter, mergeLora, peftAdapterBase } from '../train/lora-io.ts';
import { loadModel, writeModelCheckpoint } from '../train/model-io.ts';
import { convertCheckpointToHf } from './checkpoint-to-hf.ts';
import type { ConvertOptions, ConvertReport } from './hf-to-checkpoint.ts';

export async function convertMergedLoraToHf(o: Omit<ConvertOptions, 'model'>): Promise<ConvertReport> {
  // An adapter folder without sftkit.json (PEFT's save_pretrained) is taken as it is.
  const peftFolder = isAdapterDir(o.inputPath) && !existsSync(join(o.inputPath, MANIFEST_FILE)) && !existsSync(join(o.inputPath, 'meta.json'));
  const dir = peftFolder ? o.inputPath : resolveCheckpointDir(o.inputPath);
  if (!isAdapterDir(dir)) {
    throw new ConfigError(`--merge_lora: ${dir} holds no LoRA adapter (adapter_config.json)`, { where: '--merge_lora', hint: 'pass the checkpoint of a LoRA run, or drop --merge_lora' });
  }
  // A LoRA run's checkpoint holds the adapter and names its base (sftkit.json's base_model); an older one holds both.
  const base = peftFolder ? peftAdapterBase(dir) : adapterCheckpointBase(dir);
  const baseDir = base ? baseDirOf(dir, base, 'merge from a copy of the checkpoint whose sftkit.json base_model.dir names the base') : dir;
  const tmp = `${o.outputPath}.merge-tmp`;
  const model = loadModel(baseDir, 0);
  try {
    loadAdapter(model, dir);
    mergeLora(model);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    writeModelCheckpoint(tmp, model, { assetsDir: base ? baseDir : dir, source: { path: dir, format: 'sftkit-lora-merged' } });
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
