// Writes the parts a model checkpoint and an HF folder share: weights as safetensors (cast when asked),
// config.json, generation_config.json (with eos), and the tokenizer files, streaming one tensor at a time.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../errors.ts';
import { TOKENIZER_FILES, copyInto, readJsonFile } from '../formats/checkpoint-dir.ts';
import { castFloat, torchDtypeName, type WeightDtype } from '../formats/dtypes.ts';
import { writeSafetensorsSharded, writeTextFile, type TensorSpec, type WrittenFile } from '../formats/safetensors-writer.ts';
import type { WeightSource } from '../formats/weight-source.ts';
import type { ModelConfig } from '../models/config.ts';
import type { ConversionPlan } from '../formats/weight-plan.ts';

export interface WriteModelOptions {
  cfg: ModelConfig;
  inputDir: string;
  source: WeightSource;
  plan: ConversionPlan;
  /** Float dtype to write; undefined keeps each tensor's own. */
  dtype: WeightDtype | undefined;
  maxShardBytes: number;
  /** Called after each tensor with the bytes written so far. */
  onTensor?: (name: string, bytesDone: number) => void;
}

export interface WrittenModel {
  files: WrittenFile[];
  /** PyTorch name of the weights' dtype, or "mixed". */
  dtype: string;
  bytes: number;
}

const eosValue = (ids: number[]): number | number[] | undefined => (ids.length === 0 ? undefined : ids.length === 1 ? ids[0] : ids);

export function writeModel(tmp: string, o: WriteModelOptions): WrittenModel {
  const specs: TensorSpec[] = o.plan.tensors.map((t) => ({ name: t.name, dtype: o.dtype ?? t.dtype, shape: t.shape }));
  const sourceOf = new Map(o.plan.tensors.map((t) => [t.name, t]));
  let done = 0;
  const files = writeSafetensorsSharded(
    tmp,
    specs,
    (spec) => {
      const t = sourceOf.get(spec.name)!;
      const bytes = castFloat(o.source.read(t.source), t.dtype, spec.dtype);
      done += bytes.byteLength;
      o.onTensor?.(spec.name, done);
      return bytes;
    },
    { maxShardBytes: o.maxShardBytes },
  );
  const dtypes = new Set(specs.map((s) => s.dtype));
  const dtype = dtypes.size === 1 ? torchDtypeName([...dtypes][0]!) : 'mixed';

  // config.json: copied byte for byte unless the dtype it states changed.
  const cfgPath = join(o.inputDir, 'config.json');
  if (dtype !== 'mixed' && o.cfg.torchDtype !== dtype) {
    files.push(writeTextFile(join(tmp, 'config.json'), `${JSON.stringify({ ...o.cfg.raw, torch_dtype: dtype }, null, 2)}\n`, () => 'config.json'));
  } else {
    files.push(copyInto(cfgPath, tmp));
  }

  const gen = generationConfigFor(join(o.inputDir, 'generation_config.json'), o.cfg);
  if (gen === 'copy') files.push(copyInto(join(o.inputDir, 'generation_config.json'), tmp));
  else files.push(writeTextFile(join(tmp, 'generation_config.json'), gen, () => 'generation_config.json'));

  for (const name of TOKENIZER_FILES) {
    if (existsSync(join(o.inputDir, name))) files.push(copyInto(join(o.inputDir, name), tmp));
  }
  return { files, dtype, bytes: done };
}

/**
 * generation_config.json for the output: 'copy' when the source's can be copied byte for byte, else the text to
 * write (the source's, or a fresh one, with bos/eos/pad filled in from config.json when it lacks them).
 */
export function generationConfigFor(genPath: string, cfg: ModelConfig): 'copy' | string {
  const exists = existsSync(genPath);
  const gen: Record<string, unknown> = exists ? readJsonFile(genPath) : { _from_model_config: true };
  let changed = !exists;
  const fill = (key: string, value: unknown): void => {
    if (gen[key] !== undefined || value === undefined || value === null) return;
    gen[key] = value;
    changed = true;
  };
  fill('bos_token_id', cfg.bosTokenId);
  fill('eos_token_id', eosValue(cfg.eosTokenIds));
  fill('pad_token_id', cfg.padTokenId);
  return changed ? `${JSON.stringify(gen, null, 2)}\n` : 'copy';
}
