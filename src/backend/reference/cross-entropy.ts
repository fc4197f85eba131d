// Reference final projection fused with cross-entropy, written to native/kernels/cross_entropy.cc: one row at
// a time, double dot products, logits of one vocab chunk at a time with an online max / sum-exp (forward), or a
// row's full logits once (sweep). h (N, d), w (V, d) (HF lm_head layout), labels (N) with -100 = ignored.
// bf16: h and w are rounded to bf16 before the products, and so is each dlogit in backward, as the addon's
// scalar path does. lse, losses and dh match that path up to exp/log's last double ulp; dw sums each vocab
// chunk's gradient in double and adds it once (see chunkGradient), a rounding or two from the scalar path.
import type { ByteOffset, Handle } from '../binding.ts';
import { dim, fail, finiteArg, prod, tensorName } from './args.ts';
import { roundBf16, roundedBf16 } from './bits.ts';
import { f32, f32opt, i32 } from './memory.ts';

const IGNORE = -100;
const fr = Math.fround;

interface Dims { N: number; d: number; V: number; chunk: number }

function ceDims(op: string, N: number, d: number, V: number, chunk: number, chunkName: string): Dims {
  dim(op, 'N', N);
  dim(op, 'd', d);
  dim(op, 'V', V);
  dim(op, chunkName, chunk);
  if (d < 1 || V < 1 || chunk < 1) fail(op, `d, V and ${chunkName} must be >= 1 (N=${N}, d=${d}, V=${V}, ${chunkName}=${chunk})`);
  return { N, d, V, chunk };
}

function checkLabels(op: string, labels: Int32Array, V: number): void {
  for (let r = 0; r < labels.length; r++) {
    const y = labels[r]!;
    if (y !== IGNORE && (y < 0 || y >= V)) {
      fail(op, `label ${y} at row ${r} is out of range for vocab size ${V} (-100 marks an ignored position)`);
    }
  }
}

function bf16Flag(op: string, bf16: boolean | undefined): boolean {
  if (bf16 === undefined) return false;
  if (typeof bf16 !== 'boolean') fail(op, "argument 'bf16' must be a boolean");
  return bf16;
}

/** logits[j] = h_r . w_{c0 + j} for j < n, in double over the (possibly bf16-rounded) fp32 operands. */
function chunkLogits(h: Float32Array, w: Float32Array, d: number, r: number, c0: number, n: number, logits: Float64Array): void {
  const h0 = r * d;
  for (let j = 0; j < n; j++) {
    const w0 = (c0 + j) * d;
    let dot = 0;
    for (let i = 0; i < d; i++) dot += h[h0 + i]! * w[w0 + i]!;
    logits[j] = dot;
  }
}

/**
 * lse (N); rowLoss (N, optional; 0 for ignored rows). Returns [sum of token losses, count of trained tokens].
 * Throws naming the first out-of-range label.
 */
export function crossEntropyForward(
  h: Handle, hOff: ByteOffset, w: Handle, wOff: ByteOffset, labels: Handle, lOff: ByteOffset,
  lse: Handle, lseOff: ByteOffset, rowLoss: Handle, rowLossOff: ByteOffset,
  N: number, d: number, V: number, chunk: number, bf16?: boolean,
): [number, number] {
  const op = 'crossEntropyForward';
  const m = ceDims(op, N, d, V, chunk, 'chunk');
  prod(op, [N, Math.min(chunk, V)]);
  let hv = f32(op, tensorName('h', [N, d]), h, hOff, prod(op, [N, d]), false);
  let wv = f32(op, tensorName('w', [V, d]), w, wOff, prod(op, [V, d]), false);
  const lv = i32(op, tensorName('labels', [N]), labels, lOff, N, false);
  const lse_ = f32(op, tensorName('lse', [N]), lse, lseOff, N, true);
  const rl = f32opt(op, tensorName('rowLoss', [N]), rowLoss, rowLossOff, N, true);
  const b16 = bf16Flag(op, bf16);
  checkLabels(op, lv, V);
  if (b16) {
    hv = roundedBf16(hv);
    wv = roundedBf16(wv);
  }
  const logits = new Float64Array(Math.min(m.chunk, V));
  let lossSum = 0;
  let count = 0;
  for (let r = 0; r < N; r++) {
    const y = lv[r]!;
    let mx = -Infinity, l = 0, target = 0;
    for (let c0 = 0; c0 < V; c0 += m.chunk) {
      const n = Math.min(m.chunk, V - c0);
      chunkLogits(hv, wv, d, r, c0, n, logits);
      let cm = mx;
      for (let j = 0; j < n; j++) if (logits[j]! > cm) cm = logits[j]!;
      l *= Math.exp(mx - cm);
      mx = cm;
      for (let j = 0; j < n; j++) l += Math.exp(logits[j]! - mx);
      if (y >= c0 && y < c0 + n) target = logits[y - c0]!;
    }
    const rowLse = mx + Math.log(l);
    lse_[r] = rowLse;
    const loss = y === IGNORE ? 0 : rowLse - target;
    if (rl !== null) rl[r] = loss;
    if (y !== IGNORE) {
      lossSum += loss;
      count += 1;
    }
  }
  return [lossSum, count];
}

