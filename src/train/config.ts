// The run configuration (DESIGN.md's config contract): one zod schema, YAML files, dotted overrides,
// and errors that name the unknown key and the nearest valid one.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { COMPUTE_DTYPES } from '../dtype.ts';
import { ConfigError } from '../errors.ts';

const positiveInt = z.number().int().positive();

const datasetSchema = (shuffle: boolean, dropRemainder: boolean) =>
  z.strictObject({
    dataset_dir: z.string().default(''),
    shuffle: z.boolean().default(shuffle),
    drop_remainder: z.boolean().default(dropRemainder),
  });

export const runConfigSchema = z.strictObject({
  seed: z.number().int().min(0).default(0),
  output_dir: z.string().default('./output'),
  run_mode: z.enum(['train', 'finetune', 'eval', 'predict']).default('finetune'),
  load_checkpoint: z.string().default(''),
  resume_training: z.union([z.boolean(), z.string()]).default(false),
  model: z
    .strictObject({
      arch: z.string().default(''),
      dtype: z.enum(COMPUTE_DTYPES).default('float32'),
      // Storage dtype of frozen weights (freeze, or a LoRA base): bfloat16 halves them; nf4 (QLoRA's 4-bit NormalFloat,
      // block 64, double-quantized scales) and int8 (per output channel) quantize linear matrices (the rest bfloat16).
      base_dtype: z.enum(['float32', 'bfloat16', 'nf4', 'int8']).default('float32'),
      recompute: z.boolean().default(false),
    })
    .prefault({}),
  tokenizer: z.string().default(''),
  train_dataset: datasetSchema(true, true).prefault({}),
  eval_dataset: datasetSchema(false, false).prefault({}),
  runner_config: z
    .strictObject({
      epochs: positiveInt.default(1),
      max_steps: z.number().int().min(-1).default(-1),
      batch_size: positiveInt.default(1),
      gradient_accumulation_steps: positiveInt.default(1),
      clip_grad_norm: z.number().min(0).default(1.0),
    })
    .prefault({}),
  optimizer: z
    .strictObject({
      type: z.literal('AdamW').default('AdamW'),
      learning_rate: z.number().positive().default(1e-5),
      beta1: z.number().min(0).lt(1).default(0.9),
      beta2: z.number().min(0).lt(1).default(0.999),
      eps: z.number().positive().default(1e-8),
      weight_decay: z.number().min(0).default(0),
    })
    .prefault({}),
  lr_schedule: z
    .strictObject({
      type: z.enum(['constant', 'linear', 'cosine']).default('cosine'),
      warmup_ratio: z.number().min(0).max(1).default(0.03),
      warmup_steps: z.number().int().min(0).default(0),
      lr_end: z.number().min(0).default(0),
    })
    .prefault({}),
  parallel_config: z
    .strictObject({
      data_parallel: z.union([z.literal('auto'), positiveInt]).default('auto'),
      // ZeRO stage (0: replicated; 1: optimizer state sharded; 2: also gradients; 3: also weights). optimizer_shard: true is
      // stage 1 (kept for MindFormers configs); both unset is stage 0. Resolved by parseRunConfig.
      optimizer_shard: z.boolean().optional(),
      zero_stage: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3)]).optional(),
      // MiB per gradient bucket: stage 0's all-reduces, stage 1's reduce-scatter chunks, stage 2's buckets
      // (stage 3 reduces one bucket per layer group). Smaller: more, shorter collectives and less memory.
      bucket_mb: z.number().positive().max(4096).default(25),
    })
    .prefault({}),
  // LoRA (docs/LORA.md): on when rank > 0 or adapter names a PEFT adapter folder to load (train on, eval,
  // predict). Every base weight is then frozen; the adapters are the only trainable weights.
  lora: z
    .strictObject({
      rank: z.int().min(0).default(0),
      alpha: z.number().positive().default(16),
      dropout: z.number().min(0).lt(1).default(0),
      target_modules: z.union([z.array(z.string()).min(1), z.string().min(1)]).default(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']),
      use_rslora: z.boolean().default(false),
      adapter: z.string().default(''),
    })
    .prefault({}),
  freeze: z
    .strictObject({
      include: z.array(z.string()).default([]),
      exclude: z.array(z.string()).default([]),
    })
    .prefault({}),
  callbacks: z
    .strictObject({
      loss_monitor: z.strictObject({ log_every: positiveInt.default(1) }).prefault({}),
      checkpoint: z
        .strictObject({
          prefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('model'),
          save_checkpoint_steps: positiveInt.default(100),
          keep_checkpoint_max: positiveInt.default(5),
        })
        .prefault({}),
      eval: z
        .strictObject({
          do_eval: z.boolean().default(false),
          eval_steps: positiveInt.default(100),
          metrics: z.array(z.enum(['perplexity', 'em', 'f1', 'rouge_l', 'bleu4'])).default(['perplexity']),
        })
        .prefault({}),
      // TensorBoard event files (src/formats/tfevents.ts); log_dir '' means <output_dir>/tensorboard.
      tensorboard: z
        .strictObject({
          enabled: z.boolean().default(false),
          log_dir: z.string().default(''),
        })
        .prefault({}),
      // Keeps the best checkpoint by an eval metric (meta.json `best`, never pruned) and, with patience > 0,
      // stops after that many evals without an improvement of more than min_delta.
      early_stopping: z
        .strictObject({
          enabled: z.boolean().default(false),
          metric: z.enum(['eval_loss', 'perplexity', 'em', 'f1', 'rouge_l', 'bleu4']).default('eval_loss'),
          // Unset: min for eval_loss and perplexity, max for the generation metrics.
          mode: z.enum(['min', 'max']).optional(),
          patience: z.number().int().min(0).default(0),
          min_delta: z.number().min(0).default(0),
        })
        .prefault({}),
    })
    .prefault({}),
  generation: z
    .strictObject({
      // Unset: the template recorded with the checkpoint's training data, else vicuna (src/data/recorded-template.ts).
      template: z.string().optional(),
      max_new_tokens: positiveInt.default(128),
      do_sample: z.boolean().default(false),
      top_k: z.number().int().min(0).default(0),
      top_p: z.number().gt(0).max(1).default(1.0),
      temperature: z.number().positive().default(1.0),
      repetition_penalty: z.number().positive().default(1.0),
      batch_size: positiveInt.default(1),
    })
    .prefault({}),
});

