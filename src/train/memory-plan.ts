// The memory a training run will need, known from config.json and the run config alone (before a byte of the
// model is allocated), and the cheapest change of settings that makes a run fit: a 7B model in fp32 would end in
// an out-of-memory kill while loading, so `sftkit run` refuses it first and says what would fit (recompute,
// batch 1, LoRA, a bf16/int8/NF4 frozen base, a higher ZeRO stage), with the estimate of that setting.
import type { ModelConfig } from '../models/config.ts';
import { expectedTensors } from '../models/tensor-table.ts';
import { linearModulesOf, matchTargets } from '../nn/lora.ts';
import { type FrozenDtype, frozenBytesOf } from '../nn/frozen-store.ts';
import type { WeightCounts } from '../nn/parameters.ts';
import type { RunConfig } from './config.ts';
import { type MemoryEstimate, type MemoryEstimateInput, estimateTrainingMemory, suggestZeroStage } from './memory-estimate.ts';
import { frozenSet } from './freeze.ts';

/** The settings the estimate depends on (a slice of the run config). */
export interface MemorySettings {
  batchSize: number;
  seqLength: number;
  recompute: boolean;
  baseDtype: FrozenDtype;
  /** LoRA rank (0: no LoRA) and its targets. */
  lora: { rank: number; targets: string[] | string; dropout: number };
  /** Names `freeze` freezes (without LoRA). */
  freeze: RunConfig['freeze'];
  worldSize: number;
  zeroStage: 0 | 1 | 2 | 3;
  /** Gradient bucket bytes (parallel_config.bucket_mb); default the estimator's. */
  bucketBytes?: number;
}

/** Weight counts and LoRA modules of a run of `config` under `s`, from the tensor table alone. */
export function plannedWeights(config: ModelConfig, s: MemorySettings): { weights: WeightCounts; lora: MemoryEstimateInput['lora']; widenedHead: boolean } {
  const tensors = expectedTensors(config).filter((t) => t.optional !== 'tied');
  let lora: MemoryEstimateInput['lora'];
  let frozen: (name: string) => boolean;
  let trainableParams = 0;
  if (s.lora.rank > 0) {
    const linears = linearModulesOf(tensors, config.family === 'gpt2');
    const chosen = new Set(matchTargets(linears.map((l) => l.module), s.lora.targets));
    const modules = linears.filter((l) => chosen.has(l.module)).map((l) => ({ inFeatures: l.inFeatures, outFeatures: l.outFeatures, rank: s.lora.rank, fanInFanOut: config.family === 'gpt2' }));
    lora = { modules, dropout: s.lora.dropout };
    trainableParams = modules.reduce((n, m) => n + m.rank * (m.inFeatures + m.outFeatures), 0);
    frozen = () => true;
  } else {
    const set = frozenSet(tensors.map((t) => t.name), s.freeze);
    frozen = (n) => set.has(n);
  }
  let frozenParams = 0;
  let frozenBytes = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (frozen(t.name)) {
      frozenParams += n;
      frozenBytes += frozenBytesOf(t.name, t.shape, s.baseDtype);
    } else {
      trainableParams += n;
    }
  }
  const head = config.tieWordEmbeddings ? (config.family === 'gpt2' ? 'transformer.wte.weight' : 'model.embed_tokens.weight') : 'lm_head.weight';
  const widenedHead = frozen(head) && s.baseDtype !== 'float32';
  return { weights: { trainableParams, frozenParams, frozenBytes, frozenMappedBytes: 0 }, lora, widenedHead };
}

/** The estimate of a run of `config` under `s` (what `sftkit run` prints after loading, before it loads). */
export function planTrainingMemory(config: ModelConfig, s: MemorySettings): MemoryEstimate {
  return estimateTrainingMemory(plannedInput(config, s));
}

/** The estimator's input for a run of `config` under `s`. */
function plannedInput(config: ModelConfig, s: MemorySettings): MemoryEstimateInput {
  const { weights, lora, widenedHead } = plannedWeights(config, s);
  return {
    config,
    weights,
    batchSize: s.batchSize,
    seqLength: s.seqLength,
    recompute: s.recompute,
    worldSize: s.worldSize,
    zeroStage: s.zeroStage,
    ...(s.bucketBytes !== undefined ? { bucketBytes: s.bucketBytes } : {}),
    widenedHead,
    ...(lora ? { lora } : {}),
  };
}

