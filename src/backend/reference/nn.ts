// Reference fused NN kernels: RMSNorm and LayerNorm (forward, backward), RoPE and SwiGLU, written to the naive
// kernels of native/kernels/norms.cc, rope.cc and swiglu.cc: double accumulators where they use double, fp32
// (Math.fround) where they use float, in the same order, so results are bit-exact with the addon's scalar path
// (SwiGLU up to exp's last ulp in double, which fp32 rounding almost always hides).
import type { ByteOffset, Handle } from '../binding.ts';
import { dim, fail, flag, prod, tensorName } from './args.ts';
import { f32, f32opt, i32 } from './memory.ts';

const fr = Math.fround;

function normDims(op: string, rows: number, d: number): number {
  dim(op, 'rows', rows);
  dim(op, 'dim', d);
  if (d < 1) fail(op, 'dim must be >= 1');
  return prod(op, [rows, d]);
}

function epsArg(op: string, eps: number): number {
  if (typeof eps !== 'number') fail(op, "argument 'eps' must be a number");
  if (!Number.isFinite(eps) || eps < 0) fail(op, 'eps must be finite and >= 0');
  return fr(eps);
}

/** y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps) (HF LlamaRMSNorm); x, y (rows, dim); w (dim); rstd (rows). */
export function rmsnormForward(
  x: Handle, xOff: ByteOffset, w: Handle, wOff: ByteOffset, y: Handle, yOff: ByteOffset,
  rstd: Handle, rstdOff: ByteOffset, rows: number, dimSize: number, eps: number,
): void {
  const op = 'rmsnormForward';
  const n = normDims(op, rows, dimSize);
  const e = epsArg(op, eps);
  const d = dimSize;
  const xs = f32(op, tensorName('x', [rows, d]), x, xOff, n, false);
  const ws = f32(op, tensorName('w', [d]), w, wOff, d, false);
  const ys = f32(op, tensorName('y', [rows, d]), y, yOff, n, true);
  const rs = f32(op, tensorName('rstd', [rows]), rstd, rstdOff, rows, true);
  for (let r = 0; r < rows; r++) {
    const base = r * d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += xs[base + i]! * xs[base + i]!;
    const s = fr(1 / Math.sqrt(ss / d + e));
    rs[r] = s;
    for (let i = 0; i < d; i++) ys[base + i] = fr(ws[i]! * fr(xs[base + i]! * s));
  }
}

/** dx = rstd * w * dy - x * rstd^3 * sum(w * dy * x) / dim (overwritten); dw (optional) += sum over rows of dy * x * rstd. */
export function rmsnormBackward(
  x: Handle, xOff: ByteOffset, w: Handle, wOff: ByteOffset, rstd: Handle, rstdOff: ByteOffset,
  dy: Handle, dyOff: ByteOffset, dx: Handle, dxOff: ByteOffset, dw: Handle, dwOff: ByteOffset,
  rows: number, dimSize: number,
): void {
  const op = 'rmsnormBackward';
  const n = normDims(op, rows, dimSize);
  const d = dimSize;
  const xs = f32(op, tensorName('x', [rows, d]), x, xOff, n, false);
  const ws = f32(op, tensorName('w', [d]), w, wOff, d, false);
  const rs = f32(op, tensorName('rstd', [rows]), rstd, rstdOff, rows, false);
  const dys = f32(op, tensorName('dy', [rows, d]), dy, dyOff, n, false);
  const dxs = f32(op, tensorName('dx', [rows, d]), dx, dxOff, n, true);
  const dws = f32opt(op, tensorName('dw', [d]), dw, dwOff, d, true);
  const dwAcc = new Float64Array(dws === null ? 0 : d);
  for (let r = 0; r < rows; r++) {
    const base = r * d;
    const s = rs[r]!;
    let dot = 0;
    for (let i = 0; i < d; i++) dot += ws[i]! * dys[base + i]! * xs[base + i]!;
    const c = (s * s * s * dot) / d;
    for (let i = 0; i < d; i++) dxs[base + i] = s * ws[i]! * dys[base + i]! - c * xs[base + i]!;
    if (dws !== null) for (let i = 0; i < d; i++) dwAcc[i] = dwAcc[i]! + dys[base + i]! * xs[base + i]! * s;
  }
  if (dws !== null) for (let i = 0; i < d; i++) dws[i] = fr(dws[i]! + fr(dwAcc[i]!));
}

