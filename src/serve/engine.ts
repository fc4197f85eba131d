// Puts a loaded model and tokenizer together for serving: the model registry (the base and any LoRA
// adapters over it), the context a request may use, the EOS ids generation stops at, and the
// continuous-batching scheduler.
import type { GenerationTemplate } from '../data/recorded-template.ts';
import { ConfigError } from '../errors.ts';
import { defaultEosIds } from '../generate/index.ts';
import type { CausalLM } from '../models/model.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { loadServedAdapter } from './adapters.ts';
import { type AdapterSpec, ModelRegistry } from './registry.ts';
import { BatchScheduler } from './scheduler.ts';
import type { ServeEngine } from './server.ts';

export interface EngineOptions {
  /** The id requests name as `model`. */
  modelId: string;
  template: GenerationTemplate;
  /** Sequences decoded together (default 16). */
  slots?: number;
  /** Requests that may wait for a slot (default 64); one more gets 429. */
  maxQueue?: number;
  /** Tokens (prompt + generated) per sequence; default and upper bound: the model's positions, at most 4096 by default. */
  context?: number;
  dtype?: 'float32' | 'bfloat16';
  /** LoRA adapters served over the base, each as the model NAME (checked by ModelRegistry.parseAdapterSpecs). */
  adapters?: readonly AdapterSpec[];
  /**
   * The id /v1/models lists first (default: the base): a LoRA checkpoint served over its base puts its adapter
   * first, since clients that take the first listed model should get the fine-tuned one.
   */
  primary?: string;
}

/** The model's own position limit. */
export function modelPositions(model: CausalLM): number {
  const c = model.config;
  return c.family === 'llama' ? c.maxPositionEmbeddings : c.nPositions;
}

export function createEngine(model: CausalLM, tokenizer: Tokenizer, opts: EngineOptions): ServeEngine {
  const positions = modelPositions(model);
  const context = opts.context ?? Math.min(positions, 4096);
  const check = (name: string, v: number, min: number, max: number): void => {
    if (!Number.isInteger(v) || v < min || v > max) throw new ConfigError(`--${name} must be an integer in [${min}, ${max}], got ${v}`, { where: `--${name}` });
  };
  check('context', context, 2, model.config.family === 'gpt2' ? positions : 1 << 20);
  check('max_batch', opts.slots ?? 16, 1, 1024);
  check('max_queue', opts.maxQueue ?? 64, 0, 1 << 20);
  const registry = new ModelRegistry(opts.modelId);
  try {
    for (const a of opts.adapters ?? []) registry.addAdapter(loadServedAdapter(model, a.name, a.dir));
    if (opts.primary !== undefined) registry.setPrimary(opts.primary);
  } catch (err) {
    registry.release();
    throw err;
  }
  const scheduler = new BatchScheduler(model, { slots: opts.slots ?? 16, context, maxQueue: opts.maxQueue ?? 64, dtype: opts.dtype ?? 'float32' });
  return { model, tokenizer, template: opts.template, registry, scheduler, eosIds: defaultEosIds(model, tokenizer) };
}