/** The settings of a run config (seqLength from its records). */
export function memorySettingsOf(cfg: RunConfig, seqLength: number, worldSize: number): MemorySettings {
  return {
    batchSize: cfg.runner_config.batch_size,
    seqLength,
    recompute: cfg.model.recompute,
    baseDtype: cfg.model.base_dtype,
    lora: { rank: cfg.lora.rank, targets: cfg.lora.target_modules, dropout: cfg.lora.dropout },
    freeze: cfg.freeze,
    worldSize,
    zeroStage: cfg.parallel_config.zero_stage as MemorySettings['zeroStage'],
    bucketBytes: cfg.parallel_config.bucket_mb * 2 ** 20,
  };
}

/** A change of settings that fits, in words ("set model.recompute true and ...") with its estimate. */
export interface Suggestion {
  change: string;
  settings: MemorySettings;
  estimate: MemoryEstimate;
}

/** LoRA as suggested to a full fine-tune that does not fit: QLoRA's usual rank on every linear. */
const SUGGESTED_LORA = { rank: 16, targets: 'all-linear' as const };

const PRECISION: FrozenDtype[] = ['float32', 'bfloat16', 'int8', 'nf4'];

/**
 * The least intrusive change of `s` whose estimate fits in `available` bytes, or null when none does. Tried in
 * order: a higher ZeRO stage (several ranks; the training is unchanged), recompute, batch 1 (with gradient
 * accumulation the global batch can stay), then LoRA (a full fine-tune becomes an adapter), then a lower-precision
 * frozen base (bfloat16, int8, nf4), each with recompute and batch 1 as needed.
 */
export function cheapestFit(config: ModelConfig, s: MemorySettings, available: number): Suggestion | null {
  // Several ranks: the lowest ZeRO stage that fits (the training itself unchanged).
  const zero = s.worldSize > 1 ? suggestZeroStage(plannedInput(config, s), available) : null;
  if (zero && zero.stage > s.zeroStage) return { change: `set parallel_config.zero_stage ${zero.stage}`, settings: { ...s, zeroStage: zero.stage }, estimate: zero.estimate };
  const candidates: { change: string[]; settings: MemorySettings }[] = [];
  const add = (change: string[], settings: MemorySettings): void => {
    candidates.push({ change, settings });
  };
  // The run itself, then with recompute, then with batch 1: one ladder per (lora, base dtype).
  const ladder = (prefix: string[], base: MemorySettings): void => {
    if (prefix.length > 0) add(prefix, base);
    if (!base.recompute) add([...prefix, 'set model.recompute true'], { ...base, recompute: true });
    if (base.batchSize > 1) {
      add([...prefix, ...(base.recompute ? [] : ['set model.recompute true']), `set runner_config.batch_size 1 (gradient_accumulation_steps ${base.batchSize} keeps the global batch)`], { ...base, recompute: true, batchSize: 1 });
    }
  };
  ladder([], s);
  const withLora = s.lora.rank > 0 ? s : { ...s, lora: { ...s.lora, ...SUGGESTED_LORA } };
  const loraWords = s.lora.rank > 0 ? [] : [`use lora (lora.rank ${SUGGESTED_LORA.rank} on all linears: --lora.rank ${SUGGESTED_LORA.rank} --lora.target_modules all-linear)`];
  if (s.lora.rank === 0) ladder(loraWords, withLora);
  for (const dtype of PRECISION.slice(PRECISION.indexOf(s.baseDtype) + 1)) {
    ladder([...loraWords, `set model.base_dtype ${dtype}`], { ...withLora, baseDtype: dtype });
  }
  for (const c of candidates) {
    const estimate = planTrainingMemory(config, c.settings);
    if (estimate.total <= available) return { change: c.change.join(', '), settings: c.settings, estimate };
  }
  return null;
}
