// Activation recompute: run a block without keeping its activations, and run it again during backward.
import { isGradEnabled, noGrad, record, withGrad } from '../autograd.ts';
import { type ComputeDtype, autocast, computeDtype } from '../autocast.ts';
import { currentScope } from '../storage.ts';
import { Tensor } from '../tensor.ts';
import type { Rule } from './util.ts';

interface RecomputeCtx { fn: (...xs: Tensor[]) => Tensor; inputs: Tensor[]; dtype: ComputeDtype }

/**
 * out = fn(...inputs), keeping only the inputs for backward: the block's intermediates are freed with the
 * step scope as usual, and backward recomputes them. fn must be deterministic (our kernels are) and may use
 * trainable parameters, whose gradients accumulate as if fn had run normally; `trainableWeights` says it does
 * (so that the block gets a backward even when no input needs a gradient).
 */
export function recompute(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: { trainableWeights?: boolean } = {}): Tensor {
  const out = noGrad(() => fn(...inputs));
  // Backward runs outside any autocast scope: it re-enters the one the block ran under, so the
  // recomputed activations are the same bits as the first pass.
  const ctx: RecomputeCtx = { fn, inputs, dtype: computeDtype() };
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
    const out = withGrad(() => autocast(c.dtype, () => c.fn(...detached)));
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