/** Vocab columns per pass of the sweep's gradient (its dW scratch is this many rows of d doubles). */
const SWEEP_CHUNK = 256;

/**
 * The gradient of one vocab chunk [c0, c0 + n) for every trained row: dlogits = (softmax - onehot(label)) *
 * gradScale (rounded to bf16 with bf16 compute), added to dhAcc (N, d) in double, and dW of the chunk summed
 * over rows in double and added to dw once. Adding the chunk's whole gradient once (instead of row by row, as
 * the addon's scalar path does) keeps `dw += gradient` exact in the accumulate sense: two passes over the same
 * batch give exactly twice one pass, as the SIMD paths (one GEMM into scratch, then added) do.
 */
function chunkGradient(
  hv: Float32Array, wv: Float32Array, labels: Int32Array, lse: Float32Array, d: number, c0: number, n: number,
  gradScale: number, bf16: boolean, logits: Float64Array, dhAcc: Float64Array, dwAcc: Float64Array, dw: Float32Array | null,
): void {
  dwAcc.fill(0, 0, n * d);
  for (let r = 0; r < labels.length; r++) {
    const y = labels[r]!;
    if (y === IGNORE) continue;
    const h0 = r * d;
    chunkLogits(hv, wv, d, r, c0, n, logits);
    for (let j = 0; j < n; j++) {
      let g = Math.exp(logits[j]! - lse[r]!);
      if (c0 + j === y) g -= 1;
      g *= gradScale;
      if (bf16) g = roundBf16(fr(g)); // the backward products read dlogits rounded to bf16 too
      const w0 = (c0 + j) * d, a0 = j * d;
      for (let i = 0; i < d; i++) {
        dhAcc[h0 + i] = dhAcc[h0 + i]! + g * wv[w0 + i]!;
        dwAcc[a0 + i] = dwAcc[a0 + i]! + g * hv[h0 + i]!;
      }
    }
  }
  if (dw === null) return;
  const base = c0 * d;
  for (let k = 0; k < n * d; k++) dw[base + k] = fr(dw[base + k]! + fr(dwAcc[k]!));
}

/**
 * dlogits = (softmax - onehot(label)) * gradScale for trained rows; dh = dlogits @ w (N, d), overwritten (0 for
 * ignored rows); dw += dlogits^T @ h (V, d). lse is the forward's (fp32).
 */
export function crossEntropyBackward(
  h: Handle, hOff: ByteOffset, w: Handle, wOff: ByteOffset, labels: Handle, lOff: ByteOffset,
  lse: Handle, lseOff: ByteOffset, dh: Handle, dhOff: ByteOffset, dw: Handle, dwOff: ByteOffset,
  N: number, d: number, V: number, chunk: number, gradScale: number, bf16?: boolean,
): void {
  const op = 'crossEntropyBackward';
  const m = ceDims(op, N, d, V, chunk, 'chunk');
  prod(op, [N, Math.min(chunk, V)]);
  const gs = finiteArg(op, 'gradScale', gradScale);
  const nd = prod(op, [N, d]), vd = prod(op, [V, d]);
  let hv = f32(op, tensorName('h', [N, d]), h, hOff, nd, false);
  let wv = f32(op, tensorName('w', [V, d]), w, wOff, vd, false);
  const lv = i32(op, tensorName('labels', [N]), labels, lOff, N, false);
  const lse_ = f32(op, tensorName('lse', [N]), lse, lseOff, N, false);
  const dhv = f32(op, tensorName('dh', [N, d]), dh, dhOff, nd, true);
  const dwv = f32(op, tensorName('dw', [V, d]), dw, dwOff, vd, true);
  const b16 = bf16Flag(op, bf16);
  checkLabels(op, lv, V);
  if (b16) {
    hv = roundedBf16(hv);
    wv = roundedBf16(wv);
  }
  const width = Math.min(m.chunk, V);
  const logits = new Float64Array(width), dwAcc = new Float64Array(width * d), dhAcc = new Float64Array(nd);
  for (let c0 = 0; c0 < V; c0 += m.chunk) chunkGradient(hv, wv, lv, lse_, d, c0, Math.min(m.chunk, V - c0), gs, b16, logits, dhAcc, dwAcc, dwv);
  for (let k = 0; k < nd; k++) dhv[k] = dhAcc[k]!;
}

