// Evaluation: perplexity over token records and generation metrics (em, f1, rouge_l, bleu4).
export { PerplexityAccumulator, perplexity } from './perplexity.ts';
export type { PerplexityResult, TokenBatch } from './perplexity.ts';
export { BLEU_EPSILON, METRIC_NAMES, corpusBleu4, exactMatch, f1Score, generationMetrics, metricTokens, normalizeAnswer, rougeL } from './metrics.ts';
export type { MetricName } from './metrics.ts';
export { evaluateGeneration } from './generation-eval.ts';
export type { GenerationEvalResult, GenerationExample } from './generation-eval.ts';
