// `sftkit convert --reversed`: a sftkit model or training checkpoint (or a checkpoint/ root) -> an HF folder
// that transformers loads: config.json, generation_config.json, safetensors (+ index), tokenizer files.
import { join } from 'node:path';
import { writeDirAtomically, readManifest, resolveCheckpointDir } from '../formats/checkpoint-dir.ts';
import { TARGET_DTYPES } from '../formats/dtypes.ts';
import { openWeightSource } from '../formats/weight-source.ts';
import { readModelConfig } from '../models/config.ts';
import { DEFAULT_MAX_SHARD_BYTES, checkInputDir, type ConvertOptions, type ConvertReport } from './hf-to-checkpoint.ts';
import { planConversion } from '../formats/weight-plan.ts';
import { writeModel } from './write-model.ts';

export async function convertCheckpointToHf(o: Omit<ConvertOptions, 'model'>): Promise<ConvertReport> {
  const t0 = performance.now();
  const dir = resolveCheckpointDir(o.inputPath);
  readManifest(dir);
  checkInputDir(dir);
  const cfg = readModelConfig(join(dir, 'config.json'));
  const source = openWeightSource(dir);
  try {
    const plan = planConversion(cfg, source.tensors, dir);
    return await writeDirAtomically(o.outputPath, (tmp) => {
      const written = writeModel(tmp, {
        cfg,
        inputDir: dir,
        source,
        plan,
        dtype: o.dtype === undefined ? undefined : TARGET_DTYPES[o.dtype],
        maxShardBytes: o.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
        onTensor: o.onTensor,
      });
      return {
        outputPath: o.outputPath,
        modelType: cfg.modelType,
        tensors: plan.tensors.length,
        skipped: plan.skipped.map((s) => `${s.name} (${s.reason})`),
        bytes: written.bytes,
        dtype: written.dtype,
        files: written.files.map((f) => f.name).sort(),
        seconds: (performance.now() - t0) / 1000,
      };
    });
  } finally {
    source.close();
  }
}
