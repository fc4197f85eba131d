// Batched autoregressive generation with a KV cache: a prefill over the left-padded prompts, then one token
// per row per step until every row met an EOS id or max_new_tokens.
//
// Prompts of different lengths are left-padded so every row's last prompt token is in the same column and
// the cache advances in lockstep. Padding is masked, not just ignored: pads get segment id 0 and the
// prompt and its continuation segment 1, so attention never mixes them, and positions count from the first
// real token of each row. Each row draws from its own Rng seeded with `seed`, and the repetition penalty
// sees only the row's own tokens, so a prompt generates the same tokens in any batch as it does alone.
import { ConfigError } from '../errors.ts';
import { KvCache } from '../models/kv-cache.ts';
import { type CausalLM, logits } from '../models/model.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import * as T from '../tensor/index.ts';
import { Rng, Tensor, noGrad, scope } from '../tensor/index.ts';
import { type SamplingOptions, nextToken, resolveSampling } from './sampling.ts';

export interface GenerationOptions extends SamplingOptions {
  /** Most tokens to generate per prompt. */
  maxNewTokens: number;
  /** Generation of a row stops after any of these ids (kept as its last token). */
  eosTokenIds?: readonly number[];
  /** Token fed for padding and for rows that already stopped (masked either way); default the first EOS id, else 0. */
  padTokenId?: number;
  /** Seed of every row's sampling generator (default 0). */
  seed?: number;
  /** Prompts decoded together (default: all of them in one batch). */
  batchSize?: number;
}

export interface Generation {
  /** The new tokens, ending with the EOS id when one stopped the row. */
  tokens: number[];
  finishReason: 'eos' | 'length';
}

export interface TextGeneration extends Generation {
  prompt: string;
  promptIds: number[];
  /** The new tokens decoded, without the stopping EOS and special tokens. */
  text: string;
}

/** Generates a continuation of every prompt (token ids); results are in prompt order. */
export function generate(model: CausalLM, prompts: readonly (readonly number[])[], opts: GenerationOptions): Generation[] {
  const sampling = resolveSampling(opts);
  const { maxNewTokens } = opts;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new ConfigError(`generation.max_new_tokens must be an integer >= 0, got ${maxNewTokens}`, { where: 'generation.max_new_tokens' });
  const batchSize = opts.batchSize ?? Math.max(prompts.length, 1);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`generation.batch_size must be a positive integer, got ${batchSize}`, { where: 'generation.batch_size' });
  const vocab = model.config.vocabSize;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new ConfigError(`prompt ${i} is empty: generation needs at least one token to condition on`, { where: `prompt ${i}` });
    const bad = p.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
    if (bad !== undefined) throw new ConfigError(`prompt ${i} has token id ${bad}, outside the vocabulary of ${vocab}`, { where: `prompt ${i}` });
    if (model.config.family === 'gpt2' && p.length + maxNewTokens > model.config.nPositions) {
      throw new ConfigError(`prompt ${i}: ${p.length} tokens + max_new_tokens ${maxNewTokens} exceed GPT-2's ${model.config.nPositions} positions`, { where: 'generation.max_new_tokens' });
    }
  });
  const eos = new Set(opts.eosTokenIds ?? []);
  const pad = opts.padTokenId ?? opts.eosTokenIds?.[0] ?? 0;
  if (!Number.isInteger(pad) || pad < 0 || pad >= vocab) throw new ConfigError(`pad token id ${pad} is outside the vocabulary of ${vocab}`, { where: 'generation pad_token_id' });
  const out: Generation[] = [];
  for (let start = 0; start < prompts.length; start += batchSize) {
    const batch = prompts.slice(start, start + batchSize);
    out.push(...generateBatch(model, batch, { maxNewTokens, eos, pad, seed: opts.seed ?? 0, sampling }));
  }
  return out;
}

interface BatchPlan {
  maxNewTokens: number;
  eos: ReadonlySet<number>;
  pad: number;
  seed: number;
  sampling: ReturnType<typeof resolveSampling>;
}

