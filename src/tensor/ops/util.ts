// Shared helpers of the op files: dtype/shape checks and the backward-rule type.
import type { ComputeBackend } from '../../backend/compute.ts';
import { ShapeError } from '../../errors.ts';
import type { BackwardFn, InputGrad } from '../autograd.ts';
import type { DType } from '../dtype.ts';
import { fmt } from '../shape.ts';
import { Tensor, copyContiguous } from '../tensor.ts';

/**
 * A backward rule: from what the forward saved (the node's ctx) and d loss / d out, the gradient of each input
 * (or ACCUMULATED where it added that gradient into the input's .grad itself). `backward` is the pass itself,
 * for a rule that backpropagates a subgraph of its own (recompute).
 */
export type Rule<Ctx> = (ctx: Ctx, gradOut: Tensor, backward: BackwardFn) => InputGrad[];

export function expectDType(op: string, name: string, t: Tensor, dtype: DType): void {
  if (t.dtype !== dtype) throw new ShapeError(`${op}: ${name} must be ${dtype}, got ${t.dtype} ${fmt(t.shape)}`, { where: op });
}

export function expectF32(op: string, ...named: [string, Tensor][]): void {
  for (const [name, t] of named) expectDType(op, name, t, 'float32');
}

export function expectNdim(op: string, name: string, t: Tensor, ndim: number): void {
  if (t.ndim !== ndim) throw new ShapeError(`${op}: ${name} must have ${ndim} dims, got ${fmt(t.shape)}`, { where: op });
}

export function shapeError(op: string, message: string): ShapeError {
  return new ShapeError(`${op}: ${message}`, { where: op });
}

/** A new uninitialized tensor on backend `be` (ops allocate their outputs where their inputs live). */
export function emptyOn(be: ComputeBackend, shape: readonly number[], dtype: DType = 'float32'): Tensor {
  return Tensor.empty(shape, dtype, { backend: be });
}

export function zerosOn(be: ComputeBackend, shape: readonly number[], dtype: DType = 'float32'): Tensor {
  return Tensor.zeros(shape, dtype, { backend: be });
}

/** The backend an op's tensor inputs share; inputs on different backends are a ShapeError naming the op. */
export function sharedBackend(op: string, a: Tensor, b?: Tensor | null, c?: Tensor | null): ComputeBackend {
  const be = a.storage.backend;
  if ((b && b.storage.backend !== be) || (c && c.storage.backend !== be)) {
    const names = [a, b, c].filter((t): t is Tensor => !!t).map((t) => t.storage.backend.name);
    throw shapeError(op, `inputs live on different compute backends (${names.join(', ')})`);
  }
  return be;
}

/** The tensor itself when contiguous, else a contiguous copy (no autograd: for kernel inputs). */
export function dense(t: Tensor): Tensor {
  return t.isContiguous ? t : copyContiguous(t);
}

/** Shape and strides as the N-d kernels take them (scalars become one element). */
export function ndArgs(shape: readonly number[], strides: readonly number[]): [number[], number[]] {
  return shape.length === 0 ? [[1], [0]] : [[...shape], [...strides]];
}
