// `sftkit convert --reversed`: a sftkit model or training checkpoint (or a checkpoint/ root) -> an HF folder
// that transformers loads: config.json, generation_config.json, safetensors (+ index), tokenizer files.
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';
import { writeDirAtomically, readManifest, resolveCheckpointDir } from '../formats/checkpoint-dir.ts';
import { TARGET_DTYPES, type TargetDtypeName, type WeightDtype } from '../formats/dtypes.ts';
import { openWeightSource } from '../formats/weight-source.ts';
import { readModelConfig } from '../models/config.ts';
import { DEFAULT_MAX_SHARD_BYTES, checkInputDir, type ConvertOptions, type ConvertReport } from './hf-to-checkpoint.ts';
import { planConversion } from '../formats/weight-plan.ts';
import { writeModel } from './write-model.ts';

/**
 * The dtype to write: --dtype, else the one the weights were published in (sftkit.json's source_dtype), so a bf16
 * base fine-tuned in float32 goes back as bf16, as it came; undefined keeps each tensor's stored dtype.
 */
function exportDtype(asked: TargetDtypeName | undefined, sourceDtype: string | undefined): WeightDtype | undefined {
  if (asked !== undefined) return TARGET_DTYPES[asked];
  if (sourceDtype !== undefined && Object.hasOwn(TARGET_DTYPES, sourceDtype)) return TARGET_DTYPES[sourceDtype as TargetDtypeName];
  return undefined;
}

export async function convertCheckpointToHf(o: Omit<ConvertOptions, 'model'>): Promise<ConvertReport> {
  const t0 = performance.now();
  const dir = resolveCheckpointDir(o.inputPath);
  const manifest = readManifest(dir);
  if (manifest.base_model !== undefined) {
    throw new ConfigError(`${dir}: a LoRA checkpoint holds only its adapter (its base is ${manifest.base_model.name_or_path})`, {
      where: '--input_path',
      hint: 'add --merge_lora to export base + adapter as one model (--format gguf and mindspore merge it by themselves), or use the folder as a PEFT adapter as it is',
    });
  }
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
        dtype: exportDtype(o.dtype, manifest.source_dtype),
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
        ...(o.dtype === undefined && manifest.source_dtype !== undefined && written.dtype === manifest.source_dtype
          ? { dtypeNote: `${written.dtype}, the dtype the weights were published in (pass --dtype float32 to keep the trained precision)` }
          : {}),
        files: written.files.map((f) => f.name).sort(),
        seconds: (performance.now() - t0) / 1000,
      };
    });
  } finally {
    source.close();
  }
}
