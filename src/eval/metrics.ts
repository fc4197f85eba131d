// Generation metrics: exact match and F1 (SQuAD normalisation), ROUGE-L (LCS F-measure) and corpus BLEU-4.
// Each prediction may have several references: em, f1 and rouge_l take the best one, BLEU uses them all.
// Scores are fractions in [0, 1] (multiply by 100 for the usual percentages).
//
// Chinese and Japanese text has no spaces between words, so in every metric each Han or kana character
// counts as a token of its own; for text without them the definitions are the standard ones.
import { ConfigError } from '../errors.ts';

export const METRIC_NAMES = ['em', 'f1', 'rouge_l', 'bleu4'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/** One Han ideograph or kana character: a token by itself. */
const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/u;
const CJK_ALL = /([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])/gu;
/** string.punctuation, which SQuAD's normalisation removes. */
const ASCII_PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;

/** SQuAD's normalize_answer: lower case, no punctuation, no articles (a, an, the), single spaces. */
export function normalizeAnswer(text: string): string {
  const lower = text.toLowerCase().replace(ASCII_PUNCT, '');
  // Python's \b is Unicode-aware: an article is a whole word between non-word characters.
  return lower.replace(/(?<![\p{L}\p{N}_])(a|an|the)(?![\p{L}\p{N}_])/gu, ' ').split(/\s+/).filter(Boolean).join(' ');
}

/** Tokens of a normalised answer: its words, with each CJK character split off. */
function answerTokens(text: string): string[] {
  return normalizeAnswer(text).replace(CJK_ALL, ' $1 ').split(/\s+/).filter(Boolean);
}

/**
 * Tokens for ROUGE-L and BLEU: lower-cased runs of letters and digits (Unicode), each CJK character alone;
 * punctuation and spaces separate tokens and are dropped.
 */
export function metricTokens(text: string): string[] {
  const out: string[] = [];
  let word = '';
  for (const ch of text.toLowerCase()) {
    if (CJK.test(ch)) {
      if (word) out.push(word);
      word = '';
      out.push(ch);
    } else if (/[\p{L}\p{N}]/u.test(ch)) {
      word += ch;
    } else {
      if (word) out.push(word);
      word = '';
    }
  }
  if (word) out.push(word);
  return out;
}

function refsOf(refs: string | readonly string[]): readonly string[] {
  return typeof refs === 'string' ? [refs] : refs;
}

/** 1 when the normalised prediction equals a normalised reference, else 0. */
export function exactMatch(prediction: string, references: string | readonly string[]): number {
  const p = answerTokens(prediction).join(' ');
  return refsOf(references).some((r) => answerTokens(r).join(' ') === p) ? 1 : 0;
}

function counts(tokens: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of tokens) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

/** SQuAD token F1 against the best reference; two empty answers agree (1), one empty answer scores 0. */
export function f1Score(prediction: string, references: string | readonly string[]): number {
  const p = answerTokens(prediction);
  let best = 0;
  for (const ref of refsOf(references)) {
    const r = answerTokens(ref);
    if (p.length === 0 || r.length === 0) {
      best = Math.max(best, p.length === r.length ? 1 : 0);
      continue;
    }
    const rc = counts(r);
    let same = 0;
    for (const [t, n] of counts(p)) same += Math.min(n, rc.get(t) ?? 0);
    if (same === 0) continue;
    const precision = same / p.length;
    const recall = same / r.length;
    best = Math.max(best, (2 * precision * recall) / (precision + recall));
  }
  return best;
}

function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      cur[j] = a[i - 1] === b[j - 1] ? (prev[j - 1] as number) + 1 : Math.max(prev[j] as number, cur[j - 1] as number);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length] as number;
}

/** ROUGE-L F-measure (β = 1) of the longest common token subsequence, against the best reference; 0 when either side is empty. */
export function rougeL(prediction: string, references: string | readonly string[]): number {
  const p = metricTokens(prediction);
  let best = 0;
  for (const ref of refsOf(references)) {
    const r = metricTokens(ref);
    const lcs = p.length === 0 || r.length === 0 ? 0 : lcsLength(p, r);
    if (lcs === 0) continue;
    const precision = lcs / p.length;
    const recall = lcs / r.length;
    best = Math.max(best, (2 * precision * recall) / (precision + recall));
  }
  return best;
}

