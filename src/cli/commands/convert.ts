// `sftkit convert`: HF model folder -> sftkit model checkpoint, or back with --reversed.
import type { Command } from 'commander';
import { ConfigError } from '../../errors.ts';
import { resolveModelDir } from '../../hub/index.ts';
import { convertCheckpointToHf } from '../../convert/checkpoint-to-hf.ts';
import { convertMergedLoraToHf } from '../../convert/merge-lora.ts';
import { convertHfToCheckpoint, type ConvertReport } from '../../convert/hf-to-checkpoint.ts';
import { parseShardSize } from '../../convert/shard-size.ts';
import { exportGguf, GGUF_DTYPES, type GgufDtypeName } from '../../convert/gguf-export.ts';
import { convertMindSporeToCheckpoint, exportMindSporeCkpt, isMindSporeCkpt } from '../../convert/mindspore-convert.ts';
import { TARGET_DTYPES, type TargetDtypeName } from '../../formats/dtypes.ts';
import { SUPPORTED_MODEL_TYPES, type ModelFamily, type ModelType } from '../../models/config.ts';

interface ConvertFlags {
  input_path: string;
  output_path: string;
  model?: string;
  dtype?: string;
  reversed?: boolean;
  max_shard_size: string;
  format?: string;
  merge_lora?: boolean;
  base_model?: string;
  config?: string;
}

function report(r: ConvertReport, reversed: boolean): void {
  const gb = r.bytes / 1e9;
  console.log(
    `${reversed ? 'exported' : 'converted'} ${r.modelType}: ${r.tensors} tensors, ${gb.toFixed(3)} GB ${r.dtype} ` +
      `in ${r.seconds.toFixed(1)} s (${(gb / Math.max(r.seconds, 1e-9)).toFixed(2)} GB/s) -> ${r.outputPath}`,
  );
  if (r.dtypeNote !== undefined) console.log(`dtype: ${r.dtypeNote}`);
  if (r.skipped.length > 0) console.log(`skipped: ${r.skipped.join(', ')}`);
}

async function convertToGguf(flags: ConvertFlags): Promise<void> {
  if (flags.format !== 'gguf') throw new ConfigError(`--format ${flags.format} is not supported (supported: hf, gguf, mindspore)`, { where: '--format' });
  if (!flags.reversed) throw new ConfigError('--format gguf exports a checkpoint: add --reversed', { where: '--format' });
  if (flags.dtype !== undefined && !(flags.dtype in GGUF_DTYPES)) {
    throw new ConfigError(`--dtype ${flags.dtype} is not supported for GGUF (supported: ${Object.keys(GGUF_DTYPES).join(', ')})`, { where: '--dtype' });
  }
  const r = exportGguf({ inputPath: flags.input_path, outputPath: flags.output_path, dtype: flags.dtype as GgufDtypeName | undefined, ...(flags.base_model !== undefined ? { baseModel: flags.base_model } : {}) });
  const gb = r.bytes / 1e9;
  console.log(`exported ${r.modelType} as GGUF (${r.arch}, ${r.dtype}): ${r.tensors} tensors, ${gb.toFixed(3)} GB in ${r.seconds.toFixed(1)} s -> ${r.outputPath}`);
  if (r.f16Fallbacks.length > 0) console.log(`F16 instead of Q8_0 (rows not whole blocks of 32): ${r.f16Fallbacks.join(', ')}`);
  if (r.chatTemplate !== null) console.log(`chat template: ${r.chatTemplate}`);
  for (const w of r.warnings) console.log(`warning: ${w}`);
  console.log(`ollama: ollama create <name> -f ${r.modelfilePath}`);
}

