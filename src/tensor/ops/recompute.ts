// Activation recompute: run a block without keeping its activations, and run it again during backward.
import { isGradEnabled, noGrad, record, withGrad } from '../autograd.ts';
import { type ComputeDtype, autocast, computeDtype } from '../autocast.ts';
import { currentScope, withScope } from '../storage.ts';
import type { Rng } from '../rng.ts';
import { Tensor } from '../tensor.ts';
import type { Rule } from './util.ts';

interface RecomputeCtx { fn: (...xs: Tensor[]) => Tensor; inputs: Tensor[]; dtype: ComputeDtype; rngs: readonly Rng[]; states: RngState[] }

type RngState = ReturnType<Rng['getState']>;

/** Depth of recompute first passes running (they run without gradients but stand for a training forward). */
let firstPasses = 0;

/**
 * Whether a training block's first pass under recompute is running: it runs without gradients, yet it is the
 * training forward (backward replays it with gradients), so ops that act only in training (dropout) act here.
 */
export function inRecomputeForward(): boolean {
  return firstPasses > 0;
}

/**
 * out = fn(...inputs), keeping only the inputs for backward: the block's intermediates are freed when it
 * returns, and backward recomputes them. fn must be deterministic (our kernels are) and may use
 * trainable parameters, whose gradients accumulate as if fn had run normally; `trainableWeights` says it does
 * (so that the block gets a backward even when no input needs a gradient). `rngs`: the random streams fn draws
 * from (LoRA dropout), replayed from the same state in backward.
 */
export function recompute(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: { trainableWeights?: boolean; rngs?: readonly Rng[] } = {}): Tensor {
  // The random streams the block draws from (dropout) are captured here and rewound for the replay, so the
  // replay draws the same masks and the streams end where they would have without recompute.
  const rngs = opts.rngs ?? [];
  const states = rngs.map((r) => r.getState());
  const training = isGradEnabled();
  if (training) firstPasses++;
  let out: Tensor;
  try {
    // In a scope of its own: the block's intermediates are freed as soon as it returns (only its output lives
    // on), so the step holds one block's activations at a time, not every block's until the step ends.
    out = noGrad(() => withScope(() => fn(...inputs), (t) => [t.storage]));
  } finally {
    if (training) firstPasses--;
  }
  // Backward runs outside any autocast scope: it re-enters the one the block ran under, so the
  // recomputed activations are the same bits as the first pass.
  const ctx: RecomputeCtx = { fn, inputs, dtype: computeDtype(), rngs, states };
  // A fresh output tensor object whose node is the whole block.
  const node = new Tensor(out.storage, out.shape, out.strides, out.offset, out.dtype);
  // A block with trainable weights needs its backward even when its input needs no gradient (the first block of
  // a LoRA model, whose embeddings are frozen): the node is recorded whatever the inputs say.
  if (opts.trainableWeights === true && isGradEnabled()) {
    node.requiresGrad = true;
    node.gradFn = { op: 'recompute', inputs: [...inputs], ctx };
    return node;
  }
  return record(node, 'recompute', [...inputs], ctx);
}

export const rules = {
  recompute: ((c, g, backward) => {
    const detached = c.inputs.map((x) => {
      const d = x.detach();
      d.requiresGrad = x.requiresGrad;
      return d;
    });
    const now = c.rngs.map((r) => r.getState());
    c.rngs.forEach((r, i) => r.setState(c.states[i] as RngState));
    let out: Tensor;
    try {
      out = withGrad(() => autocast(c.dtype, () => c.fn(...detached)));
    } finally {
      c.rngs.forEach((r, i) => r.setState(now[i] as RngState));
    }
    // The recomputed activations are private to this rule: free each as soon as the inner backward is done with it.
    if (out.requiresGrad) withGrad(() => backward(out, g, { releaseActivations: true }));
    // The inputs' gradients were made persistent (as leaves' are); hand them to the step scope instead.
    return detached.map((d) => {
      if (!d.requiresGrad || !d.grad) return null;
      d.grad.storage.escape(currentScope());
      return d.grad;
    });
  }) as Rule<RecomputeCtx>,
};
