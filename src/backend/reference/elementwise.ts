// Reference elementwise kernels: unary ops and their derivatives, broadcasting binary ops and where, written
// to the addon's naive kernels (native/kernels/elementwise.cc) in fp32: every float operation is rounded with
// Math.fround in the C++ order, so results are bit-exact with the scalar path except where libm's expf, logf,
// tanhf or powf and V8's Math functions round an ulp apart.
import { BINARY_OP, type ByteOffset, type Handle, UNARY_OP } from '../binding.ts';
import { dim, dimsArg, f32arg, fail, listStr, stridedExtent } from './args.ts';
import { f32, f32opt } from './memory.ts';

const fr = Math.fround;
const GELU_C = fr(0.7978845608028654); // sqrt(2 / pi), as a float constant
const GELU_K = fr(0.044715);
const GELU_3K = fr(3 * GELU_K);

const UNARY_NAMES = Object.keys(UNARY_OP);
const BINARY_NAMES = Object.keys(BINARY_OP);
/** Elements above which a size is refused (the glue's kMaxElems). */
const MAX_ELEMS = 2 ** 40;

/** Reads an op code in [0, names.length) and returns the op's display name, e.g. "unary(exp)". */
export function opName(family: string, names: readonly string[], code: number): string {
  if (!Number.isInteger(code)) fail(family, "argument 'op' must be an integer");
  if (code < 0 || code >= names.length) fail(family, `unknown op code ${code}`);
  return `${family}(${names[code]})`;
}

/** C's powf: as Math.pow rounded to float, except pow(1, y) = 1 and pow(-1, ±inf) = 1 where JS gives NaN. */
export function powf(x: number, y: number): number {
  if (x === 1) return 1;
  if (x === -1 && (y === Infinity || y === -Infinity)) return 1;
  return fr(Math.pow(x, y));
}

function unaryOne(op: number, x: number, alpha: number): number {
  switch (op) {
    case UNARY_OP.neg: return -x;
    case UNARY_OP.exp: return fr(Math.exp(x));
    case UNARY_OP.log: return fr(Math.log(x));
    case UNARY_OP.sqrt: return fr(Math.sqrt(x));
    case UNARY_OP.rsqrt: return fr(1 / fr(Math.sqrt(x)));
    case UNARY_OP.silu: return fr(x / fr(1 + fr(Math.exp(-x))));
    case UNARY_OP.gelu: {
      const inner = fr(GELU_C * fr(x + fr(fr(fr(GELU_K * x) * x) * x)));
      return fr(fr(0.5 * x) * fr(1 + fr(Math.tanh(inner))));
    }
    case UNARY_OP.scale: return fr(alpha * x);
    case UNARY_OP.powScalar: return powf(x, alpha);
    case UNARY_OP.addScalar: return fr(x + alpha);
    case UNARY_OP.square: return fr(x * x);
    case UNARY_OP.relu: return x > 0 ? x : 0;
    default: return NaN;
  }
}

// dy * f'(x); y = f(x) for the ops whose derivative is cheaper from the output (exp, sqrt, rsqrt).
function unaryGradOne(op: number, x: number, y: number, dy: number, alpha: number): number {
  switch (op) {
    case UNARY_OP.neg: return -dy;
    case UNARY_OP.exp: return fr(dy * y);
    case UNARY_OP.log: return fr(dy / x);
    case UNARY_OP.sqrt: return fr(fr(dy * 0.5) / y);
    case UNARY_OP.rsqrt: return fr(fr(fr(fr(dy * -0.5) * y) * y) * y);
    case UNARY_OP.silu: {
      const s = fr(1 / fr(1 + fr(Math.exp(-x))));
      return fr(fr(dy * s) * fr(1 + fr(x * fr(1 - s))));
    }
    case UNARY_OP.gelu: {
      const t = fr(Math.tanh(fr(GELU_C * fr(x + fr(fr(fr(GELU_K * x) * x) * x)))));
      const a = fr(0.5 * fr(1 + t));
      const b = fr(fr(fr(fr(0.5 * x) * fr(1 - fr(t * t))) * GELU_C) * fr(1 + fr(fr(GELU_3K * x) * x)));
      return fr(dy * fr(a + b));
    }
    case UNARY_OP.scale: return fr(dy * alpha);
    case UNARY_OP.powScalar: return fr(fr(dy * alpha) * powf(x, fr(alpha - 1)));
    case UNARY_OP.addScalar: return dy;
    case UNARY_OP.square: return fr(fr(dy * 2) * x);
    case UNARY_OP.relu: return x > 0 ? dy : 0;
    default: return NaN;
  }
}

function binaryOne(op: number, a: number, b: number): number {
  switch (op) {
    case BINARY_OP.add: return fr(a + b);
    case BINARY_OP.sub: return fr(a - b);
    case BINARY_OP.mul: return fr(a * b);
    case BINARY_OP.div: return fr(a / b);
    case BINARY_OP.pow: return powf(a, b);
    case BINARY_OP.maximum: return a !== a || b !== b ? a + b : a > b ? a : b; // NaN propagates, like torch.maximum
    default: return NaN;
  }
}