/** y = (x - mean) * rstd * w + b with the biased variance (torch.nn.LayerNorm); w, b optional (handle 0). */
export function layernormForward(
  x: Handle, xOff: ByteOffset, w: Handle, wOff: ByteOffset, b: Handle, bOff: ByteOffset, y: Handle, yOff: ByteOffset,
  mean: Handle, meanOff: ByteOffset, rstd: Handle, rstdOff: ByteOffset, rows: number, dimSize: number, eps: number,
): void {
  const op = 'layernormForward';
  const n = normDims(op, rows, dimSize);
  const e = epsArg(op, eps);
  const d = dimSize;
  const xs = f32(op, tensorName('x', [rows, d]), x, xOff, n, false);
  const ws = f32opt(op, tensorName('w', [d]), w, wOff, d, false);
  const bs = f32opt(op, tensorName('b', [d]), b, bOff, d, false);
  const ys = f32(op, tensorName('y', [rows, d]), y, yOff, n, true);
  const ms = f32(op, tensorName('mean', [rows]), mean, meanOff, rows, true);
  const rs = f32(op, tensorName('rstd', [rows]), rstd, rstdOff, rows, true);
  for (let r = 0; r < rows; r++) {
    const base = r * d;
    let s = 0;
    for (let i = 0; i < d; i++) s += xs[base + i]!;
    const mu = s / d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (xs[base + i]! - mu) * (xs[base + i]! - mu);
    v /= d;
    const rsd = 1 / Math.sqrt(v + e);
    ms[r] = mu;
    rs[r] = rsd;
    for (let i = 0; i < d; i++) {
      let t = (xs[base + i]! - mu) * rsd;
      if (ws !== null) t *= ws[i]!;
      if (bs !== null) t += bs[i]!;
      ys[base + i] = t;
    }
  }
}

/**
 * With xhat = (x - mean) * rstd and g = dy * w: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) (overwritten);
 * dw += sum over rows of dy * xhat, db += sum over rows of dy (each optional).
 */
export function layernormBackward(
  x: Handle, xOff: ByteOffset, w: Handle, wOff: ByteOffset, mean: Handle, meanOff: ByteOffset,
  rstd: Handle, rstdOff: ByteOffset, dy: Handle, dyOff: ByteOffset, dx: Handle, dxOff: ByteOffset,
  dw: Handle, dwOff: ByteOffset, db: Handle, dbOff: ByteOffset, rows: number, dimSize: number,
): void {
  const op = 'layernormBackward';
  const n = normDims(op, rows, dimSize);
  const d = dimSize;
  const xs = f32(op, tensorName('x', [rows, d]), x, xOff, n, false);
  const ws = f32opt(op, tensorName('w', [d]), w, wOff, d, false);
  const ms = f32(op, tensorName('mean', [rows]), mean, meanOff, rows, false);
  const rs = f32(op, tensorName('rstd', [rows]), rstd, rstdOff, rows, false);
  const dys = f32(op, tensorName('dy', [rows, d]), dy, dyOff, n, false);
  const dxs = f32(op, tensorName('dx', [rows, d]), dx, dxOff, n, true);
  const dws = f32opt(op, tensorName('dw', [d]), dw, dwOff, d, true);
  const dbs = f32opt(op, tensorName('db', [d]), db, dbOff, d, true);
  if (dws !== null && ws === null) fail(op, 'dw given without w (a LayerNorm without weight has no weight gradient)');
  const dwAcc = new Float64Array(d), dbAcc = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const base = r * d;
    const mu = ms[r]!, rsd = rs[r]!;
    let sg = 0, sgx = 0;
    for (let i = 0; i < d; i++) {
      const xhat = (xs[base + i]! - mu) * rsd;
      const g = ws !== null ? dys[base + i]! * ws[i]! : dys[base + i]!;
      sg += g;
      sgx += g * xhat;
      dwAcc[i] = dwAcc[i]! + dys[base + i]! * xhat;
      dbAcc[i] = dbAcc[i]! + dys[base + i]!;
    }
    sg /= d;
    sgx /= d;
    for (let i = 0; i < d; i++) {
      const xhat = (xs[base + i]! - mu) * rsd;
      const g = ws !== null ? dys[base + i]! * ws[i]! : dys[base + i]!;
      dxs[base + i] = rsd * (g - sg - xhat * sgx);
    }
  }
  for (let i = 0; i < d; i++) {
    if (dws !== null) dws[i] = fr(dws[i]! + fr(dwAcc[i]!));
    if (dbs !== null) dbs[i] = fr(dbs[i]! + fr(dbAcc[i]!));
  }
}

/**
 * HF rotate_half RoPE on x (rows, H, D): pairs (i, i + rotDim/2) of each head's first rotDim dims rotate by the
 * cos/sin row (posCount, rotDim/2) that positions (rows) pick; the rest are copied. backward applies the
 * inverse rotation (x = dy, y = dx). x may equal y. Positions are all checked before anything is written.
 */
