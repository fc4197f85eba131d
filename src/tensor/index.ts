// The tensor library: Tensor, dtypes, autograd, ops, scopes, RNG, flat buffers.
import { Storage, withScope } from './storage.ts';
import { Tensor } from './tensor.ts';

export { Tensor, copyContiguous } from './tensor.ts';
export type { DType } from './dtype.ts';
export { dtypeBytes, isDType } from './dtype.ts';
export { noGrad, isGradEnabled, needsGrad, setGradTarget } from './autograd.ts';
export type { GradTarget } from './autograd.ts';
export { backward } from './backward.ts';
export type { BackwardOptions } from './autograd.ts';
export { autocast, bf16GemmPath, computeDtype } from './autocast.ts';
export type { ComputeDtype } from './autocast.ts';
export type { GradNode } from './tensor.ts';
export { OP_NAMES } from './op-names.ts';
export type { OpName } from './op-names.ts';
export * from './ops/index.ts';
export { QuantizedWeight, type QuantKind, type QuantizeOptions, NF4_BLOCK, DQ_BLOCK } from './quant.ts';
export { Bf16Rows, type RowSource, frozenLinearForward, frozenLinearInputGrad } from './frozen-gemm.ts';
export { Rng } from './rng.ts';
export type { RngState } from './rng.ts';
export { FlatBuffer, flatLayout, loadInto } from './flat.ts';
export type { FlatLayout } from './flat.ts';
export { Storage } from './storage.ts';
export { numel, contiguousStrides, broadcastShapes } from './shape.ts';

function storagesOf(value: unknown, out: Storage[], seen: Set<unknown>): Storage[] {
  if (value === null || typeof value !== 'object' || seen.has(value) || ArrayBuffer.isView(value)) return out;
  seen.add(value);
  if (value instanceof Tensor) {
    out.push(value.storage);
    if (value.grad) out.push(value.grad.storage);
    return out;
  }
  if (value instanceof Storage) {
    out.push(value);
    return out;
  }
  for (const v of Array.isArray(value) ? value : Object.values(value)) storagesOf(v, out, seen);
  return out;
}

/**
 * A step scope: runs fn and releases every native block allocated inside it, except the tensors returned
 * (found in the returned value, arrays and plain objects) and those passed to keep().
 */
export function scope<T>(fn: () => T): T {
  return withScope(fn, (v) => storagesOf(v, [], new Set()));
}

/** Marks tensors to outlive the innermost scope (e.g. a KV cache built inside a step). */
export function keep<T extends Tensor>(t: T): T {
  t.storage.escape(null);
  return t;
}
