// Text generation: KV-cache batched decoding with greedy or seeded sampling (HF logits-processor semantics).
export { defaultEosIds, generate, generateText, generationText } from './generate.ts';
export type { Generation, GenerationOptions, TextGeneration } from './generate.ts';
export { applyFrequencyPenalties, applyRepetitionPenalty, applyTopK, applyTopP, argmax, nextToken, processScores, resolveSampling } from './sampling.ts';
export type { ResolvedSampling, SamplingOptions } from './sampling.ts';
export { generateStream } from './stream.ts';