export type ZeroStage = 0 | 1 | 2 | 3;
type ParsedConfig = z.infer<typeof runConfigSchema>;
/** The validated config, with parallel_config's optimizer_shard and zero_stage resolved into each other. */
export type RunConfig = Omit<ParsedConfig, 'parallel_config'> & {
  parallel_config: Omit<ParsedConfig['parallel_config'], 'optimizer_shard' | 'zero_stage'> & { optimizer_shard: boolean; zero_stage: ZeroStage };
};

/** zero_stage from zero_stage and/or optimizer_shard; contradictions, and stage 3 with LoRA, are refused. */
function resolveParallel(c: ParsedConfig, source: string): RunConfig {
  const { optimizer_shard: shard, zero_stage: stage } = c.parallel_config;
  if (stage === 3 && (c.lora.rank > 0 || c.lora.adapter !== '')) {
    throw new ConfigError(`${source}: parallel_config.zero_stage 3 shards full-parameter training; a LoRA run's adapters are too small to shard`, {
      where: `${source}: parallel_config.zero_stage`,
      hint: 'use zero_stage 0 to 2 with LoRA (the frozen base is never sharded)',
    });
  }
  if (shard !== undefined && stage !== undefined && shard !== stage >= 1) {
    throw new ConfigError(`${source}: parallel_config.optimizer_shard ${shard} contradicts zero_stage ${stage} (stages 1 to 3 shard the optimizer state, 0 does not)`, {
      where: `${source}: parallel_config.optimizer_shard`,
      hint: 'set only zero_stage',
    });
  }
  const zero: ZeroStage = stage ?? (shard ? 1 : 0);
  return { ...c, parallel_config: { ...c.parallel_config, optimizer_shard: zero >= 1, zero_stage: zero } };
}

export interface ConfigKeyInfo {
  /** Dotted key, as an override takes it: `optimizer.learning_rate`. */
  key: string;
  /** What it takes: `integer`, `number`, `boolean`, `string`, `a | b | c`, `list of ...`. */
  kind: string;
  /** The default, or undefined when it has none (unset). */
  default: unknown;
}

type SchemaDef = { type: string; innerType?: z.ZodType; shape?: Record<string, z.ZodType>; entries?: Record<string, string>; values?: unknown[]; options?: z.ZodType[]; element?: z.ZodType };

/** The kind of value a leaf of the schema takes, in words (for `run --help`). */
function kindOf(schema: z.ZodType): string {
  const def = (schema as unknown as { def: SchemaDef }).def;
  if (def.innerType && (def.type === 'default' || def.type === 'prefault' || def.type === 'optional')) return kindOf(def.innerType);
  switch (def.type) {
    case 'enum':
      return Object.values(def.entries ?? {}).join(' | ');
    case 'literal':
      return (def.values ?? []).map((v) => String(v)).join(' | ');
    case 'union':
      return (def.options ?? []).map(kindOf).join(' | ');
    case 'number':
      return (schema as unknown as { isInt?: boolean }).isInt === true ? 'integer' : 'number';
    case 'array': {
      const element = def.element ? kindOf(def.element) : 'values';
      return `list of ${element.includes(' | ') ? `(${element})` : element}`;
    }
    default:
      return def.type;
  }
}

