// The peak memory of a training run, estimated before it starts (printed by `sftkit run`, which refuses a
// run that does not fit): trainable weights with their gradients and AdamW moments, frozen weights at their
// storage dtype, the activations backward keeps, the loss's workspace and the process itself. Calibrated
// against measured peak RSS (bench/train/memory.ts; docs/BENCHMARKS.md) to within 15% at configs M and L.
import type { ModelConfig } from '../models/config.ts';
import type { WeightCounts } from '../nn/parameters.ts';
import { DEFAULT_BUCKET_BYTES } from '../distributed/gradients.ts';

export interface MemoryEstimateInput {
  config: ModelConfig;
  weights: WeightCounts;
  batchSize: number;
  seqLength: number;
  recompute: boolean;
  /** Data-parallel ranks and what is sharded over them: zeroStage 1 the moments, 2 also the gradients, 3 also the weights. */
  worldSize?: number;
  /** ZeRO-1 (the older flag): zeroStage 1 when zeroStage is not given. */
  optimizerShard?: boolean;
  /**
   * LoRA adapters (nn/lora.ts), whose weights are the trainable ones of `weights`: each adapted module keeps
   * x·Aᵀ (r floats per token) — the loraLinear op adds the adapter's term into the base's output — and, with
   * dropout, the dropped input (in floats per token; the op regenerates the mask from its keys in backward).
   * GPT-2's Conv1D modules (fanInFanOut) are composed of ops: they also keep their (out)-wide delta before and
   * after the scale, and with dropout the mask beside the dropped input (2·in).
   */
  lora?: { modules: readonly { inFeatures: number; outFeatures: number; rank: number; fanInFanOut?: boolean }[]; dropout: number };
  zeroStage?: 0 | 1 | 2 | 3;
  /** Gradient bucket bytes (parallel_config.bucket_mb; default DEFAULT_BUCKET_BYTES). */
  bucketBytes?: number;
  /**
   * The output head is frozen in bfloat16 or quantized storage: the fused loss widens it to fp32 once per step
   * (vocab × hidden × 4 bytes, 500 MiB at Llama-2-7B).
   */
  widenedHead?: boolean;
}

/** Bytes by kind; `total` is their sum. */
export interface MemoryEstimate {
  /**
   * Trainable weights: fp32 weight + gradient (8 bytes each), plus the AdamW moments below. At ZeRO stage 2
   * the gradient is this rank's shard (4 / N bytes) plus at most two gradient buckets in flight. At stage 3
   * the weight is this rank's shard too, plus the layer groups gathered at once: with recompute the
   * embeddings, lm_head and two layers; without it every layer (the graph keeps them until backward).
   */
  trainable: number;
  /** AdamW's two fp32 moments of the trainable weights (this rank's share under ZeRO stages 1 to 3). */
  optimizer: number;
  /** Frozen weights at their storage dtype (mapped ones count: their pages are read every step). */
  frozen: number;
  /** Activations kept for backward, and the gradients in flight beside them. */
  activations: number;
  /** The fused loss's logits block, the final hidden states with their gradient, and a widened frozen head. */
  workspace: number;
  /**
   * Node, V8 and the addon before any model (measured: ≈ 110 MB), plus the host copy of the largest weight
   * when weights reach the addon through JavaScript buffers (an fp32 model, not file-mapped): V8 frees those
   * buffers only at its next major collection, so the last big one (embeddings or lm_head) is typically still
   * resident at the step's peak (94 MB at config L: the estimate was 10% under the measured peak without it).
   */
  runtime: number;
  total: number;
}

/** What the process holds before it builds a model (Node 20 + tsx + the addon, measured with VmRSS). */
export const RUNTIME_BYTES = 110 * 2 ** 20;

/** The fused loss's block of logits (src/tensor/ops/fused.ts: sweepRowBlock keeps it ≤ 32 MiB). */
const LOSS_BLOCK_BYTES = 32 * 2 ** 20;

/**
 * Floats kept per token and layer for backward, with the caching allocator's rounding: a Llama block keeps its
 * input, the two norms' outputs, q/k/v and the rotated q/k, attention's output, o, the residual, gate, up,
 * SwiGLU's output and down (9·D + 2·kv + 3·F); GPT-2's block the same shape with qkv fused and GELU.
 */
function floatsPerTokenLayer(c: ModelConfig): { kept: number; block: number } {
  if (c.family === 'llama') {
    const d = c.hiddenSize;
    const kv = c.numKeyValueHeads * c.headDim;
    const f = c.intermediateSize;
    return { kept: 9 * d + 2 * kv + 3 * f, block: 9 * d + 2 * kv + 3 * f };
  }
  const d = c.nEmbd;
  const f = c.nInner;
  return { kept: 10 * d + 2 * f, block: 10 * d + 2 * f };
}

