// A linear over a frozen weight W with a LoRA adapter as one op: y = x·Wᵀ + s·(x∘mask)·Aᵀ·Bᵀ, A (r, K),
// B (N, r). The adapter's term is added by the GEMM itself (alpha = s, beta = 1 into the base's output) and its
// backward folds s into the GEMMs' alpha and accumulates A's share of dx with beta = 1, so no (…, N)-wide delta,
// scaled delta or sum is made or kept, in either pass: the composed ops kept two such tensors per adapted module
// until the step ended. W is a float32 tensor or a low-precision RowSource (read panel by panel); it gets no
// gradient. Inside autocast('bfloat16') the GEMMs run in bf16 compute.
// In training over a float32 W, with no dropout and at least twice as many tokens as the adapter's input width
// (forward) or output width (backward), the rank-r pass that adds s·(x·Aᵀ)·Bᵀ into y (and dproj·A into dx), a
// read and write of all of y (dx) for 2r flops an element, costs more than folding the adapter into a temporary
// weight W + s·B·A (a copy of W and one N×K×r GEMM, freed at once): the base GEMM then runs over that weight. Not
// in inference (no gradients), where a row's result must not depend on how many other rows share the call.
import { isGradEnabled, record } from '../autograd.ts';
import { bf16Compute } from '../autocast.ts';
import { type RowSource, frozenLinearForward, frozenLinearInputGrad } from '../frozen-gemm.ts';
import type { Tensor } from '../tensor.ts';
import { add } from './elementwise.ts';
import type { Rng } from '../rng.ts';
import { type DropoutKeys, applyDropout, drawDropout } from './dropout.ts';
import { inRecomputeForward } from './recompute.ts';
import { copyInto } from './views.ts';
import { type Rule, dense, emptyOn, expectF32, shapeError, sharedBackend } from './util.ts';

interface LoraLinearCtx {
  /** The input the adapter saw (x∘mask with dropout, else x), dense. */
  xa: Tensor;
  /** x·Aᵀ (M, r). */
  proj: Tensor;
  w: Tensor | RowSource;
  a: Tensor;
  b: Tensor;
  scale: number;
  /** The dropout mask's keys (regenerated for dx), or null. */
  dropout: DropoutKeys | null;
  bf16: boolean;
  /** Which of x, A, B take a gradient (the rule computes only those). */
  needs: [boolean, boolean, boolean];
}

/** c (m, n) = alpha·op(a)·op(b) + beta·c over contiguous row-major matrices (lda/ldb/ldc their row lengths). */
function gemm(o: { ta: boolean; tb: boolean; m: number; n: number; k: number; alpha: number; a: Tensor; b: Tensor; beta: number; c: Tensor; bf16: boolean }): void {
  const lda = o.ta ? o.m : o.k;
  const ldb = o.tb ? o.k : o.n;
  o.c.backend.gemm(o.ta, o.tb, o.m, o.n, o.k, o.alpha, o.a.handle, o.a.byteOffset, lda, o.b.handle, o.b.byteOffset, ldb, o.beta, o.c.handle, o.c.byteOffset, o.n, 1, 0, 0, 0, o.bf16);
}

function isRows(w: Tensor | RowSource): w is RowSource {
  return 'dequantizeRows' in w;
}

/** W + s·B·A (N, K) as a new tensor: the adapter folded into the frozen weight, for one GEMM. */
function mergedWeight(w: Tensor, a: Tensor, b: Tensor, s: number, bf16: boolean): Tensor {
  const [N, K] = w.shape as [number, number];
  const weff = emptyOn(w.backend, [N, K]);
  copyInto(w, weff, false);
  gemm({ ta: false, tb: false, m: N, n: K, k: a.shape[0] as number, alpha: s, a: b, b: a, beta: 1, c: weff, bf16 });
  return weff;
}

/** Whether the adapter is folded into the weight for a pass over `tokens` rows whose reduced width is `width`. */
function foldsAdapter(w: Tensor | RowSource, tokens: number, width: number, dropout: boolean): boolean {
  return !isRows(w) && !dropout && tokens >= 2 * width;
}

export interface LoraLinearOptions {
  /** s = alpha / r (alpha / √r with rsLoRA). */
  scale: number;
  /** Inverted dropout of the adapter's input: drawn from `rng` (the backend's dropoutMask), or none. */
  dropout?: { p: number; rng: Rng } | null;
}

