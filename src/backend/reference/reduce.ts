// Reference reductions: sum/mean/max over an axis (with argmax), softmax and log-softmax with their backward,
// argmax, top-k and the double sum of squares, written to native/kernels/reduce.cc. fp32 sums run in the naive
// kernel's order with Math.fround at each step; only expf/logf may differ from libm by an ulp.
import { type ByteOffset, type Handle, REDUCE_OP } from '../binding.ts';
import { dim, fail, flag } from './args.ts';
import { opName } from './elementwise.ts';
import { f32, i32, i32opt } from './memory.ts';

const fr = Math.fround;
const REDUCE_NAMES = Object.keys(REDUCE_OP);
const MAX_ELEMS = 2 ** 40;

function mulCount(op: string, a: number, b: number): number {
  const r = a * b;
  if (r > MAX_ELEMS) fail(op, `size too large (${a} x ${b})`);
  return r;
}

// Max ordering shared by every max-like kernel: NaN beats any number (torch propagates NaN), and the first
// occurrence wins among equals.
function beats(v: number, best: number): boolean {
  return v > best || (v !== v && best === best);
}

/** Reduce x viewed as (outer, dim, inner) over dim into y (outer, inner); idx (int32, optional) gets argmax for max. */
export function reduce(
  op: number, x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, idx: Handle, idxOff: ByteOffset,
  outer: number, dimSize: number, inner: number,
): void {
  const o = opName('reduce', REDUCE_NAMES, op);
  dim(o, 'outer', outer);
  dim(o, 'dim', dimSize);
  dim(o, 'inner', inner);
  const nout = mulCount(o, outer, inner);
  const nin = mulCount(o, nout, dimSize);
  if (op === REDUCE_OP.max && dimSize === 0 && nout > 0) fail(o, `max over an empty dimension (outer ${outer}, dim 0, inner ${inner})`);
  const xs = f32(o, 'x', x, xOff, nin, false);
  const ys = f32(o, 'y', y, yOff, nout, true);
  const ix = i32opt(o, 'idx', idx, idxOff, nout, true);
  if (ix !== null && op !== REDUCE_OP.max) fail(o, 'argmax indices (idx) are only produced by max');
  const dimF = fr(dimSize);
  for (let a = 0; a < outer; a++) {
    for (let i = 0; i < inner; i++) {
      const p = a * dimSize * inner + i;
      if (op === REDUCE_OP.max) {
        let best = -Infinity;
        let at = 0;
        for (let d = 0; d < dimSize; d++) {
          const v = xs[p + d * inner]!;
          if (beats(v, best)) {
            best = v;
            at = d;
          }
        }
        ys[a * inner + i] = best;
        if (ix !== null) ix[a * inner + i] = at;
      } else {
        let s = 0;
        for (let d = 0; d < dimSize; d++) s = fr(s + xs[p + d * inner]!);
        ys[a * inner + i] = op === REDUCE_OP.mean ? fr(s / dimF) : s;
      }
    }
  }
}

/** y = softmax(x) or log_softmax(x) over each row of (rows, cols). */
export function softmax(x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, rows: number, cols: number, log: boolean): void {
  const o = 'softmax';
  dim(o, 'rows', rows);
  dim(o, 'cols', cols);
  const n = mulCount(o, rows, cols);
  const xs = f32(o, 'x', x, xOff, n, false);
  const ys = f32(o, 'y', y, yOff, n, true);
  const lg = flag(o, 'log', log);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    // std::max(m, v) keeps m unless m < v: a NaN never becomes the max.
    let m = -Infinity;
    for (let c = 0; c < cols; c++) if (m < xs[base + c]!) m = xs[base + c]!;
    let s = 0;
    for (let c = 0; c < cols; c++) s = fr(s + fr(Math.exp(fr(xs[base + c]! - m))));
    if (lg) {
      const ls = fr(Math.log(s));
      for (let c = 0; c < cols; c++) ys[base + c] = fr(fr(xs[base + c]! - m) - ls);
    } else {
      for (let c = 0; c < cols; c++) ys[base + c] = fr(fr(Math.exp(fr(xs[base + c]! - m))) / s);
    }
  }
}