function hiddenOf(c: ModelConfig): number {
  return c.family === 'llama' ? c.hiddenSize : c.nEmbd;
}

function ffnOf(c: ModelConfig): number {
  return c.family === 'llama' ? c.intermediateSize : c.nInner;
}

export function estimateTrainingMemory(i: MemoryEstimateInput): MemoryEstimate {
  const c = i.config;
  const tokens = i.batchSize * i.seqLength;
  const world = i.worldSize ?? 1;
  const stage = i.zeroStage ?? (i.optimizerShard ? 1 : 0);
  const p = i.weights.trainableParams;
  // ZeRO-3's gather groups (distributed/zero3.ts): the embeddings and lm_head (vocab × hidden each) and a layer.
  const vocabGroup = Math.min(p, c.vocabSize * hiddenOf(c));
  const layerGroup = Math.min(p, Math.max(0, p - 2 * vocabGroup) / c.numHiddenLayers);
  const grads =
    stage >= 3 ? (p * 4) / world + Math.min(2 * Math.max(vocabGroup, layerGroup) * 4, p * 4)
    : stage >= 2 ? (p * 4) / world + Math.min(2 * (i.bucketBytes ?? DEFAULT_BUCKET_BYTES), p * 4)
    : p * 4;
  const weights = stage >= 3 ? (p * 4) / world + (i.recompute ? Math.min(p, 2 * vocabGroup + 2 * layerGroup) * 4 : p * 4) : p * 4;
  const trainable = weights + grads;
  const optimizer = (p * 8) / (stage >= 1 ? world : 1);
  const frozen = i.weights.frozenBytes;
  const per = floatsPerTokenLayer(c);
  const layers = c.numHiddenLayers;
  // Without recompute every block's activations are alive when backward starts; with it, each block keeps
  // its input and one block at a time is rebuilt in full.
  const kept = i.recompute ? tokens * (layers * hiddenOf(c) + per.block) : tokens * layers * per.kept;
  // Backward's own temporaries beside them: the widest gradients of one block (dgate, dup, dX of the MLP).
  const inFlight = tokens * (3 * ffnOf(c) + 2 * hiddenOf(c));
  // LoRA's adapter activations, over every adapted module (one block's share under recompute).
  const loraFloats = (i.lora?.modules ?? []).reduce((n, m) => n + m.rank + (m.fanInFanOut === true ? 2 * m.outFeatures : 0) + ((i.lora?.dropout ?? 0) > 0 ? (m.fanInFanOut === true ? 2 : 1) * m.inFeatures : 0), 0);
  const loraKept = tokens * (i.recompute ? loraFloats / layers : loraFloats);
  const activations = (kept + inFlight + loraKept) * 4;
  // The loss: final hidden states, their gradient and norm output, and one block of logits.
  const logitsBlock = Math.min(LOSS_BLOCK_BYTES, tokens * c.vocabSize * 4);
  const workspace = tokens * hiddenOf(c) * 3 * 4 + logitsBlock + (i.widenedHead ? c.vocabSize * hiddenOf(c) * 4 : 0);
  const hostCopies = i.weights.frozenMappedBytes === 0 && i.weights.frozenBytes >= 4 * i.weights.frozenParams;
  const runtime = RUNTIME_BYTES + (hostCopies ? Math.max(c.vocabSize * hiddenOf(c), hiddenOf(c) * ffnOf(c)) * 4 : 0);
  return { trainable, optimizer, frozen, activations, workspace, runtime, total: trainable + optimizer + frozen + activations + workspace + runtime };
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;

/** One line: the total and its parts. */
export function formatMemoryEstimate(e: MemoryEstimate): string {
  return (
    `estimated peak memory: ${gib(e.total)} = trainable ${gib(e.trainable)} (weights + gradients) + optimizer ${gib(e.optimizer)}` +
    ` + frozen ${gib(e.frozen)} + activations ${gib(e.activations)} + loss workspace ${gib(e.workspace)} + runtime ${gib(e.runtime)}`
  );
}

/**
 * The lowest ZeRO stage (0 to 3) whose estimate fits in `available` bytes at this world size, with its
 * estimate; null when none does. (Stage 3 saves memory over stage 2 only with recompute.)
 */
export function suggestZeroStage(i: MemoryEstimateInput, available: number): { stage: 0 | 1 | 2 | 3; estimate: MemoryEstimate } | null {
  for (const stage of [0, 1, 2, 3] as const) {
    const estimate = estimateTrainingMemory({ ...i, zeroStage: stage });
    if (estimate.total <= available) return { stage, estimate };
  }
  return null;
}
