// `sftkit convert`: an HF model folder (safetensors or PyTorch .bin, single or sharded) -> a sftkit model
// checkpoint. Names and layouts stay HF's; tensors are checked against config.json, then streamed out.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors.ts';
import { readSourceDtype, writeDirAtomically, writeManifest } from '../formats/checkpoint-dir.ts';
import { TARGET_DTYPES, type TargetDtypeName, type WeightDtype, torchDtypeName } from '../formats/dtypes.ts';
import { confinedRealPath } from '../formats/confined-file.ts';
import { openWeightSource } from '../formats/weight-source.ts';
import { modelFamily, readModelConfig, type ModelFamily, type ModelType } from '../models/config.ts';
import { planConversion } from '../formats/weight-plan.ts';
import { writeModel } from './write-model.ts';

export interface ConvertOptions {
  inputPath: string;
  outputPath: string;
  /** When given, must agree with config.json's model_type. */
  /** The family (llama, gpt2) or the exact HF model_type the folder must have. */
  model?: ModelFamily | ModelType;
  dtype?: TargetDtypeName;
  /** Default 5 GB, as transformers' save_pretrained. */
  maxShardBytes?: number;
  onTensor?: (name: string, bytesDone: number) => void;
}

export interface ConvertReport {
  outputPath: string;
  modelType: string;
  tensors: number;
  skipped: string[];
  bytes: number;
  dtype: string;
  /** Why this dtype was written when no --dtype asked for one (convert --reversed's default), for the user. */
  dtypeNote?: string;
  files: string[];
  seconds: number;
}

export const DEFAULT_MAX_SHARD_BYTES = 5e9;

/**
 * The dtype the weights were published in (sftkit.json's source_dtype): the input's own source_dtype when it is
 * a sftkit checkpoint, else its config.json torch_dtype, else the dtype its tensors are stored in.
 */
function publishedDtype(inputPath: string, torchDtype: string | null, stored: readonly WeightDtype[]): { source_dtype?: string } {
  const kinds = new Set(stored);
  const storedDtype = kinds.size === 1 ? torchDtypeName([...kinds][0] as WeightDtype) : null;
  const dtype = readSourceDtype(inputPath) ?? torchDtype ?? storedDtype;
  return dtype === null ? {} : { source_dtype: dtype };
}

export function checkInputDir(path: string): void {
  if (!existsSync(path) || !statSync(path).isDirectory()) throw new ConfigError(`--input_path ${path} is not a directory`, { where: path });
  if (!existsSync(join(path, 'config.json'))) throw new ConfigError(`${path} has no config.json`, { where: join(path, 'config.json'), hint: 'pass an HF model folder' });
  // readModelConfig opens it by path: refuse a config.json that links out of the folder before it does.
  confinedRealPath(join(path, 'config.json'));
}

export async function convertHfToCheckpoint(o: ConvertOptions): Promise<ConvertReport> {
  const t0 = performance.now();
  checkInputDir(o.inputPath);
  const cfg = readModelConfig(join(o.inputPath, 'config.json'));
  // A family name (llama) takes every model_type of the family; a model_type (mistral, qwen2) only itself.
  const matches = o.model === undefined || o.model === cfg.modelType || o.model === modelFamily(cfg.modelType);
  if (!matches) {
    throw new ConfigError(`--model ${o.model} does not match model_type "${cfg.modelType}" in ${join(o.inputPath, 'config.json')}`, { where: '--model' });
  }
  const source = openWeightSource(o.inputPath);
  try {
    const plan = planConversion(cfg, source.tensors, o.inputPath);
    return await writeDirAtomically(o.outputPath, (tmp) => {
      const written = writeModel(tmp, {
        cfg,
        inputDir: o.inputPath,
        source,
        plan,
        dtype: o.dtype === undefined ? undefined : TARGET_DTYPES[o.dtype],
        maxShardBytes: o.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
        onTensor: o.onTensor,
      });
      const manifest = writeManifest(tmp, {
        model_type: cfg.modelType,
        dtype: written.dtype,
        ...publishedDtype(o.inputPath, cfg.torchDtype, plan.tensors.map((t) => t.dtype)),
        source: { path: resolve(o.inputPath), format: source.format },
      }, written.files);
      return {
        outputPath: o.outputPath,
        modelType: cfg.modelType,
        tensors: plan.tensors.length,
        skipped: plan.skipped.map((s) => `${s.name} (${s.reason})`),
        bytes: written.bytes,
        dtype: written.dtype,
        files: [...Object.keys(manifest.files), 'sftkit.json'].sort(),
        seconds: (performance.now() - t0) / 1000,
      };
    });
  } finally {
    source.close();
  }
}
