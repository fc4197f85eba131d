// Matrix multiplication on the packed GEMM kernel: 2-D, batched 3-D+, and (..., M, K) @ (K, N);
// transposed views are passed to GEMM as transpose flags instead of being copied. Inside autocast('bfloat16')
// the forward and both backward GEMMs run in bf16 compute (fp32 accumulation; inputs, outputs and gradients
// stay fp32 tensors).
import { record } from '../autograd.ts';
import { bf16Compute } from '../autocast.ts';
import { contiguousStrides, fmt, numel } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { type Rule, dense, emptyOn, expectF32, shapeError, sharedBackend } from './util.ts';
import { transpose } from './views.ts';

/** How GEMM reads a (rows, cols) matrix view: transposed or not, and its leading dimension. */
interface MatView { t: Tensor; trans: boolean; ld: number }

/** A 2-D view GEMM can read directly (row-major or column-major with unit stride), else a dense copy. */
function asMat(x: Tensor): MatView {
  const [r, c] = [x.shape[x.ndim - 2] as number, x.shape[x.ndim - 1] as number];
  const [sr, sc] = [x.strides[x.ndim - 2] as number, x.strides[x.ndim - 1] as number];
  if ((sc === 1 || c === 1) && sr >= Math.max(c, 1)) return { t: x, trans: false, ld: Math.max(sr, 1) };
  if ((sr === 1 || r === 1) && sc >= Math.max(r, 1)) return { t: x, trans: true, ld: Math.max(sc, 1) };
  const d = dense(x);
  return { t: d, trans: false, ld: Math.max(c, 1) };
}

/** Batch stride of a 3-D view, or null when the batch dims cannot be walked with one stride. */
function batchStride(x: Tensor): number | null {
  if (x.ndim === 2) return 0;
  const batchDims = x.shape.slice(0, -2);
  const batchStrides = x.strides.slice(0, -2);
  // Collapse batch dims: they must nest like a contiguous block.
  let stride = batchStrides[batchStrides.length - 1] as number;
  let expected = stride;
  for (let i = batchDims.length - 1; i >= 0; i--) {
    if ((batchDims[i] as number) !== 1 && batchStrides[i] !== expected) return null;
    expected *= batchDims[i] as number;
  }
  if (batchDims.every((d) => d === 1)) stride = 0;
  return stride;
}

/** C = A @ B written into a new (batch..., M, N) tensor (bf16 compute when `bf16`). */
function gemm(a: Tensor, b: Tensor, outShape: number[], bf16: boolean): Tensor {
  const M = a.shape[a.ndim - 2] as number;
  const K = a.shape[a.ndim - 1] as number;
  const N = b.shape[b.ndim - 1] as number;
  const batch = numel(outShape.slice(0, -2));
  let av = asMat(a);
  let bv = asMat(b);
  let sa = batchStride(av.t);
  let sb = batchStride(bv.t);
  if (sa === null) {
    av = asMat(dense(a));
    sa = batchStride(av.t) ?? 0;
  }
  if (sb === null) {
    bv = asMat(dense(b));
    sb = batchStride(bv.t) ?? 0;
  }
  if (a.ndim === 2) sa = 0;
  if (b.ndim === 2) sb = 0;
  const be = sharedBackend('matmul', a, b);
  const c = emptyOn(be, outShape);
  if (c.size === 0) return c;
  be.gemm(
    av.trans, bv.trans, M, N, K, 1,
    av.t.handle, av.t.byteOffset, av.ld,
    bv.t.handle, bv.t.byteOffset, bv.ld,
    0, c.handle, c.byteOffset, N,
    batch, sa, sb, M * N, bf16,
  );
  return c;
}

interface MatmulCtx { a: Tensor; b: Tensor; bf16: boolean }

/**
 * a (..., M, K) @ b (K, N) or a (batch..., M, K) @ b (batch..., K, N) with equal batch dims.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  expectF32('matmul', ['a', a], ['b', b]);
  if (a.ndim < 2 || b.ndim < 2) throw shapeError('matmul', `needs matrices, got ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  const K = a.shape[a.ndim - 1] as number;
  if (b.shape[b.ndim - 2] !== K) throw shapeError('matmul', `inner dims differ: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  const bf16 = bf16Compute();
  let out: Tensor;
  if (b.ndim === 2 && a.ndim > 2) {
    // Fold the batch into M when a's rows are evenly strided (the common activation @ weight case).
    const M = a.shape[a.ndim - 2] as number;
    const rows = numel(a.shape.slice(0, -1));
    const ad = a.isContiguous ? a : dense(a);
    const a2 = new Tensor(ad.storage, [rows, K], [K, 1], ad.offset, 'float32');
    const o2 = gemm(a2, b, [rows, b.shape[1] as number], bf16);
    const outShape = [...a.shape.slice(0, -2), M, b.shape[1] as number];
    out = new Tensor(o2.storage, outShape, contiguousStrides(outShape), 0, 'float32');
  } else {
    if (a.ndim !== b.ndim || a.shape.slice(0, -2).some((d, i) => d !== b.shape[i])) {
      throw shapeError('matmul', `batch dims differ: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
    }
    out = gemm(a, b, [...a.shape.slice(0, -1), b.shape[b.ndim - 1] as number], bf16);
  }
  const ctx: MatmulCtx = { a, b, bf16 };
  return record(out, 'matmul', [a, b], ctx);
}

/** Swaps the last two dims (a differentiable view). */
export function mT(x: Tensor): Tensor {
  return transpose(x, -2, -1);
}

/** Swaps the last two dims without recording (inside backward rules). */
function mTRaw(x: Tensor): Tensor {
  const n = x.ndim;
  const shape = [...x.shape];
  const strides = [...x.strides];
  [shape[n - 2], shape[n - 1]] = [shape[n - 1] as number, shape[n - 2] as number];
  [strides[n - 2], strides[n - 1]] = [strides[n - 1] as number, strides[n - 2] as number];
  return new Tensor(x.storage, shape, strides, x.offset, x.dtype);
}

export const rules = {
  matmul: ((c, g) => {
    const { a, b, bf16 } = c;
    if (b.ndim === 2 && a.ndim > 2) {
      const K = a.shape[a.ndim - 1] as number;
      const N = b.shape[1] as number;
      const rows = numel(a.shape.slice(0, -1));
      const gd = dense(g);
      const g2 = new Tensor(gd.storage, [rows, N], [N, 1], gd.offset, 'float32');
      const ad = dense(a);
      const a2 = new Tensor(ad.storage, [rows, K], [K, 1], ad.offset, 'float32');
      const da2 = a.requiresGrad ? gemm(g2, mTRaw(b), [rows, K], bf16) : null;
      const db = b.requiresGrad ? gemm(mTRaw(a2), g2, [K, N], bf16) : null;
      const da = da2 ? new Tensor(da2.storage, [...a.shape], contiguousStrides(a.shape), 0, 'float32') : null;
      return [da, db];
    }
    const da = a.requiresGrad ? gemm(g, mTRaw(b), [...a.shape], bf16) : null;
    const db = b.requiresGrad ? gemm(mTRaw(a), g, [...b.shape], bf16) : null;
    return [da, db];
  }) as Rule<MatmulCtx>,
};