function ngrams(tokens: readonly string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const g = tokens.slice(i, i + n).join('\u0001');
    m.set(g, (m.get(g) ?? 0) + 1);
  }
  return m;
}

/** Smoothing of BLEU's zero n-gram precisions (Chen & Cherry 2014, method 1). */
export const BLEU_EPSILON = 0.1;

/**
 * Corpus BLEU-4 (Papineni et al. 2002): uniform weights over modified 1- to 4-gram precisions, clipped by
 * the largest count in any reference and summed over the corpus before dividing; brevity penalty
 * exp(1 - r/c) when the candidate length c is below r, the sum of each sentence's closest reference length
 * (the shorter on ties). Smoothing: an order with no match counts BLEU_EPSILON matches (method 1), so one
 * missing 4-gram does not zero the score; with no unigram match at all BLEU is 0.
 */
export function corpusBleu4(predictions: readonly string[], references: readonly (string | readonly string[])[]): number {
  checkPairs(predictions, references);
  const matches = [0, 0, 0, 0];
  const totals = [0, 0, 0, 0];
  let c = 0;
  let r = 0;
  predictions.forEach((pred, i) => {
    const p = metricTokens(pred);
    const refs = refsOf(references[i] as string | readonly string[]).map(metricTokens);
    c += p.length;
    let closest = Infinity;
    for (const ref of refs) {
      const d = Math.abs(ref.length - p.length);
      if (d < Math.abs(closest - p.length) || (d === Math.abs(closest - p.length) && ref.length < closest)) closest = ref.length;
    }
    r += closest === Infinity ? 0 : closest;
    for (let n = 1; n <= 4; n++) {
      const maxRef = new Map<string, number>();
      for (const ref of refs) for (const [g, k] of ngrams(ref, n)) maxRef.set(g, Math.max(maxRef.get(g) ?? 0, k));
      for (const [g, k] of ngrams(p, n)) {
        matches[n - 1] = (matches[n - 1] as number) + Math.min(k, maxRef.get(g) ?? 0);
        totals[n - 1] = (totals[n - 1] as number) + k;
      }
    }
  });
  if (c === 0 || matches[0] === 0) return 0;
  let logSum = 0;
  for (let n = 0; n < 4; n++) {
    const m = matches[n] as number;
    logSum += Math.log((m === 0 ? BLEU_EPSILON : m) / Math.max(1, totals[n] as number));
  }
  const bp = c > r ? 1 : Math.exp(1 - r / c);
  return bp * Math.exp(logSum / 4);
}

function checkPairs(predictions: readonly string[], references: readonly unknown[]): void {
  if (predictions.length !== references.length) {
    throw new ConfigError(`generation metrics: ${predictions.length} predictions for ${references.length} references`, { where: 'eval references' });
  }
}

/** The requested metrics over a corpus: em, f1 and rouge_l averaged per example, bleu4 at corpus level. */
export function generationMetrics(
  predictions: readonly string[],
  references: readonly (string | readonly string[])[],
  metrics: readonly MetricName[] = METRIC_NAMES,
): Partial<Record<MetricName, number>> {
  checkPairs(predictions, references);
  const out: Partial<Record<MetricName, number>> = {};
  const mean = (f: (p: string, r: string | readonly string[]) => number): number =>
    predictions.length === 0 ? 0 : predictions.reduce((s, p, i) => s + f(p, references[i] as string | readonly string[]), 0) / predictions.length;
  for (const m of metrics) {
    if (m === 'em') out.em = mean(exactMatch);
    else if (m === 'f1') out.f1 = mean(f1Score);
    else if (m === 'rouge_l') out.rouge_l = mean(rougeL);
    else if (m === 'bleu4') out.bleu4 = corpusBleu4(predictions, references);
    else throw new ConfigError(`unknown generation metric ${String(m)}; known: ${METRIC_NAMES.join(', ')}`, { where: 'callbacks.eval.metrics' });
  }
  return out;
}
