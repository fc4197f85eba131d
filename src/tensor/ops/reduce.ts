// Reductions over one axis (sum, mean, max), softmax and log-softmax over the last axis, with backward.
import { REDUCE_OP, UNARY_OP } from '../../backend/compute.ts';
import { record } from '../autograd.ts';
import { broadcastStrides, contiguousStrides, normAxis, numel, sameShape } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { type Rule, dense, emptyOn, expectF32, shapeError } from './util.ts';

interface ReduceCtx { x: Tensor; axis: number; keepdim: boolean; idx: Tensor | null }

function reduceRaw(op: 'sum' | 'mean' | 'max', x: Tensor, axis: number, keepdim: boolean, withIdx: boolean): { out: Tensor; idx: Tensor | null } {
  expectF32(op, ['x', x]);
  const a = normAxis(op, axis, x.ndim);
  const xd = dense(x);
  const outer = numel(x.shape.slice(0, a));
  const dim = x.shape[a] as number;
  const inner = numel(x.shape.slice(a + 1));
  if (dim === 0 && op === 'max') throw shapeError(op, `cannot take the max over an empty axis ${a} of [${x.shape}]`);
  const kept = x.shape.map((d, i) => (i === a ? 1 : d));
  const outShape = keepdim ? kept : x.shape.filter((_, i) => i !== a);
  const be = x.backend;
  const out = emptyOn(be, outShape);
  const idx = withIdx ? emptyOn(be, outShape, 'int32') : null;
  if (out.size > 0) {
    be.reduce(REDUCE_OP[op], xd.handle, xd.byteOffset, out.handle, 0, idx ? idx.handle : 0, 0, outer, dim, inner);
  }
  return { out, idx };
}

function reduce(op: 'sum' | 'mean' | 'max', x: Tensor, axis: number, keepdim: boolean): Tensor {
  const { out, idx } = reduceRaw(op, x, axis, keepdim, op === 'max');
  const ctx: ReduceCtx = { x, axis: normAxis(op, axis, x.ndim), keepdim, idx };
  return record(out, op, [x], ctx);
}

export const sum = (x: Tensor, axis: number, keepdim = false): Tensor => reduce('sum', x, axis, keepdim);
export const mean = (x: Tensor, axis: number, keepdim = false): Tensor => reduce('mean', x, axis, keepdim);
export const max = (x: Tensor, axis: number, keepdim = false): Tensor => reduce('max', x, axis, keepdim);

/** Sum of every element, as a scalar tensor (differentiable). */
export function sumAll(x: Tensor): Tensor {
  let t = x;
  while (t.ndim > 0) t = sum(t, 0);
  return t;
}

/** g (the reduced shape) broadcast back over the reduced axis as a contiguous tensor of x's shape. */
function spread(g: Tensor, ctx: ReduceCtx): Tensor {
  const kept = ctx.x.shape.map((d, i) => (i === ctx.axis ? 1 : d));
  const gk = dense(g);
  const view = new Tensor(gk.storage, kept, contiguousStrides(kept), gk.offset, 'float32');
  const expanded = new Tensor(view.storage, ctx.x.shape, broadcastStrides(kept, view.strides, ctx.x.shape), view.offset, 'float32');
  const out = emptyOn(g.backend, ctx.x.shape);
  if (out.size > 0) g.backend.stridedCopy(expanded.handle, expanded.byteOffset, [...expanded.strides], out.handle, 0, [...out.strides], [...out.shape], 4, false);
  return out;
}

function maxGrad(ctx: ReduceCtx, g: Tensor): Tensor {
  // Routes each output gradient to the position of its max (first on ties), zero elsewhere.
  const idx = (ctx.idx as Tensor).toArray() as Int32Array;
  const a = ctx.axis;
  const dim = ctx.x.shape[a] as number;
  const inner = numel(ctx.x.shape.slice(a + 1));
  const outer = numel(ctx.x.shape.slice(0, a));
  const gv = dense(g).toArray() as Float32Array;
  const dx = new Float32Array(outer * dim * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const r = o * inner + i;
      dx[(o * dim + (idx[r] as number)) * inner + i] = gv[r] as number;
    }
  }
  return Tensor.from(dx, ctx.x.shape, 'float32', { backend: g.backend });
}

interface SoftmaxCtx { y: Tensor; log: boolean }

function softmaxOp(x: Tensor, log: boolean): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  expectF32(op, ['x', x]);
  if (x.ndim === 0) throw shapeError(op, 'needs at least one dim');
  const xd = dense(x);
  const cols = x.shape[x.ndim - 1] as number;
  const rows = cols === 0 ? 0 : x.size / cols;
  const y = emptyOn(x.backend, x.shape);
  if (y.size > 0) x.backend.softmax(xd.handle, xd.byteOffset, y.handle, 0, rows, cols, log);
  const ctx: SoftmaxCtx = { y, log };
  return record(y, op, [x], ctx);
}

/** Softmax over the last axis. */
export const softmax = (x: Tensor): Tensor => softmaxOp(x, false);
/** Log-softmax over the last axis. */
export const logSoftmax = (x: Tensor): Tensor => softmaxOp(x, true);

function softmaxGrad(ctx: SoftmaxCtx, g: Tensor): Tensor {
  const gd = dense(g);
  const cols = ctx.y.shape[ctx.y.ndim - 1] as number;
  const rows = cols === 0 ? 0 : ctx.y.size / cols;
  const dx = emptyOn(g.backend, ctx.y.shape);
  if (dx.size > 0) g.backend.softmaxBackward(ctx.y.handle, 0, gd.handle, gd.byteOffset, dx.handle, 0, rows, cols, ctx.log);
  return dx;
}

export const rules = {
  sum: ((c, g) => [spread(g, c)]) as Rule<ReduceCtx>,
  mean: ((c, g) => {
    const s = spread(g, c);
    const n = c.x.shape[c.axis] as number;
    s.backend.unary(UNARY_OP.scale, s.handle, 0, s.handle, 0, s.size, 1 / n);
    return [s];
  }) as Rule<ReduceCtx>,
  max: ((c, g) => [maxGrad(c, g)]) as Rule<ReduceCtx>,
  softmax: ((c, g) => [softmaxGrad(c, g)]) as Rule<SoftmaxCtx>,
  logSoftmax: ((c, g) => [softmaxGrad(c, g)]) as Rule<SoftmaxCtx>,
};

/**
 * Sums g down to `shape` (the reverse of broadcasting): leading extra dims and dims that were 1 are summed.
 * Not recorded (used inside backward rules).
 */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  let t = g;
  const lead = g.ndim - shape.length;
  for (let i = 0; i < lead; i++) t = reduceRaw('sum', t, 0, false, false).out;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1 && t.shape[i] !== 1) t = reduceRaw('sum', t, i, true, false).out;
  }
  if (!sameShape(t.shape, shape)) throw shapeError('sumTo', `cannot reduce [${g.shape}] to [${shape}]`);
  return t;
}