export function unary(op: number, x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, n: number, alpha: number): void {
  const o = opName('unary', UNARY_NAMES, op);
  dim(o, 'n', n);
  const xs = f32(o, 'x', x, xOff, n, false);
  const ys = f32(o, 'y', y, yOff, n, true);
  const al = f32arg(o, 'alpha', alpha);
  for (let i = 0; i < n; i++) ys[i] = unaryOne(op, xs[i]!, al);
}

export function unaryBackward(
  op: number, x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, dy: Handle, dyOff: ByteOffset,
  dx: Handle, dxOff: ByteOffset, n: number, alpha: number,
): void {
  const o = opName('unaryBackward', UNARY_NAMES, op);
  dim(o, 'n', n);
  // x and y may be absent (handle 0) when the derivative does not read them.
  const needsY = op === UNARY_OP.exp || op === UNARY_OP.sqrt || op === UNARY_OP.rsqrt;
  const needsX = op === UNARY_OP.log || op === UNARY_OP.silu || op === UNARY_OP.gelu || op === UNARY_OP.powScalar ||
    op === UNARY_OP.square || op === UNARY_OP.relu;
  const xs = needsX ? f32(o, 'x', x, xOff, n, false) : f32opt(o, 'x', x, xOff, n, false);
  const ys = needsY ? f32(o, 'y', y, yOff, n, false) : f32opt(o, 'y', y, yOff, n, false);
  const dys = f32(o, 'dy', dy, dyOff, n, false);
  const dxs = f32(o, 'dx', dx, dxOff, n, true);
  const al = f32arg(o, 'alpha', alpha);
  for (let i = 0; i < n; i++) dxs[i] = unaryGradOne(op, xs === null ? 0 : xs[i]!, ys === null ? 0 : ys[i]!, dys[i]!, al);
}

/** Elements of a shape, failing past the glue's limit. */
function numel(op: string, shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > MAX_ELEMS) fail(op, `size too large (shape ${listStr(shape)})`);
  }
  return n;
}

export function binary(
  op: number, a: Handle, aOff: ByteOffset, aStrides: number[], b: Handle, bOff: ByteOffset, bStrides: number[],
  out: Handle, outOff: ByteOffset, shape: number[],
): void {
  const o = opName('binary', BINARY_NAMES, op);
  const as = dimsArg(o, 'aStrides', aStrides);
  const bs = dimsArg(o, 'bStrides', bStrides);
  const sh = dimsArg(o, 'shape', shape);
  if (as.length !== sh.length || bs.length !== sh.length) {
    fail(o, `shape ${listStr(sh)} has ${sh.length} dims but aStrides ${listStr(as)} and bStrides ${listStr(bs)} must match it`);
  }
  const n = numel(o, sh);
  const av = f32(o, 'a', a, aOff, stridedExtent(sh, as), false);
  const bv = f32(o, 'b', b, bOff, stridedExtent(sh, bs), false);
  const ov = f32(o, 'out', out, outOff, n, true);
  if (n === 0) return;
  // Odometer over the outer dims; the innermost dim is one strided row.
  const nd = sh.length;
  const inner = nd === 0 ? 1 : sh[nd - 1]!;
  const ia = nd === 0 ? 0 : as[nd - 1]!;
  const ib = nd === 0 ? 0 : bs[nd - 1]!;
  const idx = new Array<number>(Math.max(nd - 1, 0)).fill(0);
  let pa = 0, pb = 0;
  for (let pos = 0; pos < n; pos += inner) {
    for (let t = 0, ja = pa, jb = pb; t < inner; t++, ja += ia, jb += ib) ov[pos + t] = binaryOne(op, av[ja]!, bv[jb]!);
    for (let d = nd - 2; d >= 0; d--) {
      pa += as[d]!;
      pb += bs[d]!;
      idx[d] = idx[d]! + 1;
      if (idx[d]! < sh[d]!) break;
      pa -= as[d]! * sh[d]!;
      pb -= bs[d]! * sh[d]!;
      idx[d] = 0;
    }
  }
}

/** out = cond != 0 ? a : b, all contiguous of n elements. */
export function where(
  cond: Handle, condOff: ByteOffset, a: Handle, aOff: ByteOffset, b: Handle, bOff: ByteOffset,
  out: Handle, outOff: ByteOffset, n: number,
): void {
  const o = 'where';
  dim(o, 'n', n);
  const c = f32(o, 'cond', cond, condOff, n, false);
  const av = f32(o, 'a', a, aOff, n, false);
  const bv = f32(o, 'b', b, bOff, n, false);
  const ov = f32(o, 'out', out, outOff, n, true);
  for (let i = 0; i < n; i++) ov[i] = c[i] !== 0 ? av[i]! : bv[i]!;
}
