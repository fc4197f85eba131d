// Shape ops: reshape, transpose, permute, slice and expand are views (no copy) where the strides allow;
// contiguous, concat and cast copy. Each has its backward rule.
import { DTYPE_CODE } from '../../backend/compute.ts';
import { record } from '../autograd.ts';
import { type DType, dtypeBytes } from '../dtype.ts';
import { broadcastShapes, broadcastStrides, checkShape, contiguousStrides, fmt, normAxis, numel, sameShape } from '../shape.ts';
import { Tensor, copyContiguous } from '../tensor.ts';
import { sumTo } from './reduce.ts';
import { type Rule, emptyOn, ndArgs, shapeError, sharedBackend, zerosOn } from './util.ts';

function view(x: Tensor, shape: number[], strides: number[], offset = x.offset): Tensor {
  return new Tensor(x.storage, shape, strides, offset, x.dtype);
}

interface ShapeCtx { shape: readonly number[] }

/** Reshape; -1 infers one dim. A view when x is contiguous, else a copy. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const dims = [...shape];
  const infer = dims.indexOf(-1);
  if (infer >= 0) {
    const known = numel(dims.filter((_, i) => i !== infer));
    if (known === 0 || x.size % known !== 0) throw shapeError('reshape', `cannot infer -1 reshaping ${fmt(x.shape)} to ${fmt(shape)}`);
    dims[infer] = x.size / known;
  }
  checkShape('reshape', dims);
  if (numel(dims) !== x.size) throw shapeError('reshape', `cannot reshape ${fmt(x.shape)} (${x.size} elements) to ${fmt(shape)}`);
  const src = x.isContiguous ? x : copyContiguous(x);
  const out = view(src, dims, contiguousStrides(dims));
  const ctx: ShapeCtx = { shape: x.shape };
  return record(out, 'reshape', [x], ctx);
}

interface PermuteCtx { inverse: number[] }

/** Reorders dims (a view). */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  if (dims.length !== x.ndim) throw shapeError('permute', `needs ${x.ndim} dims, got [${dims}]`);
  const norm = dims.map((d) => normAxis('permute', d, x.ndim));
  if (new Set(norm).size !== norm.length) throw shapeError('permute', `repeated dims in [${dims}]`);
  const out = view(x, norm.map((d) => x.shape[d] as number), norm.map((d) => x.strides[d] as number));
  const inverse = new Array<number>(norm.length);
  norm.forEach((d, i) => (inverse[d] = i));
  const ctx: PermuteCtx = { inverse };
  return record(out, 'permute', [x], ctx);
}

interface TransposeCtx { a: number; b: number }

/** Swaps two dims (a view). */
export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  const a = normAxis('transpose', dim0, x.ndim);
  const b = normAxis('transpose', dim1, x.ndim);
  const shape = [...x.shape];
  const strides = [...x.strides];
  [shape[a], shape[b]] = [shape[b] as number, shape[a] as number];
  [strides[a], strides[b]] = [strides[b] as number, strides[a] as number];
  const ctx: TransposeCtx = { a, b };
  return record(view(x, shape, strides), 'transpose', [x], ctx);
}

interface SliceCtx { shape: readonly number[]; axis: number; start: number }

/** x[..., start:end, ...] along one axis (a view). Negative indices count from the end. */
export function slice(x: Tensor, axis: number, start: number, end?: number): Tensor {
  const a = normAxis('slice', axis, x.ndim);
  const n = x.shape[a] as number;
  const s = start < 0 ? start + n : start;
  const e = end === undefined ? n : end < 0 ? end + n : end;
  if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > n || s > e) {
    throw shapeError('slice', `range ${start}:${end ?? ''} out of bounds for axis ${a} of ${fmt(x.shape)}`);
  }
  const shape = [...x.shape];
  shape[a] = e - s;
  const out = view(x, shape, [...x.strides], x.offset + s * (x.strides[a] as number));
  const ctx: SliceCtx = { shape: x.shape, axis: a, start: s };
  return record(out, 'slice', [x], ctx);
}

/** Broadcasts x to `shape` (a view with stride 0 on expanded dims). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const target = broadcastShapes('expand', x.shape, shape);
  if (!sameShape(target, shape)) throw shapeError('expand', `cannot expand ${fmt(x.shape)} to ${fmt(shape)}`);
  const out = view(x, [...shape], broadcastStrides(x.shape, x.strides, shape));
  const ctx: ShapeCtx = { shape: x.shape };
  return record(out, 'expand', [x], ctx);
}

/** A contiguous copy (x itself when already contiguous). */
export function contiguous(x: Tensor): Tensor {
  if (x.isContiguous) return x;
  const out = copyContiguous(x);
  return record(out, 'contiguous', [x], null);
}