export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description('convert an HF model folder into a sftkit model checkpoint (or back with --reversed)')
    .requiredOption('--input_path <dir>', 'HF model folder or hub repo id (or, with --reversed, a sftkit model/training checkpoint)')
    .requiredOption('--output_path <dir>', 'directory to create (must not exist, or be empty)')
    .option('--model <name>', 'llama | gpt2 (the family), or an HF model_type (llama, mistral, qwen2, gpt2): must agree with config.json')
    .option('--dtype <dtype>', 'float32 | bfloat16 | float16, or q8_0 with --format gguf (default: keep the stored dtype; with --reversed, the dtype the weights were published in)')
    .option('--max_shard_size <size>', 'largest safetensors shard', '5GB')
    .option('--reversed', 'sftkit checkpoint -> HF folder')
    .option('--format <format>', 'with --reversed: hf (default) | gguf (one .gguf file for llama.cpp/ollama, plus a Modelfile) | mindspore (one MindFormers .ckpt)')
    .option('--config <path>', 'with a .ckpt --input_path: the config.json (or its folder, with the tokenizer files) giving the architecture (default: the .ckpt\'s folder)')
    .option('--merge_lora', 'with --reversed: fold the LoRA adapters of a LoRA run\'s checkpoint into its base weights (W + s·B·A), writing a plain HF folder')
    .option('--base_model <dir>', "with --reversed and --merge_lora, --format gguf or --format mindspore: the local folder of a LoRA checkpoint's base model, instead of the one it records")
    .action(async (flags: ConvertFlags) => {
      if (flags.base_model !== undefined && !(flags.reversed && (flags.merge_lora || flags.format === 'gguf' || flags.format === 'mindspore'))) {
        throw new ConfigError("--base_model names the base of a LoRA checkpoint being exported: use it with --reversed and --merge_lora, --format gguf or --format mindspore", { where: '--base_model' });
      }
      if (flags.merge_lora && (!flags.reversed || (flags.format !== undefined && flags.format !== 'hf'))) {
        throw new ConfigError('--merge_lora exports an HF folder: use it with --reversed (and --format hf)', {
          where: '--merge_lora',
          hint: "GGUF and MindSpore export merge a LoRA run's checkpoint into its base by themselves: drop --merge_lora",
        });
      }
      if (flags.format !== undefined && flags.format !== 'hf' && flags.format !== 'mindspore') return convertToGguf(flags);
      if (flags.dtype !== undefined && !(flags.dtype in TARGET_DTYPES)) {
        throw new ConfigError(`--dtype ${flags.dtype} is not supported (supported: ${Object.keys(TARGET_DTYPES).join(', ')})`, { where: '--dtype' });
      }
      const dtype = flags.dtype as TargetDtypeName | undefined;
      if (flags.format === 'mindspore') {
        if (!flags.reversed) throw new ConfigError('--format mindspore exports a checkpoint: add --reversed (a .ckpt --input_path is read without it)', { where: '--format' });
        const r = await exportMindSporeCkpt({ inputPath: flags.input_path, outputPath: flags.output_path, ...(dtype !== undefined ? { dtype } : {}), ...(flags.base_model !== undefined ? { baseModel: flags.base_model } : {}) });
        console.log(`exported ${r.modelType} as a MindFormers checkpoint: ${r.tensors} tensors, ${(r.bytes / 1e9).toFixed(3)} GB ${r.dtype} in ${r.seconds.toFixed(1)} s -> ${r.outputPath}`);
        return;
      }
      if (flags.config !== undefined && !(isMindSporeCkpt(flags.input_path) && !flags.reversed)) {
        throw new ConfigError('--config is for a MindSpore .ckpt --input_path (an HF folder or checkpoint has its own config.json)', { where: '--config' });
      }
      if (!flags.reversed && isMindSporeCkpt(flags.input_path)) {
        const r = await convertMindSporeToCheckpoint({
          inputPath: flags.input_path,
          outputPath: flags.output_path,
          ...(flags.config !== undefined ? { config: flags.config } : {}),
          ...(flags.model !== undefined ? { model: flags.model } : {}),
          ...(dtype !== undefined ? { dtype } : {}),
          maxShardBytes: parseShardSize(flags.max_shard_size),
        });
        report(r, false);
        return;
      }
      // MindFormers names the converter (llama, gpt2); HF names the architecture (model_type): both are accepted.
      const modelNames: readonly string[] = ['llama', 'gpt2', ...SUPPORTED_MODEL_TYPES];
      if (flags.model !== undefined && !modelNames.includes(flags.model)) {
        throw new ConfigError(`--model ${flags.model} is not supported (supported: ${[...new Set(modelNames)].join(', ')})`, { where: '--model' });
      }
      if (flags.reversed && flags.model !== undefined) throw new ConfigError('--model is not used with --reversed (the checkpoint has its config)', { where: '--model' });
      const common = {
        // An HF folder or a hub repo id (resolved through the cache, downloaded when missing).
        inputPath: flags.reversed ? flags.input_path : (await resolveModelDir(flags.input_path)).path,
        outputPath: flags.output_path,
        dtype: flags.dtype as TargetDtypeName | undefined,
        maxShardBytes: parseShardSize(flags.max_shard_size),
      };
      const r = flags.merge_lora
        ? await convertMergedLoraToHf({ ...common, ...(flags.base_model !== undefined ? { baseModel: flags.base_model } : {}) })
        : flags.reversed
        ? await convertCheckpointToHf(common)
        : await convertHfToCheckpoint({ ...common, model: flags.model as ModelFamily | undefined });
      report(r, flags.reversed === true);
    });
}
