// Generation evaluation: answers generated for eval prompts, scored against their references.
import { type GenerationOptions, defaultEosIds, generate, generationText } from '../generate/index.ts';
import type { CausalLM } from '../models/model.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { type MetricName, generationMetrics } from './metrics.ts';

export interface GenerationExample {
  /** Text (encoded with the tokenizer's BOS setting) or token ids already templated, e.g. a QA prefix. */
  prompt: string | readonly number[];
  references: string | readonly string[];
}

export interface GenerationEvalResult {
  metrics: Partial<Record<MetricName, number>>;
  predictions: string[];
}

/** Generates an answer for every example (batched, greedy unless sampling is asked) and scores them. */
export function evaluateGeneration(
  model: CausalLM,
  tokenizer: Tokenizer,
  examples: readonly GenerationExample[],
  opts: GenerationOptions & { metrics?: readonly MetricName[] },
): GenerationEvalResult {
  const eos = opts.eosTokenIds ?? defaultEosIds(model, tokenizer);
  const prompts = examples.map((e) => (typeof e.prompt === 'string' ? tokenizer.encode(e.prompt, { addEos: false }) : e.prompt));
  const gens = generate(model, prompts, { ...opts, eosTokenIds: eos, padTokenId: opts.padTokenId ?? tokenizer.padId ?? eos[0] ?? 0 });
  const predictions = gens.map((g) => generationText(tokenizer, g));
  return { metrics: generationMetrics(predictions, examples.map((e) => e.references), opts.metrics), predictions };
}