interface ConcatCtx { sizes: number[]; axis: number }

/** Joins tensors along an axis (all other dims equal). */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const first = xs[0];
  if (!first) throw shapeError('concat', 'needs at least one tensor');
  const a = normAxis('concat', axis, first.ndim);
  for (const x of xs) {
    if (x.dtype !== first.dtype) throw shapeError('concat', `dtypes differ: ${first.dtype} and ${x.dtype}`);
    if (x.ndim !== first.ndim || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw shapeError('concat', `shapes ${fmt(first.shape)} and ${fmt(x.shape)} differ off axis ${a}`);
    }
  }
  const shape = [...first.shape];
  shape[a] = xs.reduce((s, x) => s + (x.shape[a] as number), 0);
  const out = emptyOn(first.backend, shape, first.dtype);
  let at = 0;
  for (const x of xs) {
    const part = view(out, [...x.shape], [...out.strides], out.offset + at * (out.strides[a] as number));
    copyInto(x, part, false);
    at += x.shape[a] as number;
  }
  const ctx: ConcatCtx = { sizes: xs.map((x) => x.shape[a] as number), axis: a };
  return record(out, 'concat', [...xs], ctx);
}

/** Copies (or adds, for float32) src into the view dst of the same shape. */
export function copyInto(src: Tensor, dst: Tensor, accumulate: boolean): void {
  if (!sameShape(src.shape, dst.shape)) throw shapeError('copyInto', `shapes ${fmt(src.shape)} and ${fmt(dst.shape)} differ`);
  if (src.dtype !== dst.dtype) throw shapeError('copyInto', `dtypes ${src.dtype} and ${dst.dtype} differ`);
  const be = sharedBackend('copyInto', src, dst);
  if (src.size === 0) return;
  const [shape, ss] = ndArgs(src.shape, src.strides);
  const [, ds] = ndArgs(dst.shape, dst.strides);
  be.stridedCopy(src.handle, src.byteOffset, ss, dst.handle, dst.byteOffset, ds, shape, dtypeBytes(src.dtype), accumulate);
}

interface CastCtx { from: DType }

/** Converts between float32, bfloat16 and float16 (and int32 to float32). */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  if (dtype === 'int32') throw shapeError('cast', `casting ${x.dtype} to int32 is not supported`);
  const src = x.isContiguous ? x : copyContiguous(x);
  const out = emptyOn(x.backend, x.shape, dtype);
  if (out.size > 0) x.backend.cast(src.handle, src.byteOffset, DTYPE_CODE[x.dtype], out.handle, 0, DTYPE_CODE[dtype], out.size);
  const ctx: CastCtx = { from: x.dtype };
  return record(out, 'cast', [x], ctx);
}

export const rules = {
  reshape: ((c, g) => [reshapeRaw(g, c.shape)]) as Rule<ShapeCtx>,
  permute: ((c, g) => [view(g, c.inverse.map((d) => g.shape[d] as number), c.inverse.map((d) => g.strides[d] as number))]) as Rule<PermuteCtx>,
  transpose: ((c, g) => {
    const shape = [...g.shape];
    const strides = [...g.strides];
    [shape[c.a], shape[c.b]] = [shape[c.b] as number, shape[c.a] as number];
    [strides[c.a], strides[c.b]] = [strides[c.b] as number, strides[c.a] as number];
    return [view(g, shape, strides)];
  }) as Rule<TransposeCtx>,
  slice: ((c, g) => {
    const dx = zerosOn(g.backend, c.shape, g.dtype);
    const part = view(dx, [...g.shape], [...dx.strides], c.start * (dx.strides[c.axis] as number));
    copyInto(g, part, false);
    return [dx];
  }) as Rule<SliceCtx>,
  expand: ((c, g) => [sumTo(g, c.shape)]) as Rule<ShapeCtx>,
  contiguous: ((_c, g) => [g]) as Rule<null>,
  concat: ((c, g) => {
    let at = 0;
    return c.sizes.map((n) => {
      const shape = [...g.shape];
      shape[c.axis] = n;
      const part = view(g, shape, [...g.strides], g.offset + at * (g.strides[c.axis] as number));
      at += n;
      return part;
    });
  }) as Rule<ConcatCtx>,
  cast: ((c, g) => [c.from === 'int32' ? null : cast(g, c.from)]) as Rule<CastCtx>,
};

function reshapeRaw(g: Tensor, shape: readonly number[]): Tensor {
  const src = g.isContiguous ? g : copyContiguous(g);
  return view(src, [...shape], contiguousStrides(shape));
}