/** Every key of the schema with its kind and default, in schema order (`sftkit run --help` prints them). */
export function describeConfigKeys(): ConfigKeyInfo[] {
  const defaults = runConfigSchema.parse({}) as unknown as Record<string, unknown>;
  const out: ConfigKeyInfo[] = [];
  const walk = (schema: z.ZodType, prefix: string, dflt: unknown): void => {
    let s: z.ZodType = schema;
    for (;;) {
      const def = (s as unknown as { def: SchemaDef }).def;
      if ((def.type === 'default' || def.type === 'prefault' || def.type === 'optional') && def.innerType) s = def.innerType;
      else break;
    }
    const def = (s as unknown as { def: SchemaDef }).def;
    if (def.type === 'object' && def.shape) {
      const values = (dflt ?? {}) as Record<string, unknown>;
      for (const [k, v] of Object.entries(def.shape)) walk(v, prefix ? `${prefix}.${k}` : k, values[k]);
    } else {
      out.push({ key: prefix, kind: kindOf(schema), default: dflt });
    }
  };
  walk(runConfigSchema, '', defaults);
  return out;
}

/** Every valid dotted key (for overrides and "did you mean" hints). */
export function configKeys(): string[] {
  return describeConfigKeys().map((k) => k.key);
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (dp[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = dp[i] as number[];
      const prev = dp[i - 1] as number[];
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return (dp[a.length] as number[])[b.length] as number;
}

/**
 * Keys longer than this get no suggestion: the edit distance is quadratic in the key's length, and a pasted blob
 * as a key (100 KB) would otherwise cost seconds of CPU per valid key before the error appears. The longest valid
 * key is under 50 characters, so nothing this long is a typo of one.
 */
const MAX_SUGGESTED_KEY_LENGTH = 128;

/** A key as shown in a message: a huge one is cut, with its length. */
function shownKey(key: string): string {
  return key.length <= MAX_SUGGESTED_KEY_LENGTH ? key : `${key.slice(0, 60)}…(${key.length} characters)`;
}

/**
 * Names other trainers (HF TrainingArguments, TRL, LLaMA-Factory, torchtune) and common shorthands give our keys:
 * spelling is no guide there (`lr` is closer to `model.arch` than to `optimizer.learning_rate`), meaning is.
 */
export const KEY_ALIASES: Readonly<Record<string, string>> = {
  lr: 'optimizer.learning_rate',
  learning_rate: 'optimizer.learning_rate',
  weight_decay: 'optimizer.weight_decay',
  adam_beta1: 'optimizer.beta1',
  adam_beta2: 'optimizer.beta2',
  adam_epsilon: 'optimizer.eps',
  max_steps: 'runner_config.max_steps',
  steps: 'runner_config.max_steps',
  epochs: 'runner_config.epochs',
  num_epochs: 'runner_config.epochs',
  num_train_epochs: 'runner_config.epochs',
  bs: 'runner_config.batch_size',
  batch_size: 'runner_config.batch_size',
  micro_batch_size: 'runner_config.batch_size',
  per_device_train_batch_size: 'runner_config.batch_size',
  train_batch_size: 'runner_config.batch_size',
  grad_accum: 'runner_config.gradient_accumulation_steps',
  gradient_accumulation_steps: 'runner_config.gradient_accumulation_steps',
  max_grad_norm: 'runner_config.clip_grad_norm',
  grad_clip: 'runner_config.clip_grad_norm',
  warmup_steps: 'lr_schedule.warmup_steps',
  warmup_ratio: 'lr_schedule.warmup_ratio',
  lr_scheduler_type: 'lr_schedule.type',
  scheduler: 'lr_schedule.type',
  save_steps: 'callbacks.checkpoint.save_checkpoint_steps',
  save_total_limit: 'callbacks.checkpoint.keep_checkpoint_max',
  logging_steps: 'callbacks.loss_monitor.log_every',
  eval_steps: 'callbacks.eval.eval_steps',
  do_eval: 'callbacks.eval.do_eval',
  gradient_checkpointing: 'model.recompute',
  activation_checkpointing: 'model.recompute',
  dtype: 'model.dtype',
  torch_dtype: 'model.dtype',
  bf16: 'model.dtype',
  model_name_or_path: 'load_checkpoint',
  model_path: 'load_checkpoint',
  checkpoint: 'load_checkpoint',
  resume_from_checkpoint: 'resume_training',
  dataset: 'train_dataset.dataset_dir',
  train_data: 'train_dataset.dataset_dir',
  dataset_dir: 'train_dataset.dataset_dir',
  output_path: 'output_dir',
  early_stopping_patience: 'callbacks.early_stopping.patience',
  early_stopping_threshold: 'callbacks.early_stopping.min_delta',
  metric_for_best_model: 'callbacks.early_stopping.metric',
  load_best_model_at_end: 'callbacks.early_stopping.enabled',
  logging_dir: 'callbacks.tensorboard.log_dir',
  report_to: 'callbacks.tensorboard.enabled',
  tensorboard: 'callbacks.tensorboard.enabled',
};

/**
 * The valid key meant by `key`: an alias by meaning (KEY_ALIASES, of the whole key or its last part), else the
 * closest by edit distance on the full dotted path and on its last part; null when the key is too long to be a typo.
 */
export function nearestKey(key: string): string | null {
  if (key.length > MAX_SUGGESTED_KEY_LENGTH) return null;
  const keys = configKeys();
  const last = key.split('.').pop() ?? key;
  // Own entries only: a key such as `constructor` must not find Object.prototype's.
  const aliasOf = (k: string): string | undefined => (Object.hasOwn(KEY_ALIASES, k) ? KEY_ALIASES[k] : undefined);
  const alias = aliasOf(key) ?? aliasOf(last);
  if (alias !== undefined && keys.includes(alias)) return alias;
  let best = keys[0] as string;
  let bestScore = Infinity;
  for (const k of keys) {
    const score = Math.min(editDistance(key, k), editDistance(last, k.split('.').pop() ?? k) + 0.5);
    if (score < bestScore) {
      bestScore = score;
      best = k;
    }
  }
  return best;
}

/** Validates a plain object; `source` names the file (or "overrides") in errors. */
export function parseRunConfig(raw: unknown, source: string): RunConfig {
  const result = runConfigSchema.safeParse(raw ?? {});
  if (result.success) return resolveParallel(result.data, source);
  const issue = result.error.issues[0] as z.core.$ZodIssue;
  const path = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const key = (path ? `${path}.` : '') + (issue.keys[0] ?? '');
    const near = nearestKey(key);
    throw new ConfigError(`${source}: unknown key '${shownKey(key)}'${near === null ? '' : ` (did you mean '${near}'?)`}`, { where: `${source}: ${shownKey(key)}` });
  }
  throw new ConfigError(`${source}: ${path || '(root)'}: ${issue.message}`, { where: `${source}: ${path}` });
}

/** Reads a YAML config file (without validating it). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${path}: cannot read config (${(err as Error).message})`, { where: path });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${path}: invalid YAML (${(err as Error).message.split('\n')[0]})`, { where: path });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${path}: the top level must be a mapping`, { where: path });
  return doc as Record<string, unknown>;
}

/** Parses a CLI value the way YAML would ("1e-5" → number, "true" → boolean, "[a, b]" → list). */
export function parseValue(text: string): unknown {
  try {
    return parseYaml(text) ?? '';
  } catch {
    return text;
  }
}

/** Applies `a.b.c = value` overrides to a raw config object (a copy); unknown keys are errors. */
export function applyOverrides(raw: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const out = structuredClone(raw);
  const valid = new Set(configKeys());
  for (const [key, value] of Object.entries(overrides)) {
    if (!valid.has(key)) {
      const near = nearestKey(key);
      throw new ConfigError(`override --${shownKey(key)}: unknown key${near === null ? '' : ` (did you mean '--${near}'?)`}`, { where: shownKey(key) });
    }
    const parts = key.split('.');
    let node: Record<string, unknown> = out;
    for (const p of parts.slice(0, -1)) {
      const next = node[p];
      if (next === undefined || next === null) node[p] = {};
      else if (typeof next !== 'object' || Array.isArray(next)) throw new ConfigError(`override --${key}: '${p}' is not a section`, { where: key });
      node = node[p] as Record<string, unknown>;
    }
    node[parts[parts.length - 1] as string] = value;
  }
  return out;
}

/** Loads a config file (or the defaults when path is empty) with overrides applied, validated. */
export function loadRunConfig(path: string, overrides: Record<string, unknown> = {}): RunConfig {
  const raw = path ? readConfigFile(path) : {};
  const source = path || 'defaults';
  parseRunConfig(raw, source); // errors in the file itself are reported against the file, before the overrides
  return parseRunConfig(applyOverrides(raw, overrides), Object.keys(overrides).length ? `${source} with overrides` : source);
}