/** x (..., K) · W (N, K)ᵀ + s·(x∘mask)·A (r, K)ᵀ·B (N, r)ᵀ → (..., N); W frozen (no gradient), A and B trained. */
export function loraLinear(x: Tensor, w: Tensor | RowSource, a: Tensor, b: Tensor, opts: LoraLinearOptions): Tensor {
  expectF32('loraLinear', ['x', x], ['A', a], ['B', b]);
  const K = x.shape[x.ndim - 1] as number;
  const [N, WK] = isRows(w) ? [w.rows, w.cols] : [w.shape[0] as number, w.shape[1] as number];
  const r = a.shape[0] as number;
  if (x.ndim < 1 || WK !== K || a.ndim !== 2 || a.shape[1] !== K || b.ndim !== 2 || b.shape[0] !== N || b.shape[1] !== r) {
    throw shapeError('loraLinear', `x [${x.shape.join(', ')}], W [${N}, ${WK}], A [${a.shape.join(', ')}], B [${b.shape.join(', ')}] do not fit x·Wᵀ + x·Aᵀ·Bᵀ`);
  }
  if (!isRows(w)) expectF32('loraLinear', ['W', w]);
  const be = sharedBackend('loraLinear', x, a, b);
  const bf16 = bf16Compute();
  const xd = dense(x);
  const M = xd.size / K;
  const wd = isRows(w) ? w : dense(w);
  const ad = dense(a);
  const bd = dense(b);
  // Folded only where backward will run (recorded, or a recompute block's first pass, whose replay folds alike).
  const folded = (isGradEnabled() || inRecomputeForward()) && foldsAdapter(wd, M, K, !!opts.dropout);
  let y: Tensor;
  if (isRows(wd)) {
    y = frozenLinearForward(xd, wd, bf16);
  } else {
    y = emptyOn(be, [...x.shape.slice(0, -1), N]);
    const weff = folded ? mergedWeight(wd, ad, bd, opts.scale, bf16) : wd;
    gemm({ ta: false, tb: true, m: M, n: N, k: K, alpha: 1, a: xd, b: weff, beta: 0, c: y, bf16 });
    if (folded) weff.release();
  }
  // The mask is not kept: backward regenerates it from its keys.
  const keys = opts.dropout ? drawDropout(opts.dropout.rng, opts.dropout.p) : null;
  const xa = keys ? applyDropout(xd, keys) : xd;
  const proj = emptyOn(be, [M, r]);
  gemm({ ta: false, tb: true, m: M, n: r, k: K, alpha: 1, a: xa, b: ad, beta: 0, c: proj, bf16 });
  // y += s · proj · Bᵀ, written into the base's output (unless folded into the weight above).
  if (!folded) gemm({ ta: false, tb: true, m: M, n: N, k: r, alpha: opts.scale, a: proj, b: bd, beta: 1, c: y, bf16 });
  const ctx: LoraLinearCtx = { xa, proj, w: wd, a: ad, b: bd, scale: opts.scale, dropout: keys, bf16, needs: [x.requiresGrad, a.requiresGrad, b.requiresGrad] };
  return record(y, 'loraLinear', [x, a, b], ctx);
}

export const rules = {
  loraLinear: ((c, g) => {
    const [needX, needA, needB] = c.needs;
    const gd = dense(g);
    const N = gd.shape[gd.ndim - 1] as number;
    const M = gd.size / N;
    const [r, K] = c.a.shape as [number, number];
    const be = gd.backend;
    const { bf16, scale: s } = c;
    // dB (N, r) = s·gᵀ·proj; dproj (M, r) = s·g·B; dA (r, K) = dprojᵀ·xa; dx = g·W + (dproj·A)∘mask, or
    // g·(W + s·B·A) when folded (A's share then comes with the base's GEMM).
    const folded = needX && foldsAdapter(c.w, M, N, !!c.dropout);
    let db: Tensor | null = null;
    if (needB) {
      db = emptyOn(be, [N, r]);
      gemm({ ta: true, tb: false, m: N, n: r, k: M, alpha: s, a: gd, b: c.proj, beta: 0, c: db, bf16 });
    }
    let dproj: Tensor | null = null;
    if (needA || (needX && !folded)) {
      dproj = emptyOn(be, [M, r]);
      gemm({ ta: false, tb: false, m: M, n: r, k: N, alpha: s, a: gd, b: c.b, beta: 0, c: dproj, bf16 });
    }
    let da: Tensor | null = null;
    if (needA && dproj) {
      da = emptyOn(be, [r, K]);
      gemm({ ta: true, tb: false, m: r, n: K, k: M, alpha: 1, a: dproj, b: c.xa, beta: 0, c: da, bf16 });
    }
    let dx: Tensor | null = null;
    if (needX) {
      const shape = [...c.xa.shape];
      if (isRows(c.w)) {
        dx = frozenLinearInputGrad(gd, c.w, bf16);
      } else {
        dx = emptyOn(be, shape);
        const weff = folded ? mergedWeight(c.w, c.a, c.b, s, bf16) : c.w;
        gemm({ ta: false, tb: false, m: M, n: K, k: N, alpha: 1, a: gd, b: weff, beta: 0, c: dx, bf16 });
        if (folded) weff.release();
      }
      if (dproj && !folded) {
        if (c.dropout) {
          const viaA = emptyOn(be, shape);
          gemm({ ta: false, tb: false, m: M, n: K, k: r, alpha: 1, a: dproj, b: c.a, beta: 0, c: viaA, bf16 });
          dx = add(dx, applyDropout(viaA, c.dropout, viaA));
        } else {
          gemm({ ta: false, tb: false, m: M, n: K, k: r, alpha: 1, a: dproj, b: c.a, beta: 1, c: dx, bf16 });
        }
      }
    }
    return [dx, da, db];
  }) as Rule<LoraLinearCtx>,
};