export function rope(
  x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, cos: Handle, cosOff: ByteOffset, sin: Handle, sinOff: ByteOffset,
  positions: Handle, posOff: ByteOffset, rows: number, H: number, D: number, rotDim: number, posCount: number,
  backward: boolean,
): void {
  const op = 'rope';
  dim(op, 'rows', rows);
  dim(op, 'H', H);
  dim(op, 'D', D);
  dim(op, 'rotDim', rotDim);
  dim(op, 'posCount', posCount);
  const bwd = flag(op, 'backward', backward);
  if (rotDim < 2 || rotDim % 2 !== 0 || rotDim > D) fail(op, `rotDim ${rotDim} must be even, >= 2 and <= D (${D})`);
  const half = rotDim / 2;
  const n = prod(op, [rows, H, D]), table = prod(op, [posCount, half]);
  const xs = f32(op, tensorName('x', [rows, H, D]), x, xOff, n, false);
  const ys = f32(op, tensorName('y', [rows, H, D]), y, yOff, n, true);
  const cs = f32(op, tensorName('cos', [posCount, half]), cos, cosOff, table, false);
  const ss = f32(op, tensorName('sin', [posCount, half]), sin, sinOff, table, false);
  const ps = i32(op, tensorName('positions', [rows]), positions, posOff, rows, false);
  for (let r = 0; r < rows; r++) {
    if (ps[r]! < 0 || ps[r]! >= posCount) {
      fail(op, `position ${ps[r]} at row ${r} is out of range [0, ${posCount}) of the cos/sin tables`);
    }
  }
  for (let r = 0; r < rows; r++) {
    const t = ps[r]! * half;
    for (let h = 0; h < H; h++) {
      const base = (r * H + h) * D;
      for (let i = 0; i < half; i++) {
        const x1 = xs[base + i]!, x2 = xs[base + i + half]!;
        const c = cs[t + i]!, s = ss[t + i]!;
        if (!bwd) {
          ys[base + i] = fr(fr(x1 * c) - fr(x2 * s));
          ys[base + i + half] = fr(fr(x2 * c) + fr(x1 * s));
        } else {
          ys[base + i] = fr(fr(x1 * c) + fr(x2 * s));
          ys[base + i + half] = fr(fr(x2 * c) - fr(x1 * s));
        }
      }
      for (let i = rotDim; i < D; i++) ys[base + i] = xs[base + i]!;
    }
  }
}

/** out = silu(gate) * up, in double then rounded once. */
export function swigluForward(gate: Handle, gOff: ByteOffset, up: Handle, uOff: ByteOffset, out: Handle, oOff: ByteOffset, n: number): void {
  const op = 'swigluForward';
  dim(op, 'n', n);
  const gs = f32(op, tensorName('gate', [n]), gate, gOff, n, false);
  const us = f32(op, tensorName('up', [n]), up, uOff, n, false);
  const os = f32(op, tensorName('out', [n]), out, oOff, n, true);
  for (let i = 0; i < n; i++) {
    const g = gs[i]!;
    os[i] = (g / (1 + Math.exp(-g))) * us[i]!;
  }
}

/** silu'(g) = sig(g) * (1 + g * (1 - sig(g))); dgate = dout * up * silu'(g); dup = dout * silu(g). Both overwritten. */
export function swigluBackward(
  gate: Handle, gOff: ByteOffset, up: Handle, uOff: ByteOffset, dout: Handle, doOff: ByteOffset,
  dgate: Handle, dgOff: ByteOffset, dup: Handle, duOff: ByteOffset, n: number,
): void {
  const op = 'swigluBackward';
  dim(op, 'n', n);
  const gs = f32(op, tensorName('gate', [n]), gate, gOff, n, false);
  const us = f32(op, tensorName('up', [n]), up, uOff, n, false);
  const ds = f32(op, tensorName('dout', [n]), dout, doOff, n, false);
  const dgs = f32(op, tensorName('dgate', [n]), dgate, dgOff, n, true);
  const dus = f32(op, tensorName('dup', [n]), dup, duOff, n, true);
  for (let i = 0; i < n; i++) {
    const g = gs[i]!;
    const sig = 1 / (1 + Math.exp(-g));
    const silu = g * sig;
    // dout * up is a float product in the C++ (both operands float), the rest is double.
    dgs[i] = fr(ds[i]! * us[i]!) * sig * (1 + g * (1 - sig));
    dus[i] = ds[i]! * silu;
  }
}
