// Reverse-mode autograd: a define-by-run tape of GradNodes, backward in reverse topological order,
// gradient accumulation into leaves' .grad, gradient-ready hooks, and no-grad scopes.
import { ShapeError } from '../errors.ts';
import type { OpName } from './op-names.ts';
import { sameShape, fmt } from './shape.ts';
import { type Storage, storageSerial } from './storage.ts';
import { Tensor } from './tensor.ts';

/**
 * What a backward rule returns for an input whose gradient it has already added into that leaf's .grad
 * (see gradSink): the rule's kernel accumulated in place, so no gradient tensor exists to hand back.
 */
export const ACCUMULATED: unique symbol = Symbol('accumulated into .grad');
/** A backward rule's result for one input. */
export type InputGrad = Tensor | null | typeof ACCUMULATED;

/** What a backward rule sees: the op's inputs, output, saved tensors and attributes. */
export interface GradNode {
  readonly op: OpName;
  readonly inputs: readonly (Tensor | null)[];
  /** Computes d loss / d input for each input (null where an input needs no gradient). */
  readonly backward: (gradOut: Tensor) => InputGrad[];
}

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
function gradDestination(t: Tensor): Tensor | null {
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
  const zeros = Tensor.zeros([...shape]);
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

/** Attaches a node to `out` when any input requires grad; returns out. */
export function record(out: Tensor, op: OpName, inputs: (Tensor | null)[], backward: GradNode['backward']): Tensor {
  if (!needsGrad(...inputs)) return out;
  out.requiresGrad = true;
  out.gradFn = { op, inputs, backward };
  return out;
}

// Provided by the op layer (ops/index.ts) to avoid an import cycle: in-place add into a leaf's .grad,
// out-of-place add for intermediate gradients (which backward rules may share between inputs), and a
// persistent copy for a leaf's first gradient (it must outlive the step scope).
let accumulate: (acc: Tensor, g: Tensor) => void = () => {
  throw new Error('autograd: accumulators not installed');
};
let sum2: (a: Tensor, b: Tensor) => Tensor = () => {
  throw new Error('autograd: accumulators not installed');
};
let persistentCopy: (g: Tensor) => Tensor = () => {
  throw new Error('autograd: accumulators not installed');
};
export function installAccumulators(fns: { accumulate: typeof accumulate; add: typeof sum2; persistentCopy: typeof persistentCopy }): void {
  accumulate = fns.accumulate;
  sum2 = fns.add;
  persistentCopy = fns.persistentCopy;
}

/**
 * Backpropagates from `root` (a scalar unless gradOut is given). Leaves' gradients are accumulated into
 * their .grad (allocated persistent, outside any step scope, when missing); hooks fire when a leaf's
 * gradient for this pass is complete.
 */
export function backward(root: Tensor, gradOut?: Tensor, opts: BackwardOptions = {}): void {
  if (!root.requiresGrad) throw new ShapeError('backward: the tensor does not require grad (no trainable input reached it)');
  if (!gradOut) {
    if (root.size !== 1) throw new ShapeError(`backward: gradOut is required for non-scalar output ${fmt(root.shape)}`);
    gradOut = Tensor.full(root.shape, 1);
  } else if (!sameShape(gradOut.shape, root.shape)) {
    throw new ShapeError(`backward: gradOut ${fmt(gradOut.shape)} does not match output ${fmt(root.shape)}`);
  }

  // Topological order (iterative DFS) and the number of consumers of each tensor within this graph.
  const order: Tensor[] = [];
  const consumers = new Map<Tensor, number>();
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1] as [Tensor, number];
    const [t, i] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (i < inputs.length) {
      top[1] = i + 1;
      const inp = inputs[i];
      if (inp && inp.requiresGrad) {
        consumers.set(inp, (consumers.get(inp) ?? 0) + 1);
        if (!visited.has(inp)) {
          visited.add(inp);
          stack.push([inp, 0]);
        }
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }

  const pass = new GradPass(root, gradOut, consumers);
  if (!root.gradFn) {
    pass.addGrad(root, gradOut);
    return;
  }
  // Backward rules run without recording: no graph of the graph.
  noGrad(() => pass.run(order, opts.releaseActivations === true));
}

/**
 * One backward pass. Gradients it makes are freed as soon as they are consumed (no pending gradient shares
 * their storage), and a pending gradient that only this pass holds is summed into in place; gradients made
 * before the pass (the caller's gradOut, forward tensors a rule hands back) are never touched.
 */
class GradPass {
  private readonly grads = new Map<Tensor, Tensor>();
  /** Pending gradients per storage. */
  private readonly held = new Map<Storage, number>();
  private readonly firstSerial = storageSerial();
  /** Gradients consumed by the current node, freed once all of its inputs have theirs (a rule may share one). */
  private readonly consumed: Tensor[] = [];

  constructor(
    private readonly root: Tensor,
    gradOut: Tensor,
    private readonly consumers: Map<Tensor, number>,
  ) {
    this.hold(root, gradOut);
  }

  private hold(t: Tensor, g: Tensor): void {
    this.grads.set(t, g);
    this.held.set(g.storage, (this.held.get(g.storage) ?? 0) + 1);
  }

  private unhold(g: Tensor): void {
    const n = (this.held.get(g.storage) ?? 1) - 1;
    if (n > 0) this.held.set(g.storage, n);
    else this.held.delete(g.storage);
  }

  /** Frees a gradient this pass made once nothing pending shares its storage. */
  private dispose(g: Tensor): void {
    const s = g.storage;
    if (s.serial >= this.firstSerial && !this.held.has(s) && !s.isFreed && s.owner !== null) s.release();
  }

  private ownedAlone(g: Tensor): boolean {
    return g.storage.serial >= this.firstSerial && this.held.get(g.storage) === 1 && g.isContiguous && g.dtype === 'float32';
  }

  addGrad(t: Tensor, g: Tensor | typeof ACCUMULATED): void {
    if (g !== ACCUMULATED && !sameShape(t.shape, g.shape)) {
      throw new ShapeError(`backward: gradient ${fmt(g.shape)} does not match tensor ${fmt(t.shape)} (op ${t.gradFn?.op ?? 'leaf'})`);
    }
    if (!t.gradFn) {
      // A leaf: accumulate straight into .grad (unless the rule already did).
      if (g !== ACCUMULATED) {
        const into = gradDestination(t);
        if (into) accumulate(into, g);
        else t.grad = persistentCopy(g);
        this.consumed.push(g);
      }
      const left = (this.consumers.get(t) ?? 1) - 1;
      this.consumers.set(t, left);
      if (left === 0) for (const hook of t.gradHooks) hook(t);
      return;
    }
    if (g === ACCUMULATED) throw new ShapeError(`backward: op ${t.gradFn.op} reported a gradient accumulated into a non-leaf`);
    const prev = this.grads.get(t);
    if (!prev) {
      this.hold(t, g);
      return;
    }
    if (this.ownedAlone(prev) && prev.storage !== g.storage) {
      accumulate(prev, g);
    } else {
      this.unhold(prev);
      this.hold(t, sum2(prev, g));
      this.consumed.push(prev);
    }
    this.consumed.push(g);
  }

  private disposeConsumed(): void {
    for (const g of this.consumed) this.dispose(g);
    this.consumed.length = 0;
  }

  run(order: Tensor[], releaseActivations: boolean): void {
    // Graph tensors per storage, for releaseActivations: a storage goes once every node over it has run.
    const users = new Map<Storage, number>();
    if (releaseActivations) {
      for (const t of order) if (t.gradFn && t !== this.root) users.set(t.storage, (users.get(t.storage) ?? 0) + 1);
      // Never the root's, nor a leaf's (a view of a parameter or of a detached input is a graph tensor too).
      users.delete(this.root.storage);
      for (const t of order) if (!t.gradFn) users.delete(t.storage);
    }
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i] as Tensor;
      const node = t.gradFn;
      if (!node) continue;
      const g = this.grads.get(t);
      if (!g) continue;
      this.grads.delete(t);
      this.unhold(g);
      const inGrads = node.backward(g);
      node.inputs.forEach((inp, j) => {
        const ig = inGrads[j];
        if (inp && inp.requiresGrad && ig) this.addGrad(inp, ig);
      });
      this.consumed.push(g);
      this.disposeConsumed();
      const left = (users.get(t.storage) ?? 0) - 1;
      if (left === 0) {
        users.delete(t.storage);
        if (t.storage.owner !== null && !this.held.has(t.storage)) t.storage.release();
      } else if (left > 0) {
        users.set(t.storage, left);
      }
    }
  }
}