/**
 * Training in one sweep: lse, rowLoss (optional), dh (optional, overwritten) and dw (optional, accumulated),
 * both times gradScale. Returns [lossSum, count]. The loss comes from each row's full logits (as the addon's
 * sweep), the gradient from vocab chunks of SWEEP_CHUNK columns; rowBlock only sizes the addon's scratch.
 */
export function crossEntropySweep(
  h: Handle, hOff: ByteOffset, w: Handle, wOff: ByteOffset, labels: Handle, lOff: ByteOffset,
  lse: Handle, lseOff: ByteOffset, rowLoss: Handle, rowLossOff: ByteOffset, dh: Handle, dhOff: ByteOffset, dw: Handle, dwOff: ByteOffset,
  N: number, d: number, V: number, rowBlock: number, gradScale: number, bf16?: boolean,
): [number, number] {
  const op = 'crossEntropySweep';
  ceDims(op, N, d, V, rowBlock, 'rowBlock');
  prod(op, [Math.min(rowBlock, N), V]);
  const gs = finiteArg(op, 'gradScale', gradScale);
  const nd = prod(op, [N, d]), vd = prod(op, [V, d]);
  let hv = f32(op, tensorName('h', [N, d]), h, hOff, nd, false);
  let wv = f32(op, tensorName('w', [V, d]), w, wOff, vd, false);
  const lv = i32(op, tensorName('labels', [N]), labels, lOff, N, false);
  const lse_ = f32(op, tensorName('lse', [N]), lse, lseOff, N, true);
  const rl = f32opt(op, tensorName('rowLoss', [N]), rowLoss, rowLossOff, N, true);
  const dhv = f32opt(op, tensorName('dh', [N, d]), dh, dhOff, nd, true);
  const dwv = f32opt(op, tensorName('dw', [V, d]), dw, dwOff, vd, true);
  const b16 = bf16Flag(op, bf16);
  checkLabels(op, lv, V);
  if (b16) {
    hv = roundedBf16(hv);
    wv = roundedBf16(wv);
  }
  const logits = new Float64Array(V);
  let lossSum = 0;
  let count = 0;
  for (let r = 0; r < N; r++) {
    chunkLogits(hv, wv, d, r, 0, V, logits);
    let mx = -Infinity, l = 0;
    for (let j = 0; j < V; j++) if (logits[j]! > mx) mx = logits[j]!;
    for (let j = 0; j < V; j++) l += Math.exp(logits[j]! - mx);
    const rowLse = mx + Math.log(l);
    lse_[r] = rowLse;
    const y = lv[r]!;
    if (rl !== null) rl[r] = y === IGNORE ? 0 : rowLse - logits[y]!;
    if (y === IGNORE) continue;
    lossSum += rowLse - logits[y]!;
    count += 1;
  }
  if (dhv === null && dwv === null) return [lossSum, count];
  // The gradient reads the fp32 lse just stored, as crossEntropyBackward reads the forward's.
  const width = Math.min(SWEEP_CHUNK, V);
  const dwAcc = new Float64Array(width * d), dhAcc = new Float64Array(nd);
  for (let c0 = 0; c0 < V; c0 += width) chunkGradient(hv, wv, lv, lse_, d, c0, Math.min(width, V - c0), gs, b16, logits, dhAcc, dwAcc, dwv);
  if (dhv !== null) for (let k = 0; k < nd; k++) dhv[k] = dhAcc[k]!;
  return [lossSum, count];
}
