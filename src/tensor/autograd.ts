// Recording the graph of reverse-mode autograd: each op's output gets a GradNode {op, inputs, ctx} (ctx: what
// the op's backward rule reads: saved tensors and attributes), gradient sinks into leaves' .grad, and no-grad
// scopes. The backward pass (backward.ts) runs the rule of each node's op from the table (ops/table.ts).
import type { OpName } from './op-names.ts';
import { sameShape } from './shape.ts';
import { type GradNode, Tensor } from './tensor.ts';

export type { GradNode } from './tensor.ts';

/**
 * What a backward rule returns for an input whose gradient it has already added into that leaf's .grad
 * (see gradSink): the rule's kernel accumulated in place, so no gradient tensor exists to hand back.
 */
export const ACCUMULATED: unique symbol = Symbol('accumulated into .grad');
/** A backward rule's result for one input. */
export type InputGrad = Tensor | null | typeof ACCUMULATED;

export interface BackwardOptions {
  /**
   * Free each intermediate tensor of the graph (the forward's activations, except the root) as soon as
   * backward no longer needs it, as PyTorch frees saved tensors, so that activations and gradients are not
   * all alive at once. The graph's intermediates must not be read afterwards (read the loss before).
   */
  releaseActivations?: boolean;
}

// --- Gradient targets (a seam for sharded gradients): by default a leaf's gradient accumulates into its
// .grad; a GradTarget set on a leaf redirects every write of its gradient (the fused kernels' in-place
// accumulation through gradSink, and backward's leaf accumulation) into a tensor the owner chooses per
// backward, e.g. a slot of a gradient bucket that ZeRO-2 reduce-scatters into a shard, so that no
// full-size .grad has to exist.

/** Where a leaf's gradient goes while the target is set. */
export interface GradTarget {
  /** A dense fp32 tensor of t's shape that t's gradient is added (+=) into. */
  into(t: Tensor): Tensor;
}

const gradTargets = new WeakMap<Tensor, GradTarget>();

/** Redirects leaf t's gradient to `target` (null: back to .grad). */
export function setGradTarget(t: Tensor, target: GradTarget | null): void {
  if (target) gradTargets.set(t, target);
  else gradTargets.delete(t);
}

/** The tensor leaf t's gradient is accumulated into: its GradTarget's choice, else its .grad (maybe null). */
export function gradDestination(t: Tensor): Tensor | null {
  const target = gradTargets.get(t);
  return target ? target.into(t) : t.grad;
}

/**
 * The buffer a backward rule may accumulate input t's gradient straight into (returning ACCUMULATED for it):
 * its GradTarget's tensor or its .grad, or null when t is not a trainable leaf with such a dense fp32 buffer.
 * Saves a temporary gradient and the pass that would add it in.
 */
export function gradSink(t: Tensor | null): Tensor | null {
  if (!t || t.gradFn || !t.requiresGrad) return null;
  const g = gradDestination(t);
  if (!g) return null;
  return g.dtype === 'float32' && g.isContiguous && sameShape(g.shape, t.shape) ? g : null;
}

/**
 * Where a kernel that accumulates (+=) input t's gradient should write it: t's .grad when gradSink allows,
 * returned to backward as ACCUMULATED; otherwise a new zeroed tensor of `shape`, returned as the gradient.
 */
export function gradAccumulator(t: Tensor, shape: readonly number[]): { into: Tensor; result: InputGrad } {
  const sink = gradSink(t);
  if (sink) return { into: sink, result: ACCUMULATED };
  const zeros = Tensor.zeros([...shape], 'float32', { backend: t.backend });
  return { into: zeros, result: zeros };
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording ops (inference, optimizer steps, recompute forward). */
export function noGrad<T>(fn: () => T): T {
  const before = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = before;
  }
}

/** Runs fn with recording on (recompute's backward). */
export function withGrad<T>(fn: () => T): T {
  const before = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = before;
  }
}

/** True when an op on these inputs must be recorded. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return gradEnabled && inputs.some((t) => t?.requiresGrad === true);
}

/**
 * Attaches a node {op, inputs, ctx} to `out` when any input requires grad; returns out. Backward calls
 * BACKWARD_RULES[op](ctx, d loss / d out), so ctx must be what that rule reads (the op file's Ctx type).
 */
export function record(out: Tensor, op: OpName, inputs: (Tensor | null)[], ctx: unknown): Tensor {
  if (!needsGrad(...inputs)) return out;
  out.requiresGrad = true;
  const node: GradNode = { op, inputs, ctx };
  out.gradFn = node;
  return out;
}

/** Runs a backward pass (backward.ts's backward), as rules that backpropagate a subgraph receive it (recompute). */
export type BackwardFn = (root: Tensor, gradOut?: Tensor, opts?: BackwardOptions) => void;

