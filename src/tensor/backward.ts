// The backward pass of reverse-mode autograd: reverse topological order over the recorded GradNodes, each
// node's rule taken from the op table (BACKWARD_RULES[node.op](node.ctx, gradOut, backward)), gradient
// accumulation into leaves' .grad, gradient-ready hooks, and the early release of activations.
import { ShapeError } from '../errors.ts';
import { ACCUMULATED, type BackwardOptions, gradDestination, noGrad } from './autograd.ts';
import { accumulateInto } from './ops/elementwise.ts';
import { BACKWARD_RULES } from './ops/table.ts';
import { copyInto } from './ops/views.ts';
import { fmt, sameShape } from './shape.ts';
import { type Storage, storageSerial } from './storage.ts';
import { Tensor, copyContiguous } from './tensor.ts';

/** In-place add into a leaf's .grad, or into a pending gradient this pass owns alone. */
const accumulate = accumulateInto;

/** Out-of-place sum of two intermediate gradients (rules may share one gradient between inputs). */
function sum2(a: Tensor, b: Tensor): Tensor {
  const out = copyContiguous(a);
  accumulateInto(out, b);
  return out;
}

/** A leaf's first gradient, copied out of the step scope (it must outlive it). */
function persistentCopy(g: Tensor): Tensor {
  const out = Tensor.empty(g.shape, g.dtype, { persistent: true, backend: g.backend });
  copyInto(g, out, false);
  return out;
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
    gradOut = Tensor.full(root.shape, 1, 'float32', { backend: root.backend });
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
      const inGrads = BACKWARD_RULES[node.op](node.ctx, g, backward);
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
