// `sftkit convert --input_path X.ckpt` (a MindFormers checkpoint -> a sftkit model checkpoint) and
// `sftkit convert --reversed --format mindspore --output_path Y.ckpt` (a checkpoint or HF folder -> .ckpt).
// A .ckpt holds weights only: the architecture comes from a config.json (with the tokenizer files beside it).
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from '../errors.ts';
import { writeDirAtomically, writeManifest } from '../formats/checkpoint-dir.ts';
import { TARGET_DTYPES, torchDtypeName, type TargetDtypeName, type WeightDtype } from '../formats/dtypes.ts';
import { planConversion } from '../formats/weight-plan.ts';
import { readModelConfig, type ModelConfig } from '../models/config.ts';
import type { CausalLM } from '../models/model.ts';
import { type LoadOptions, loadModelFrom } from '../train/model-io.ts';
import { DEFAULT_MAX_SHARD_BYTES, checkInputDir, type ConvertReport } from './hf-to-checkpoint.ts';
import { resolveExportInput } from './gguf-export.ts';
import { exportSourceOf } from './merge-lora.ts';
import { openMindSporeWeights, writeMindFormersCkpt } from './mindspore.ts';
import { writeModel } from './write-model.ts';

/** True when a path names a MindSpore checkpoint file (what --input_path and --load_checkpoint accept). */
export function isMindSporeCkpt(path: string): boolean {
  return path.endsWith('.ckpt') && existsSync(path) && statSync(path).isFile();
}

/**
 * The folder that gives a .ckpt its architecture: `config` (a config.json or a folder holding one) when given,
 * else the .ckpt's own folder.
 */
export function ckptConfigDir(ckptPath: string, config?: string): string {
  const dir = config === undefined || config === '' ? dirname(ckptPath) : config.endsWith('.json') ? dirname(config) : config;
  if (!existsSync(join(dir, 'config.json'))) {
    throw new ConfigError(`${ckptPath}: a MindSpore checkpoint holds weights only, and ${join(dir, 'config.json')} does not exist`, {
      where: join(dir, 'config.json'),
      hint: 'put the HF config.json (and tokenizer files) next to the .ckpt, or pass the folder that has them (--config DIR for convert, --model.arch DIR for run)',
    });
  }
  checkInputDir(dir);
  return dir;
}

export async function convertMindSporeToCheckpoint(o: {
  inputPath: string;
  outputPath: string;
  config?: string;
  model?: string;
  dtype?: TargetDtypeName;
  maxShardBytes?: number;
}): Promise<ConvertReport> {
  const t0 = performance.now();
  const configDir = ckptConfigDir(o.inputPath, o.config);
  const cfg = readModelConfig(join(configDir, 'config.json'));
  if (o.model !== undefined && o.model !== cfg.modelType && o.model !== cfg.family) {
    throw new ConfigError(`--model ${o.model} does not match model_type "${cfg.modelType}" in ${join(configDir, 'config.json')}`, { where: '--model' });
  }
  const source = openMindSporeWeights(o.inputPath, cfg);
  try {
    const plan = planConversion(cfg, source.tensors, o.inputPath);
    return await writeDirAtomically(o.outputPath, (tmp) => {
      const written = writeModel(tmp, {
        cfg,
        inputDir: configDir,
        source,
        plan,
        dtype: o.dtype === undefined ? undefined : TARGET_DTYPES[o.dtype],
        maxShardBytes: o.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
      });
      const manifest = writeManifest(tmp, { model_type: cfg.modelType, dtype: written.dtype, source: { path: resolve(o.inputPath), format: 'mindspore' } }, written.files);
      return {
        outputPath: o.outputPath,
        modelType: cfg.modelType,
        tensors: plan.tensors.length,
        skipped: [...plan.skipped.map((s) => `${s.name} (${s.reason})`), ...source.skipped.map((s) => `${s} (training state)`)],
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

export async function exportMindSporeCkpt(o: { inputPath: string; outputPath: string; dtype?: TargetDtypeName; baseModel?: string }): Promise<ConvertReport> {
  const t0 = performance.now();
  if (!o.outputPath.endsWith('.ckpt')) {
    throw new ConfigError(`--output_path ${o.outputPath} must end in .ckpt (MindSpore's load_checkpoint refuses other names)`, { where: '--output_path' });
  }
  if (existsSync(o.outputPath)) throw new ConfigError(`--output_path ${o.outputPath} already exists`, { where: o.outputPath, hint: 'choose another name or remove it' });
  const dir = resolveExportInput(o.inputPath);
  // A LoRA run's adapter-only checkpoint exports as its base (or o.baseModel) with the adapter merged in.
  const { folder, cfg, source } = exportSourceOf(dir, o.baseModel ?? null);
  try {
    // The same checks as any conversion: every weight present with its shape, nothing unknown.
    planConversion(cfg, source.tensors, folder.weightsDir);
    const dtype: WeightDtype | undefined = o.dtype === undefined ? undefined : TARGET_DTYPES[o.dtype];
    const r = writeMindFormersCkpt({ path: o.outputPath, cfg, source, ...(dtype !== undefined ? { dtype } : {}) });
    return {
      outputPath: o.outputPath,
      modelType: cfg.modelType,
      tensors: r.tensors,
      skipped: [],
      bytes: r.bytes,
      dtype: r.dtype === 'mixed' ? 'mixed' : torchDtypeName(r.dtype as WeightDtype),
      files: [o.outputPath],
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    source.close();
  }
}

/**
 * `--load_checkpoint X.ckpt`: a model from a MindFormers checkpoint, its architecture from the config.json of
 * `configDir` (see ckptConfigDir). Weights are checked like any checkpoint's before anything is allocated.
 */
export function loadMindSporeModel(ckptPath: string, configDir: string, seed = 0, opts: LoadOptions = {}): CausalLM {
  const cfg = readModelConfig(join(configDir, 'config.json'));
  return loadModelFrom(cfg, openMindSporeWeights(ckptPath, cfg), seed, opts);
}