/** softmax: dx = y * (dy - sum(dy * y)); log-softmax: dx = dy - exp(y) * sum(dy). */
export function softmaxBackward(
  y: Handle, yOff: ByteOffset, dy: Handle, dyOff: ByteOffset, dx: Handle, dxOff: ByteOffset,
  rows: number, cols: number, log: boolean,
): void {
  const o = 'softmaxBackward';
  dim(o, 'rows', rows);
  dim(o, 'cols', cols);
  const n = mulCount(o, rows, cols);
  const ys = f32(o, 'y', y, yOff, n, false);
  const gs = f32(o, 'dy', dy, dyOff, n, false);
  const ds = f32(o, 'dx', dx, dxOff, n, true);
  const lg = flag(o, 'log', log);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let s = 0;
    if (lg) {
      for (let c = 0; c < cols; c++) s = fr(s + gs[base + c]!);
      for (let c = 0; c < cols; c++) ds[base + c] = fr(gs[base + c]! - fr(fr(Math.exp(ys[base + c]!)) * s));
    } else {
      for (let c = 0; c < cols; c++) s = fr(s + fr(gs[base + c]! * ys[base + c]!));
      for (let c = 0; c < cols; c++) ds[base + c] = fr(ys[base + c]! * fr(gs[base + c]! - s));
    }
  }
}

/** Row-wise argmax into int32 out (rows); the first index among equals, NaN beats any number. */
export function argmax(x: Handle, xOff: ByteOffset, out: Handle, outOff: ByteOffset, rows: number, cols: number): void {
  const o = 'argmax';
  dim(o, 'rows', rows);
  dim(o, 'cols', cols);
  if (cols === 0 && rows > 0) fail(o, 'argmax of empty rows (cols 0)');
  if (cols > 2147483647) fail(o, `cols ${cols} does not fit int32 indices`);
  const xs = f32(o, 'x', x, xOff, mulCount(o, rows, cols), false);
  const os = i32(o, 'out', out, outOff, rows, true);
  for (let r = 0; r < rows; r++) {
    let best = -Infinity;
    let at = 0;
    for (let c = 0; c < cols; c++) {
      const v = xs[r * cols + c]!;
      if (beats(v, best)) {
        best = v;
        at = c;
      }
    }
    os[r] = at;
  }
}

/** k up to which top-k keeps a sorted insertion list; above it, a full sort of the row's indices. */
const INSERTION_K = 32;

/** Row-wise top-k: values (rows, k) and indices (rows, k), descending; NaN largest, lower index first on ties. */
export function topk(
  x: Handle, xOff: ByteOffset, values: Handle, vOff: ByteOffset, indices: Handle, iOff: ByteOffset,
  rows: number, cols: number, k: number,
): void {
  const o = 'topk';
  dim(o, 'rows', rows);
  dim(o, 'cols', cols);
  dim(o, 'k', k);
  if (k > cols) fail(o, `k ${k} is larger than the row length ${cols}`);
  if (cols > 2147483647) fail(o, `cols ${cols} does not fit int32 indices`);
  const xs = f32(o, 'x', x, xOff, mulCount(o, rows, cols), false);
  const vs = f32(o, 'values', values, vOff, mulCount(o, rows, k), true);
  const is = i32(o, 'indices', indices, iOff, mulCount(o, rows, k), true);
  if (rows === 0 || k === 0) return;
  let base = 0;
  // The strict weak order of the native kernel: a before b when its value is larger (NaN largest), or equal
  // (NaN and NaN alike) with the lower index.
  const before = (a: number, b: number): boolean => {
    const va = xs[base + a]!, vb = xs[base + b]!;
    if (va !== va || vb !== vb) return (va !== va && vb === vb) || (va !== va && vb !== vb && a < b);
    return va > vb || (va === vb && a < b);
  };
  const order = new Int32Array(k <= INSERTION_K ? k : cols);
  for (let r = 0; r < rows; r++) {
    base = r * cols;
    if (k <= INSERTION_K) {
      // Keep the best k seen so far, sorted; a candidate enters when it beats the current last.
      let len = 0;
      for (let c = 0; c < cols; c++) {
        if (len === k && !before(c, order[k - 1]!)) continue;
        let j = len < k ? len++ : k - 1;
        while (j > 0 && before(c, order[j - 1]!)) {
          order[j] = order[j - 1]!;
          j--;
        }
        order[j] = c;
      }
    } else {
      for (let c = 0; c < cols; c++) order[c] = c;
      order.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
    }
    for (let j = 0; j < k; j++) {
      vs[r * k + j] = xs[base + order[j]!]!;
      is[r * k + j] = order[j]!;
    }
  }
}

/** Sum of squares, accumulated in double in index order. */
export function sumsq(x: Handle, xOff: ByteOffset, n: number): number {
  const o = 'sumsq';
  dim(o, 'n', n);
  const xs = f32(o, 'x', x, xOff, n, false);
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i]! * xs[i]!;
  return s;
}
