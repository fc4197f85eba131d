// One prompt decoded token by token with a KV cache, handing each token to a callback as it is chosen (for
// `sftkit chat`). Same steps, sampling and seeding as generate() with one row, so the tokens are the same.
import { ConfigError } from '../errors.ts';
import { KvCache } from '../models/kv-cache.ts';
import { type CausalLM, logits } from '../models/model.ts';
import * as T from '../tensor/index.ts';
import { Rng, Tensor, noGrad, scope } from '../tensor/index.ts';
import type { Generation, GenerationOptions } from './generate.ts';
import { nextToken, resolveSampling } from './sampling.ts';

/** Generates after `prompt`, calling `onToken` with each new id (the stopping EOS included); returns them all. */
export function generateStream(model: CausalLM, prompt: readonly number[], opts: GenerationOptions, onToken: (id: number) => void): Generation {
  const sampling = resolveSampling(opts);
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 1) {
    throw new ConfigError(`max_new_tokens must be a positive integer, got ${opts.maxNewTokens}`, { where: 'generation.max_new_tokens' });
  }
  const vocab = model.config.vocabSize;
  if (prompt.length === 0) throw new ConfigError('the prompt is empty: generation needs at least one token', { where: 'prompt' });
  const bad = prompt.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
  if (bad !== undefined) throw new ConfigError(`the prompt has token id ${bad}, outside the vocabulary of ${vocab}`, { where: 'prompt' });
  // GPT-2 has no positions past n_positions: generate what fits.
  const room = model.config.family === 'gpt2' ? model.config.nPositions - prompt.length : Infinity;
  const maxNew = Math.min(opts.maxNewTokens, room);
  if (maxNew <= 0) throw new ConfigError(`the prompt has ${prompt.length} tokens, no room left to generate`, { where: 'prompt' });
  const eos = new Set(opts.eosTokenIds ?? []);
  const rng = new Rng(opts.seed ?? 0);
  const seen = [...prompt];
  const out: Generation = { tokens: [], finishReason: 'length' };
  const cache = KvCache.forConfig(model.config, 1, prompt.length + maxNew);
  try {
    const step = (ids: readonly number[], from: number): Float32Array =>
      noGrad(() =>
        scope(() => {
          const S = ids.length;
          const positions = Int32Array.from(ids, (_, i) => from + i);
          const hidden = model.forward(Tensor.from(Int32Array.from(ids), [1, S], 'int32'), { positions, segments: new Int32Array(S).fill(1), cache }); // (1, S, D)
          return logits(model, T.slice(hidden, 1, S - 1, S)).toArray() as Float32Array; // (1, 1, V)
        }),
      );
    let last = step(prompt, 0);
    for (;;) {
      const id = nextToken(last, seen, sampling, rng);
      out.tokens.push(id);
      seen.push(id);
      onToken(id);
      if (eos.has(id)) {
        out.finishReason = 'eos';
        break;
      }
      if (out.tokens.length >= maxNew) break;
      last = step([id], prompt.length + out.tokens.length - 1);
    }
  } finally {
    cache.release();
  }
  return out;
}
