// What every causal LM of sftkit offers the trainer, evaluation and generation, and shared helpers.
import type { ParamSpec, ParameterSet, WeightOptions } from '../nn/parameters.ts';
import * as T from '../tensor/index.ts';
import type { Tensor } from '../tensor/index.ts';
import type { ModelConfig } from './config.ts';
import type { ForwardCache } from './kv-cache.ts';
import type { ExpectedTensor } from './tensor-table.ts';

export interface ForwardOptions {
  /** Position id of every token (B*T), e.g. from positionIds(). */
  positions: Int32Array;
  /** Segment ids (B*T) of packed rows; attention stays inside a segment. */
  segments?: Int32Array | null;
  /** Recompute each block's activations in backward instead of keeping them. */
  recompute?: boolean;
  /**
   * Incremental decoding (inside noGrad): this step's k/v are appended to the cache and attention sees every
   * cached token; `positions` and `segments` then cover only the new tokens.
   */
  cache?: ForwardCache | null;
}

/** What a model class is built with: the initialisation and which weights are frozen, in what dtype. */
export interface ModelOptions {
  seed?: number;
  initStd?: number;
  weights?: WeightOptions;
}

export interface CausalLM {
  readonly config: ModelConfig;
  readonly params: ParameterSet;
  /** Final hidden states (B, T, hidden) for int32 ids (B, T). */
  forward(ids: Tensor, opts: ForwardOptions): Tensor;
  /** The output projection (vocab, hidden). */
  lmHead(): Tensor;
  /** Its weight's name: lm_head.weight, or the embedding's when tied. */
  readonly lmHeadName: string;
  release(): void;
}

/** Parameter specs from a checkpoint's tensor table: norms start at one, biases at zero, weights normal. */
export function paramSpecs(tensors: readonly ExpectedTensor[], std: number): ParamSpec[] {
  return tensors
    .filter((t) => t.optional !== 'tied')
    .map((t) => ({
      name: t.name,
      shape: t.shape,
      init: /(norm|ln_\d|ln_f)\.weight$/.test(t.name) ? { kind: 'ones' as const } : t.name.endsWith('.bias') ? { kind: 'zeros' as const } : { kind: 'normal' as const, std },
    }));
}

/** Logits (B, T, vocab) = hidden @ lm_headᵀ (evaluation and generation; training uses lossSum). */
export function logits(model: CausalLM, hidden: Tensor): Tensor {
  // A frozen bf16 head (a LoRA/QLoRA base) is read panel by panel, not widened whole at every decode step.
  const rows = model.params.frozenRows(model.lmHeadName);
  return rows ? T.frozenLinear(hidden, rows) : T.matmul(hidden, T.mT(model.lmHead()));
}

/**
 * Sum of token losses and trained-token count for labels (B, T) int32 (-100 ignored). A number is the vocab
 * chunk (as before); with { gradScale } training makes the loss and its gradients in one sweep (see
 * T.crossEntropy for the contract: backward must bring exactly that gradient to lossSum).
 */
export function lossSum(model: CausalLM, hidden: Tensor, labels: Tensor, opts: number | T.CrossEntropyOptions = {}): T.CrossEntropyResult {
  const [B, S, D] = hidden.shape as [number, number, number];
  return T.crossEntropy(T.reshape(hidden, [B * S, D]), model.lmHead(), T.reshape(labels, [B * S]), typeof opts === 'number' ? { chunk: opts } : opts);
}

/** No weight decay on norms, biases and embeddings (DESIGN.md's default). */
export function noDecay(name: string): boolean {
  return /(norm|ln_\d|ln_f)\.weight$|\.bias$|embed_tokens|wte|wpe/.test(name);
}
