// Reverse-mode autograd: a define-by-run tape of GradNodes, backward in reverse topological order,
// gradient accumulation into leaves' .grad, gradient-ready hooks, and no-grad scopes.
import { ShapeError } from '../errors.ts';
import type { OpName } from './op-names.ts';
import { sameShape, fmt } from './shape.ts';
import { Tensor } from './tensor.ts';

/** What a backward rule sees: the op's inputs, output, saved tensors and attributes. */
export interface GradNode {
  readonly op: OpName;
  readonly inputs: readonly (Tensor | null)[];
  /** Computes d loss / d input for each input (null where an input needs no gradient). */
  readonly backward: (gradOut: Tensor) => (Tensor | null)[];
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
export function backward(root: Tensor, gradOut?: Tensor): void {
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

  const grads = new Map<Tensor, Tensor>([[root, gradOut]]);
  const addGrad = (t: Tensor, g: Tensor): void => {
    if (!sameShape(t.shape, g.shape)) {
      throw new ShapeError(`backward: gradient ${fmt(g.shape)} does not match tensor ${fmt(t.shape)} (op ${t.gradFn?.op ?? 'leaf'})`);
    }
    if (!t.gradFn) {
      // A leaf: accumulate straight into .grad.
      if (t.grad) accumulate(t.grad, g);
      else t.grad = persistentCopy(g);
      const left = (consumers.get(t) ?? 1) - 1;
      consumers.set(t, left);
      if (left === 0) for (const hook of t.gradHooks) hook(t);
      return;
    }
    const prev = grads.get(t);
    grads.set(t, prev ? sum2(prev, g) : g);
  };

  if (!root.gradFn) {
    addGrad(root, gradOut);
    return;
  }
  // Backward rules run without recording: no graph of the graph.
  noGrad(() => runNodes(order, grads, addGrad));
}

function runNodes(order: Tensor[], grads: Map<Tensor, Tensor>, addGrad: (t: Tensor, g: Tensor) => void): void {
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i] as Tensor;
    const node = t.gradFn;
    if (!node) continue;
    const g = grads.get(t);
    if (!g) continue;
    grads.delete(t);
    const inGrads = node.backward(g);
    node.inputs.forEach((inp, j) => {
      const ig = inGrads[j];
      if (inp && inp.requiresGrad && ig) addGrad(inp, ig);
    });
  }
}
