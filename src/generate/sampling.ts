// Next-token choice from one row of logits, with Hugging Face transformers' semantics: repetition penalty,
// then (when sampling) temperature, top-k and top-p, then a draw from the softmax through a seeded Rng.
// OpenAI's frequency and presence penalties (over the generated tokens only, as vLLM applies them) come
// right after the repetition penalty; both are 0 (off) unless a caller sets them.
import { ConfigError } from '../errors.ts';
import type { Rng } from '../tensor/index.ts';

export interface SamplingOptions {
  /** Sample from the distribution; false picks the most likely token (HF ignores the warpers then, so do we). */
  doSample?: boolean;
  /** Logits are divided by it before sampling (> 0). */
  temperature?: number;
  /** Keep the k most likely tokens (0: all); ties with the k-th are kept, as HF's TopKLogitsWarper does. */
  topK?: number;
  /** Keep the most likely tokens whose probabilities sum to at least p (1: all); the best token always stays. */
  topP?: number;
  /** HF's repetition penalty: logits of tokens already in the row (prompt and generated) are divided by it when positive, multiplied when negative. */
  repetitionPenalty?: number;
  /** OpenAI's frequency penalty: each generated token's logit loses this times its count so far (-2..2). */
  frequencyPenalty?: number;
  /** OpenAI's presence penalty: each token generated at least once loses this from its logit (-2..2). */
  presencePenalty?: number;
}

export interface ResolvedSampling {
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  frequencyPenalty: number;
  presencePenalty: number;
}

/** Checks the options and fills in the defaults (greedy, 1.0, 0, 1.0, 1.0, 0, 0). */
export function resolveSampling(opts: SamplingOptions): ResolvedSampling {
  const s = {
    doSample: opts.doSample ?? false,
    temperature: opts.temperature ?? 1,
    topK: opts.topK ?? 0,
    topP: opts.topP ?? 1,
    repetitionPenalty: opts.repetitionPenalty ?? 1,
    frequencyPenalty: opts.frequencyPenalty ?? 0,
    presencePenalty: opts.presencePenalty ?? 0,
  };
  const bad = (field: string, value: number, rule: string): ConfigError => new ConfigError(`generation.${field} must be ${rule}, got ${value}`, { where: `generation.${field}` });
  if (!(s.temperature > 0) || !Number.isFinite(s.temperature)) throw bad('temperature', s.temperature, 'a positive number');
  if (!Number.isInteger(s.topK) || s.topK < 0) throw bad('top_k', s.topK, 'an integer >= 0');
  if (!(s.topP > 0 && s.topP <= 1)) throw bad('top_p', s.topP, 'in (0, 1]');
  if (!(s.repetitionPenalty > 0) || !Number.isFinite(s.repetitionPenalty)) throw bad('repetition_penalty', s.repetitionPenalty, 'a positive number');
  if (!(Math.abs(s.frequencyPenalty) <= 2)) throw bad('frequency_penalty', s.frequencyPenalty, 'in [-2, 2]');
  if (!(Math.abs(s.presencePenalty) <= 2)) throw bad('presence_penalty', s.presencePenalty, 'in [-2, 2]');
  return s;
}

/** HF RepetitionPenaltyLogitsProcessor on one row, in place: each distinct seen token is penalised once. */
export function applyRepetitionPenalty(scores: Float64Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(seen)) {
    const s = scores[id];
    if (s === undefined) continue;
    scores[id] = s < 0 ? s * penalty : s / penalty;
  }
}

/**
 * OpenAI's frequency and presence penalties on one row, in place: a token generated c > 0 times so far loses
 * c * frequency + presence from its logit.
 */
export function applyFrequencyPenalties(scores: Float64Array, generated: Iterable<number>, frequency: number, presence: number): void {
  if (frequency === 0 && presence === 0) return;
  const counts = new Map<number, number>();
  for (const id of generated) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const [id, c] of counts) {
    const s = scores[id];
    if (s !== undefined) scores[id] = s - c * frequency - presence;
  }
}

/** HF TopKLogitsWarper: scores below the k-th largest become -inf. */
export function applyTopK(scores: Float64Array, k: number): void {
  if (k <= 0 || k >= scores.length) return;
  const kth = kthLargest(scores, k);
  for (let i = 0; i < scores.length; i++) if ((scores[i] as number) < kth) scores[i] = -Infinity;
}

