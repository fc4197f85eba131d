// Matches a checkpoint's tensors against its architecture's table: every expected tensor present with its
// shape, every source tensor used (bar known non-weight buffers and a tied lm_head); errors name the tensor.
import { FormatError } from '../errors.ts';
import { isFloatDtype, type WeightDtype } from './dtypes.ts';
import type { WeightTensor } from './weight-source.ts';
import type { ModelConfig } from '../models/config.ts';
import { BASE_MODEL_PREFIX, expectedTensors, isNonWeightBuffer } from '../models/tensor-table.ts';

export interface PlannedTensor {
  /** Name in the source files. */
  source: string;
  /** HF name in the *ForCausalLM model (the same as `source` unless the base-model prefix was missing). */
  name: string;
  shape: number[];
  dtype: WeightDtype;
}

export interface ConversionPlan {
  tensors: PlannedTensor[];
  /** Source tensors deliberately not written, with why. */
  skipped: Array<{ name: string; reason: 'buffer' | 'tied' }>;
}

const list = (xs: string[]): string => (xs.length <= 5 ? xs.join(', ') : `${xs.slice(0, 5).join(', ')} and ${xs.length - 5} more`);

export function planConversion(cfg: ModelConfig, tensors: readonly WeightTensor[], where: string): ConversionPlan {
  // A checkpoint saved from the base model (GPT2Model, as the `gpt2` hub repo is) lacks the prefix that
  // transformers adds when loading it into the *ForCausalLM model; we add it the same way.
  const prefix = `${BASE_MODEL_PREFIX[cfg.family]}.`;
  const prefixed = tensors.some((t) => t.name.startsWith(prefix));
  const canonical = (name: string): string => (prefixed || name === 'lm_head.weight' ? name : `${prefix}${name}`);

  const byName = new Map<string, WeightTensor>();
  for (const t of tensors) byName.set(canonical(t.name), t);
  const skipped: ConversionPlan['skipped'] = [];
  const used = new Set<string>();
  const planned: PlannedTensor[] = [];
  const missing: string[] = [];
  for (const e of expectedTensors(cfg)) {
    const t = byName.get(e.name);
    if (t === undefined) {
      if (e.optional !== 'tied') missing.push(e.name);
      continue;
    }
    used.add(t.name);
    const at = `${where}/${t.file}: tensor ${t.name}`;
    if (t.shape.length !== e.shape.length || t.shape.some((s, i) => s !== e.shape[i])) {
      throw new FormatError(`${at} has shape [${t.shape.join(', ')}], but config.json implies [${e.shape.join(', ')}]`, { where: at, hint: 'the weights do not belong to this config.json' });
    }
    if (!isFloatDtype(t.dtype)) throw new FormatError(`${at} has dtype ${t.dtype}; weights must be float`, { where: at });
    if (e.optional === 'tied') {
      skipped.push({ name: t.name, reason: 'tied' });
      continue;
    }
    planned.push({ source: t.name, name: e.name, shape: e.shape, dtype: t.dtype });
  }
  if (missing.length > 0) {
    const files = [...new Set(tensors.map((t) => t.file))];
    throw new FormatError(`${where}: ${missing.length} tensor(s) that config.json implies are missing from ${files.length > 0 ? list(files) : 'the weight files'}: ${list(missing)}`, {
      where: `${where}: ${missing[0]}`,
      hint: 'the weights do not match config.json',
    });
  }
  const unused: string[] = [];
  for (const t of tensors) {
    if (used.has(t.name)) continue;
    if (isNonWeightBuffer(cfg, t.name)) skipped.push({ name: t.name, reason: 'buffer' });
    else unused.push(`${t.name} (${t.file})`);
  }
  if (unused.length > 0) {
    throw new FormatError(`${where}: ${unused.length} tensor(s) not used by the ${cfg.modelType} model of this config.json: ${list(unused)}`, {
      where: `${where}: ${unused[0]}`,
      hint: 'the weights do not match config.json (another architecture, or a config with fewer layers)',
    });
  }
  return { tensors: planned, skipped };
}
