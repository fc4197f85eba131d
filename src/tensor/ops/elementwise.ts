// Elementwise ops with broadcasting (add, sub, mul, div, pow), unary ops, and where, with backward rules.
import { BINARY_OP, UNARY_OP } from '../../backend/compute.ts';
import { record } from '../autograd.ts';
import { broadcastShapes, broadcastStrides, sameShape } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { sumTo } from './reduce.ts';
import { type Rule, dense, emptyOn, expectF32, ndArgs, shapeError, sharedBackend, zerosOn } from './util.ts';

type BinaryName = 'add' | 'sub' | 'mul' | 'div' | 'pow';
type UnaryName = 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'silu' | 'gelu' | 'scale' | 'powScalar' | 'addScalar' | 'square' | 'relu';

function binaryRaw(op: BinaryName | 'maximum', a: Tensor, b: Tensor): Tensor {
  expectF32(op, ['a', a], ['b', b]);
  const be = sharedBackend(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = emptyOn(be, shape);
  if (out.size === 0) return out;
  const [s, as] = ndArgs(shape, broadcastStrides(a.shape, a.strides, shape));
  const [, bs] = ndArgs(shape, broadcastStrides(b.shape, b.strides, shape));
  be.binary(BINARY_OP[op], a.handle, a.byteOffset, as, b.handle, b.byteOffset, bs, out.handle, 0, s);
  return out;
}

interface BinaryCtx { a: Tensor; b: Tensor; out: Tensor }

function binary(op: BinaryName, a: Tensor, b: Tensor): Tensor {
  const out = binaryRaw(op, a, b);
  const ctx: BinaryCtx = { a, b, out };
  return record(out, op, [a, b], ctx);
}

export const add = (a: Tensor, b: Tensor): Tensor => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor): Tensor => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor): Tensor => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor): Tensor => binary('div', a, b);
export const pow = (a: Tensor, b: Tensor): Tensor => binary('pow', a, b);
/** Elementwise maximum (not differentiable). */
export const maximum = (a: Tensor, b: Tensor): Tensor => binaryRaw('maximum', a, b);

interface UnaryCtx { x: Tensor; y: Tensor; alpha: number }

function unary(op: UnaryName, x: Tensor, alpha = 0): Tensor {
  expectF32(op, ['x', x]);
  const xd = dense(x);
  const y = emptyOn(x.backend, x.shape);
  if (y.size > 0) x.backend.unary(UNARY_OP[op], xd.handle, xd.byteOffset, y.handle, 0, y.size, alpha);
  const ctx: UnaryCtx = { x: xd, y, alpha };
  return record(y, op, [x], ctx);
}

export const neg = (x: Tensor): Tensor => unary('neg', x);
export const exp = (x: Tensor): Tensor => unary('exp', x);
export const log = (x: Tensor): Tensor => unary('log', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x);
export const silu = (x: Tensor): Tensor => unary('silu', x);
/** GELU, tanh approximation (GPT-2's gelu_new). */
export const gelu = (x: Tensor): Tensor => unary('gelu', x);
export const scale = (x: Tensor, s: number): Tensor => unary('scale', x, s);
export const powScalar = (x: Tensor, p: number): Tensor => unary('powScalar', x, p);
export const addScalar = (x: Tensor, s: number): Tensor => unary('addScalar', x, s);
export const square = (x: Tensor): Tensor => unary('square', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);

function unaryGrad(op: UnaryName, ctx: UnaryCtx, g: Tensor): Tensor {
  const gd = dense(g);
  const dx = emptyOn(g.backend, ctx.x.shape);
  if (dx.size > 0) {
    g.backend.unaryBackward(UNARY_OP[op], ctx.x.handle, ctx.x.byteOffset, ctx.y.handle, 0, gd.handle, gd.byteOffset, dx.handle, 0, dx.size, ctx.alpha);
  }
  return dx;
}

interface WhereCtx { cond: Tensor; zeros: Tensor; aShape: readonly number[]; bShape: readonly number[] }