function generateBatch(model: CausalLM, prompts: readonly (readonly number[])[], plan: BatchPlan): Generation[] {
  const B = prompts.length;
  const L = Math.max(...prompts.map((p) => p.length));
  const results: Generation[] = prompts.map(() => ({ tokens: [], finishReason: 'length' }));
  if (plan.maxNewTokens === 0) return results;
  const rngs = prompts.map(() => new Rng(plan.seed));
  const seen = prompts.map((p) => [...p]);
  const done = prompts.map(() => false);
  const cache = KvCache.forConfig(model.config, B, L + plan.maxNewTokens);
  try {
    // Prefill: pads (segment 0) on the left; positions restart at each row's first prompt token.
    const ids = new Int32Array(B * L).fill(plan.pad);
    const segments = new Int32Array(B * L);
    const positions = new Int32Array(B * L);
    prompts.forEach((p, b) => {
      const padLen = L - p.length;
      for (let t = 0; t < p.length; t++) {
        ids[b * L + padLen + t] = p[t] as number;
        segments[b * L + padLen + t] = 1;
        positions[b * L + padLen + t] = t;
      }
    });
    let lastLogits = stepLogits(model, ids, L, { positions, segments, cache });
    const decodePos = Int32Array.from(prompts, (p) => p.length);
    const ones = new Int32Array(B).fill(1);
    for (let step = 0; ; step++) {
      const next = new Int32Array(B).fill(plan.pad);
      const V = lastLogits.length / B;
      for (let b = 0; b < B; b++) {
        if (done[b]) continue;
        const id = nextToken(lastLogits.subarray(b * V, (b + 1) * V), seen[b] as number[], plan.sampling, rngs[b] as Rng);
        const r = results[b] as Generation;
        r.tokens.push(id);
        (seen[b] as number[]).push(id);
        next[b] = id;
        if (plan.eos.has(id)) {
          r.finishReason = 'eos';
          done[b] = true;
        } else if (r.tokens.length >= plan.maxNewTokens) done[b] = true;
      }
      if (done.every(Boolean)) break;
      // Rows that stopped keep stepping (the batch advances together) on pad tokens nobody reads.
      lastLogits = stepLogits(model, next, 1, { positions: decodePos.slice(), segments: ones, cache });
      for (let b = 0; b < B; b++) decodePos[b] = (decodePos[b] as number) + 1;
    }
  } finally {
    cache.release();
  }
  return results;
}

/** Runs a cached forward over ids (B, S) and returns the logits of each row's last position (B * vocab). */
function stepLogits(model: CausalLM, ids: Int32Array, S: number, fwd: { positions: Int32Array; segments: Int32Array; cache: KvCache }): Float32Array {
  const B = ids.length / S;
  return noGrad(() =>
    scope(() => {
      const hidden = model.forward(Tensor.from(ids, [B, S], 'int32'), fwd); // (B, S, D)
      const last = T.slice(hidden, 1, S - 1, S); // (B, 1, D): left padding puts every row's last token here
      return logits(model, last).toArray() as Float32Array; // (B, 1, V)
    }),
  );
}

/** The EOS ids generation stops at by default: the model config's and the tokenizer's. */
export function defaultEosIds(model: CausalLM, tokenizer: Tokenizer): number[] {
  return [...new Set([...model.config.eosTokenIds, ...(tokenizer.eosId === null ? [] : [tokenizer.eosId])])];
}

/** A generation's text: its tokens decoded without the stopping EOS and without special tokens. */
export function generationText(tokenizer: Tokenizer, g: Generation): string {
  return tokenizer.decode(g.finishReason === 'eos' ? g.tokens.slice(0, -1) : g.tokens, { skipSpecial: true });
}

/**
 * Encodes text prompts (BOS per the tokenizer's settings), generates, and decodes. EOS defaults to the
 * model config's eos ids and the tokenizer's EOS; padding to the tokenizer's pad id, else the first EOS.
 */
export function generateText(model: CausalLM, tokenizer: Tokenizer, prompts: readonly string[], opts: GenerationOptions & { addBos?: boolean }): TextGeneration[] {
  const eos = opts.eosTokenIds ?? defaultEosIds(model, tokenizer);
  const promptIds = prompts.map((p) => tokenizer.encode(p, { ...(opts.addBos === undefined ? {} : { addBos: opts.addBos }), addEos: false }));
  const pad = opts.padTokenId ?? tokenizer.padId ?? eos[0] ?? 0;
  const gens = generate(model, promptIds, { ...opts, eosTokenIds: eos, padTokenId: pad });
  return gens.map((g, i) => ({ ...g, prompt: prompts[i] as string, promptIds: promptIds[i] as number[], text: generationText(tokenizer, g) }));
}
