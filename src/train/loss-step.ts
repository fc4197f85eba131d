// One micro-batch's forward, fused loss and backward: the one place that owns the fused loss's gradient
// contract (T.crossEntropy with { gradScale }: the gradient of lm_head is made during the forward, and
// backward must then bring exactly gradScale to the loss sum). The trainer and bench/train call it.
import { type CausalLM, lossSum } from '../models/model.ts';
import { positionIds } from '../models/rope.ts';
import * as T from '../tensor/index.ts';
import { Tensor, backward, scope } from '../tensor/index.ts';

/** One micro-batch, already shifted (data/shift.ts): inputs and targets (rows × seqLength). */
export interface MicroBatch {
  rows: number;
  ids: Int32Array;
  targets: Int32Array;
  segments?: Int32Array | null;
}

export interface LossStepOptions {
  seqLength: number;
  /**
   * Trained tokens of the whole global batch (every micro-batch, every rank): the loss is their mean, so each
   * micro-batch's loss sum is backpropagated with gradient 1 / normaliser. 0: no trained token, no backward.
   */
  normaliser: number;
  /** Compute dtype of the GEMMs (model.dtype); weights, gradients and every other op stay fp32. */
  dtype?: T.ComputeDtype;
  recompute?: boolean;
}

/**
 * Forward, loss and backward of one micro-batch; returns its loss sum (not normalised). Gradients are added
 * to whatever each trainable weight's gradient goes to (its .grad, or a GradTarget such as a shard bucket),
 * so micro-batches accumulate; nothing may zero them between micro-batches of one step. Everything else the
 * step made is released before it returns.
 */
export function lossStep(model: CausalLM, batch: MicroBatch, opts: LossStepOptions): number {
  const S = opts.seqLength;
  return scope(() =>
    T.autocast(opts.dtype ?? 'float32', () => {
      const hidden = model.forward(Tensor.from(batch.ids, [batch.rows, S], 'int32'), {
        positions: positionIds(batch.rows, S, { segments: batch.segments ?? null }),
        segments: batch.segments ?? null,
        recompute: opts.recompute ?? false,
      });
      const labels = Tensor.from(batch.targets, [batch.rows, S], 'int32');
      if (!(opts.normaliser > 0)) return lossSum(model, hidden, labels).lossSum.item();
      // The scale is known before the micro-batches: the loss and its gradients come from one sweep, and
      // backward brings exactly that scale (crossEntropy checks it).
      const gradScale = 1 / opts.normaliser;
      const { lossSum: sum } = lossSum(model, hidden, labels, { gradScale });
      // Read the loss first: backward frees the graph's activations as it goes.
      const value = sum.item();
      backward(T.scale(sum, gradScale), undefined, { releaseActivations: true });
      return value;
    }),
  );
}