/** The k-th largest value (duplicates counted), by a min-heap of the k largest: O(n log k), no full sort. */
function kthLargest(values: Float64Array, k: number): number {
  const heap = new Float64Array(k);
  let size = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (size < k) {
      // Sift up.
      let at = size++;
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if ((heap[parent] as number) <= v) break;
        heap[at] = heap[parent] as number;
        at = parent;
      }
      heap[at] = v;
    } else if (v > (heap[0] as number)) {
      // Replace the root and sift down.
      let at = 0;
      for (;;) {
        const l = 2 * at + 1;
        if (l >= k) break;
        const r = l + 1;
        const c = r < k && (heap[r] as number) < (heap[l] as number) ? r : l;
        if ((heap[c] as number) >= v) break;
        heap[at] = heap[c] as number;
        at = c;
      }
      heap[at] = v;
    }
  }
  return heap[0] as number;
}

/**
 * HF TopPLogitsWarper: sorted ascending, tokens whose cumulative probability stays <= 1 - p are removed;
 * the most likely token is always kept. Ties are ordered by token id. The sort is a typed-array sort of the
 * scores alone (equal scores add the same terms, so the sums do not depend on how ties are ordered); the
 * removed tokens are then found by value: all below the last removed score, and its ties lowest id first.
 */
export function applyTopP(scores: Float64Array, p: number): void {
  if (p >= 1) return;
  const sorted = scores.filter((v) => v !== -Infinity).sort();
  const probs = softmaxOf(sorted);
  let cum = 0;
  let removed = 0;
  for (; removed < sorted.length - 1; removed++) {
    cum += probs[removed] as number;
    if (cum > 1 - p) break;
  }
  if (removed === 0) return;
  const last = sorted[removed - 1] as number;
  let ties = removed;
  for (let j = 0; j < removed; j++) if ((sorted[j] as number) < last) ties--;
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i] as number;
    if (v < last) scores[i] = -Infinity;
    else if (v === last && ties > 0) {
      scores[i] = -Infinity;
      ties--;
    }
  }
}

function softmaxOf(values: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) if ((values[i] as number) > max) max = values[i] as number;
  const out = new Float64Array(values.length);
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const e = Math.exp((values[i] as number) - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / sum;
  return out;
}

/** Index of the largest score (the first on ties, as torch.argmax). */
export function argmax(scores: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if ((scores[i] as number) > (scores[best] as number)) best = i;
  return best;
}

/**
 * The processed scores of one row: what greedy takes the argmax of, or what sampling draws from (as logits).
 * `seen` is the row's prompt and generated tokens (repetition penalty), `generated` the generated ones only
 * (frequency and presence penalties).
 */
export function processScores(logits: ArrayLike<number>, seen: Iterable<number>, s: ResolvedSampling, generated: Iterable<number> = []): Float64Array {
  const scores = Float64Array.from(logits);
  applyRepetitionPenalty(scores, seen, s.repetitionPenalty);
  applyFrequencyPenalties(scores, generated, s.frequencyPenalty, s.presencePenalty);
  if (!s.doSample) return scores;
  if (s.temperature !== 1) for (let i = 0; i < scores.length; i++) scores[i] = (scores[i] as number) / s.temperature;
  applyTopK(scores, s.topK);
  applyTopP(scores, s.topP);
  return scores;
}

/** Chooses the next token of one row (see processScores for `seen` and `generated`). */
export function nextToken(logits: ArrayLike<number>, seen: Iterable<number>, s: ResolvedSampling, rng: Rng, generated: Iterable<number> = []): number {
  // Plain greedy (no penalty): the argmax of the logits as they are, without a float64 copy of the row.
  if (!s.doSample && s.repetitionPenalty === 1 && s.frequencyPenalty === 0 && s.presencePenalty === 0) return argmax(logits);
  const scores = processScores(logits, seen, s, generated);
  if (!s.doSample) return argmax(scores);
  // Inverse-CDF draw over the softmax of the surviving scores, in vocabulary order.
  let max = -Infinity;
  for (const v of scores) if (v > max) max = v;
  let sum = 0;
  for (let i = 0; i < scores.length; i++) {
    const e = scores[i] === -Infinity ? 0 : Math.exp((scores[i] as number) - max);
    scores[i] = e;
    sum += e;
  }
  const u = rng.uniform() * sum;
  let cum = 0;
  let last = 0;
  for (let i = 0; i < scores.length; i++) {
    const e = scores[i] as number;
    if (e === 0) continue;
    cum += e;
    last = i;
    if (u < cum) return i;
  }
  return last;
}