/** out = cond != 0 ? a : b; cond (float32, no gradient), a and b broadcast to cond's shape. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  expectF32('where', ['cond', cond], ['a', a], ['b', b]);
  const be = sharedBackend('where', cond, a, b);
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, a.shape), b.shape);
  const c = dense(expandRaw(cond, shape));
  const ad = dense(expandRaw(a, shape));
  const bd = dense(expandRaw(b, shape));
  const out = emptyOn(be, shape);
  if (out.size > 0) be.where(c.handle, c.byteOffset, ad.handle, ad.byteOffset, bd.handle, bd.byteOffset, out.handle, 0, out.size);
  const ctx: WhereCtx = { cond: c, zeros: zerosOn(be, shape), aShape: a.shape, bShape: b.shape };
  const node = record(out, 'where', [null, a, b], ctx);
  return node;
}

function expandRaw(t: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(t.shape, shape)) return t;
  return new Tensor(t.storage, [...shape], broadcastStrides(t.shape, t.strides, shape), t.offset, t.dtype);
}

function whereRaw(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const ad = dense(a);
  const bd = dense(b);
  const out = emptyOn(cond.backend, cond.shape);
  if (out.size > 0) cond.backend.where(cond.handle, cond.byteOffset, ad.handle, ad.byteOffset, bd.handle, bd.byteOffset, out.handle, 0, out.size);
  return out;
}

export const rules = {
  add: ((c, g) => [sumTo(g, c.a.shape), sumTo(g, c.b.shape)]) as Rule<BinaryCtx>,
  sub: ((c, g) => [sumTo(g, c.a.shape), sumTo(neg(g), c.b.shape)]) as Rule<BinaryCtx>,
  mul: ((c, g) => [sumTo(mul(g, c.b), c.a.shape), sumTo(mul(g, c.a), c.b.shape)]) as Rule<BinaryCtx>,
  div: ((c, g) => [sumTo(div(g, c.b), c.a.shape), sumTo(neg(mul(g, div(c.out, c.b))), c.b.shape)]) as Rule<BinaryCtx>,
  // d(a^b)/da = b a^(b-1); d(a^b)/db = a^b ln a
  pow: ((c, g) => [
    sumTo(mul(g, mul(c.b, pow(c.a, addScalar(c.b, -1)))), c.a.shape),
    sumTo(mul(g, mul(c.out, log(c.a))), c.b.shape),
  ]) as Rule<BinaryCtx>,
  neg: ((c, g) => [unaryGrad('neg', c, g)]) as Rule<UnaryCtx>,
  exp: ((c, g) => [unaryGrad('exp', c, g)]) as Rule<UnaryCtx>,
  log: ((c, g) => [unaryGrad('log', c, g)]) as Rule<UnaryCtx>,
  sqrt: ((c, g) => [unaryGrad('sqrt', c, g)]) as Rule<UnaryCtx>,
  rsqrt: ((c, g) => [unaryGrad('rsqrt', c, g)]) as Rule<UnaryCtx>,
  silu: ((c, g) => [unaryGrad('silu', c, g)]) as Rule<UnaryCtx>,
  gelu: ((c, g) => [unaryGrad('gelu', c, g)]) as Rule<UnaryCtx>,
  scale: ((c, g) => [unaryGrad('scale', c, g)]) as Rule<UnaryCtx>,
  powScalar: ((c, g) => [unaryGrad('powScalar', c, g)]) as Rule<UnaryCtx>,
  addScalar: ((c, g) => [unaryGrad('addScalar', c, g)]) as Rule<UnaryCtx>,
  square: ((c, g) => [unaryGrad('square', c, g)]) as Rule<UnaryCtx>,
  relu: ((c, g) => [unaryGrad('relu', c, g)]) as Rule<UnaryCtx>,
  where: ((c, g) => [null, sumTo(whereRaw(c.cond, g, c.zeros), c.aShape), sumTo(whereRaw(c.cond, c.zeros, g), c.bShape)]) as Rule<WhereCtx>,
};

/** acc += g in place (autograd's accumulation into leaves' .grad). */
export function accumulateInto(acc: Tensor, g: Tensor): void {
  if (!sameShape(acc.shape, g.shape)) throw shapeError('accumulate', `gradient shape [${g.shape}] does not match [${acc.shape}]`);
  if (!acc.isContiguous) throw shapeError('accumulate', 'the gradient buffer must be contiguous');
  sharedBackend('accumulate', acc, g);
  if (acc.size === 0) return;
  const [s, as] = ndArgs(acc.shape, acc.strides);
  const [, gs] = ndArgs(g.shape, g.strides);
  if (!g.isContiguous && g.dtype === 'float32') {
    // A transposed gradient (a weight's, through mT): the accumulating copy walks it in square tiles, ~3x
    // faster than the row-wise binary add striding through g one element per cache line.
    acc.backend.stridedCopy(g.handle, g.byteOffset, gs, acc.handle, acc.byteOffset, as, s, 4, true);
    return;
  }
  acc.backend.binary(BINARY_OP.add, acc.handle, acc.byteOffset, as, g.handle, g.byteOffset, gs, acc.handle, acc.byteOffset, s);
}
