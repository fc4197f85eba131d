// Fused NN primitives over native forward/backward kernels: embedding, RMSNorm, LayerNorm, RoPE, SwiGLU,
// attention (causal, GQA, KV-cache offset, packed segments) and final projection + cross-entropy.
import { type InputGrad, gradAccumulator, needsGrad, record } from '../autograd.ts';
import { bf16Compute } from '../autocast.ts';
import { fmt, sameShape } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { type Rule, dense, emptyOn, expectDType, expectF32, expectNdim, shapeError, sharedBackend } from './util.ts';

const NONE = 0;

interface EmbeddingCtx { weight: Tensor; ids: Tensor }

/** Rows of weight (vocab, dim) picked by int32 ids (any shape) → (...ids.shape, dim). */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  expectF32('embedding', ['weight', weight]);
  expectDType('embedding', 'ids', ids, 'int32');
  expectNdim('embedding', 'weight', weight, 2);
  const [vocab, dim] = weight.shape as [number, number];
  const w = dense(weight);
  const idd = dense(ids);
  const be = sharedBackend('embedding', weight, ids);
  const out = emptyOn(be, [...ids.shape, dim]);
  if (out.size > 0) be.embedding(w.handle, w.byteOffset, idd.handle, idd.byteOffset, out.handle, 0, ids.size, vocab, dim);
  const ctx: EmbeddingCtx = { weight, ids: idd };
  return record(out, 'embedding', [weight, null], ctx);
}

interface NormCtx { x: Tensor; w: Tensor | null; b: Tensor | null; mean: Tensor | null; rstd: Tensor; rows: number; dim: number }

/** HF LlamaRMSNorm over the last dim: w * x / sqrt(mean(x²) + eps). */
export function rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
  expectF32('rmsNorm', ['x', x], ['w', w]);
  const dim = x.shape[x.ndim - 1] ?? 0;
  if (w.ndim !== 1 || w.shape[0] !== dim) throw shapeError('rmsNorm', `weight ${fmt(w.shape)} does not match x ${fmt(x.shape)}`);
  const xd = dense(x);
  const wd = dense(w);
  const rows = dim === 0 ? 0 : x.size / dim;
  const be = sharedBackend('rmsNorm', x, w);
  const y = emptyOn(be, x.shape);
  const rstd = emptyOn(be, [rows]);
  if (y.size > 0) be.rmsnormForward(xd.handle, xd.byteOffset, wd.handle, wd.byteOffset, y.handle, 0, rstd.handle, 0, rows, dim, eps);
  const ctx: NormCtx = { x: xd, w: wd, b: null, mean: null, rstd, rows, dim };
  return record(y, 'rmsNorm', [x, w], ctx);
}

/** torch LayerNorm over the last dim (biased variance); weight and bias optional. */
export function layerNorm(x: Tensor, w: Tensor | null, b: Tensor | null, eps: number): Tensor {
  expectF32('layerNorm', ['x', x]);
  const dim = x.shape[x.ndim - 1] ?? 0;
  for (const [name, p] of [['weight', w], ['bias', b]] as const) {
    if (p && (p.dtype !== 'float32' || p.ndim !== 1 || p.shape[0] !== dim)) throw shapeError('layerNorm', `${name} ${fmt(p.shape)} does not match x ${fmt(x.shape)}`);
  }
  const xd = dense(x);
  const wd = w ? dense(w) : null;
  const bd = b ? dense(b) : null;
  const rows = dim === 0 ? 0 : x.size / dim;
  const be = sharedBackend('layerNorm', x, w, b);
  const y = emptyOn(be, x.shape);
  const mean = emptyOn(be, [rows]);
  const rstd = emptyOn(be, [rows]);
  if (y.size > 0) {
    be.layernormForward(
      xd.handle, xd.byteOffset, wd?.handle ?? NONE, wd?.byteOffset ?? 0, bd?.handle ?? NONE, bd?.byteOffset ?? 0,
      y.handle, 0, mean.handle, 0, rstd.handle, 0, rows, dim, eps,
    );
  }
  const ctx: NormCtx = { x: xd, w: wd, b: bd, mean, rstd, rows, dim };
  return record(y, 'layerNorm', [x, w, b], ctx);
}

/** Cos/sin tables (positions, rotDim/2) and int32 positions (rows) for rope(). */
export interface RopeTables { cos: Tensor; sin: Tensor; positions: Tensor }

interface RopeCtx { tables: RopeTables; rows: number; H: number; D: number; rotDim: number }

/** HF rotate_half RoPE on x (B, T, H, D) (or (rows, H, D)); the first rotDim dims of each head rotate. */
export function rope(x: Tensor, tables: RopeTables, rotDim: number): Tensor {
  expectF32('rope', ['x', x], ['cos', tables.cos], ['sin', tables.sin]);
  expectDType('rope', 'positions', tables.positions, 'int32');
  if (x.ndim < 3) throw shapeError('rope', `x must be (..., H, D), got ${fmt(x.shape)}`);
  const D = x.shape[x.ndim - 1] as number;
  const H = x.shape[x.ndim - 2] as number;
  const rows = H * D === 0 ? 0 : x.size / (H * D);
  if (rotDim % 2 !== 0 || rotDim > D || rotDim <= 0) throw shapeError('rope', `rotary dims ${rotDim} must be even and in 1..${D}`);
  if (tables.positions.size !== rows) throw shapeError('rope', `${tables.positions.size} positions for ${rows} rows of ${fmt(x.shape)}`);
  if (!sameShape(tables.cos.shape, tables.sin.shape) || tables.cos.ndim !== 2 || tables.cos.shape[1] !== rotDim / 2) {
    throw shapeError('rope', `tables ${fmt(tables.cos.shape)} / ${fmt(tables.sin.shape)} must be (positions, ${rotDim / 2})`);
  }
  const ctx: RopeCtx = { tables, rows, H, D, rotDim };
  const y = ropeRaw(dense(x), ctx, false);
  return record(y, 'rope', [x], ctx);
}

function ropeRaw(x: Tensor, c: RopeCtx, backward: boolean): Tensor {
  const be = sharedBackend('rope', x, c.tables.cos, c.tables.sin);
  const y = emptyOn(be, x.shape);
  const { cos, sin, positions } = c.tables;
  if (y.size > 0) {
    be.rope(
      x.handle, x.byteOffset, y.handle, 0, cos.handle, cos.byteOffset, sin.handle, sin.byteOffset,
      positions.handle, positions.byteOffset, c.rows, c.H, c.D, c.rotDim, cos.shape[0] as number, backward,
    );
  }
  return y;
}

interface SwigluCtx { gate: Tensor; up: Tensor }

/** silu(gate) * up. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  expectF32('swiglu', ['gate', gate], ['up', up]);
  if (!sameShape(gate.shape, up.shape)) throw shapeError('swiglu', `gate ${fmt(gate.shape)} and up ${fmt(up.shape)} differ`);
  const gd = dense(gate);
  const ud = dense(up);
  const be = sharedBackend('swiglu', gate, up);
  const out = emptyOn(be, gate.shape);
  if (out.size > 0) be.swigluForward(gd.handle, gd.byteOffset, ud.handle, ud.byteOffset, out.handle, 0, out.size);
  const ctx: SwigluCtx = { gate: gd, up: ud };
  return record(out, 'swiglu', [gate, up], ctx);
}

export interface AttentionOptions {
  causal?: boolean;
  /** Position of query 0 among the keys (KV-cache decoding). */
  qOffset?: number;
  /** Segment ids (B, T) / (B, S), int32: queries see only keys of their own segment (packed rows). */
  qSegments?: Tensor | null;
  kSegments?: Tensor | null;
  /** Defaults to 1/sqrt(D). */
  scale?: number;
  /** Sliding window (Mistral): query t sees only the last `window` key positions up to its own; 0 or absent: none. */
  window?: number;
}

interface AttentionCtx {
  q: Tensor; k: Tensor; v: Tensor; out: Tensor; lse: Tensor;
  qSeg: Tensor | null; kSeg: Tensor | null;
  dims: { B: number; T: number; S: number; Hq: number; Hkv: number; D: number; kvStride: number; qOffset: number; scale: number; causal: boolean; window: number };
}

/** Rows (S, Hkv, D) must be dense; the batch may be strided (a KV cache). Returns the batch stride. */
function kvBatchStride(name: string, t: Tensor): number {
  const [, S, H, D] = t.shape as [number, number, number, number];
  if (t.strides[3] !== 1 || t.strides[2] !== D || t.strides[1] !== H * D) {
    throw shapeError('attention', `${name} ${fmt(t.shape)} must have dense (S, H, D) rows`);
  }
  return Math.max(t.strides[0] as number, S * H * D);
}

/** Scaled dot-product attention: q (B,T,Hq,D), k and v (B,S,Hkv,D) → (B,T,Hq,D). */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  expectF32('attention', ['q', q], ['k', k], ['v', v]);
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) expectNdim('attention', name, t, 4);
  const [B, T, Hq, D] = q.shape as [number, number, number, number];
  const [Bk, S, Hkv, Dk] = k.shape as [number, number, number, number];
  if (Bk !== B || Dk !== D || !sameShape(k.shape, v.shape)) throw shapeError('attention', `q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} do not fit`);
  if (Hkv === 0 || Hq % Hkv !== 0) throw shapeError('attention', `${Hq} query heads are not a multiple of ${Hkv} kv heads`);
  const qd = dense(q);
  const kStride = kvBatchStride('k', k);
  const vStride = kvBatchStride('v', v);
  if (kStride !== vStride) throw shapeError('attention', 'k and v must share one batch stride');
  const qSeg = opts.qSegments ? dense(opts.qSegments) : null;
  const kSeg = opts.kSegments ? dense(opts.kSegments) : null;
  if ((qSeg === null) !== (kSeg === null)) throw shapeError('attention', 'give both qSegments and kSegments, or neither');
  if (qSeg && kSeg) {
    expectDType('attention', 'qSegments', qSeg, 'int32');
    expectDType('attention', 'kSegments', kSeg, 'int32');
    if (!sameShape(qSeg.shape, [B, T]) || !sameShape(kSeg.shape, [B, S])) throw shapeError('attention', `segments ${fmt(qSeg.shape)} / ${fmt(kSeg.shape)} must be [${B}, ${T}] / [${B}, ${S}]`);
  }
  const dims = {
    B, T, S, Hq, Hkv, D, kvStride: kStride, qOffset: opts.qOffset ?? 0, scale: opts.scale ?? 1 / Math.sqrt(D), causal: opts.causal ?? true,
    window: opts.window ?? 0,
  };
  if (!Number.isInteger(dims.window) || dims.window < 0) throw shapeError('attention', `window must be a non-negative integer, got ${dims.window}`);
  const be = sharedBackend('attention', q, k, v);
  const out = emptyOn(be, q.shape);
  const lse = emptyOn(be, [B, Hq, T]);
  if (out.size > 0) {
    be.attentionForward(
      qd.handle, qd.byteOffset, k.handle, k.byteOffset, v.handle, v.byteOffset, out.handle, 0, lse.handle, 0,
      qSeg?.handle ?? NONE, qSeg?.byteOffset ?? 0, kSeg?.handle ?? NONE, kSeg?.byteOffset ?? 0,
      B, T, S, Hq, Hkv, D, kStride, dims.qOffset, dims.scale, dims.causal, dims.window,
    );
  }
  const ctx: AttentionCtx = { q: qd, k, v, out, lse, qSeg, kSeg, dims };
  return record(out, 'attention', [q, k, v], ctx);
}

export interface CrossEntropyResult {
  /** Sum of token losses over trained labels (a differentiable scalar). */
  lossSum: Tensor;
  /** Number of trained labels (labels != -100). */
  count: number;
}

export interface CrossEntropyOptions {
  /** Vocab columns per chunk of the forward-only (and two-pass) kernels; default 4096. */
  chunk?: number;
  /** Per-row losses (N) are written here (dense float32; 0 for ignored rows). */
  rowLoss?: Tensor;
  /**
   * d loss / d lossSum of the backward to come (e.g. 1 / trained tokens of the global batch): with it, when
   * a gradient is wanted, the loss and both gradients are made in one sweep. See crossEntropy.
   */
  gradScale?: number;
  /** Rows per block of the one-sweep kernel (scratch rowBlock·V floats); default: see sweepRowBlock. */
  rowBlock?: number;
}

interface CePairCtx { kind: 'pair'; h: Tensor; w: Tensor; labels: Tensor; lse: Tensor; N: number; d: number; V: number; chunk: number; bf16: boolean }
/** The one sweep already made the gradients: dh (null when h needs none) and dw (ACCUMULATED into w.grad). */
interface CeSweepCtx { kind: 'sweep'; dh: Tensor | null; dw: InputGrad; gradScale: number; used: boolean }
type CeCtx = CePairCtx | CeSweepCtx;

/** Scratch budget of one row block of logits in the one-sweep kernel. */
const SWEEP_SCRATCH_BYTES = 32 * 2 ** 20;
/** Fewer rows per block make thin GEMMs and re-read and rewrite dw (V, d) once per block. */
const SWEEP_MIN_ROWS = 64;

/**
 * Rows per block of the one-sweep kernel: as many as fit SWEEP_SCRATCH_BYTES of logits (at least
 * SWEEP_MIN_ROWS), then evened out over the blocks and rounded up to a multiple of 16 (whole GEMM tiles),
 * e.g. 256 at vocab 32000 for 1024 rows (4 blocks), 1024 at vocab 8192 for 2048 rows.
 */
export function sweepRowBlock(N: number, V: number): number {
  if (N <= 1) return 1;
  const most = Math.max(SWEEP_MIN_ROWS, Math.floor(SWEEP_SCRATCH_BYTES / (4 * Math.max(V, 1))));
  const even = Math.ceil(N / Math.ceil(N / most));
  return Math.min(N, Math.ceil(even / 16) * 16);
}

/**
 * Final projection fused with cross-entropy: logits = h (N, d) @ wᵀ (w: (V, d)), labels int32 (N), -100
 * ignored; (N, V) logits never exist at once.
 *
 * Without gradScale (or when no gradient is wanted: noGrad, or neither h nor w requires grad) the forward
 * makes the loss alone, in vocab chunks, and backward makes the logits again for dh and dw (two passes).
 *
 * With gradScale, when a gradient is wanted, training runs in one sweep over blocks of rows: each block's
 * logits are made once and turned into the loss, dh and dw right away, saving the backward's logits GEMM.
 * The contract, since the gradients exist before backward runs:
 * - backward must reach lossSum with gradient gradScale (checked, up to fp32 rounding: relative 1e-6;
 *   anything else throws, as does a second backward through the same loss);
 * - w's gradient is added into w.grad during this call when w is a trainable leaf that already has a dense
 *   fp32 .grad (gradSink), saving a vocab-sized temporary; it counts as if backward had run, so a caller
 *   that makes the loss but never runs backward from it must zero the gradients itself, and must not zero
 *   them between this call and backward. Without such a .grad, dw is kept and handed to backward as usual.
 * dh is kept until backward returns it. The loss value is the same either way (up to rounding).
 */
export function crossEntropy(h: Tensor, w: Tensor, labels: Tensor, opts: CrossEntropyOptions = {}): CrossEntropyResult {
  expectF32('crossEntropy', ['h', h], ['w', w]);
  expectDType('crossEntropy', 'labels', labels, 'int32');
  expectNdim('crossEntropy', 'h', h, 2);
  expectNdim('crossEntropy', 'w', w, 2);
  const [N, d] = h.shape as [number, number];
  const [V, dw] = w.shape as [number, number];
  if (dw !== d) throw shapeError('crossEntropy', `h ${fmt(h.shape)} and w ${fmt(w.shape)} differ in hidden size`);
  if (labels.size !== N) throw shapeError('crossEntropy', `${labels.size} labels for ${N} rows`);
  if (opts.rowLoss && (opts.rowLoss.dtype !== 'float32' || opts.rowLoss.size !== N || !opts.rowLoss.isContiguous)) {
    throw shapeError('crossEntropy', `rowLoss must be a dense float32 tensor of ${N} elements`);
  }
  if (opts.gradScale !== undefined && !Number.isFinite(opts.gradScale)) throw shapeError('crossEntropy', `gradScale must be finite, got ${opts.gradScale}`);
  if (opts.rowBlock !== undefined && !(Number.isInteger(opts.rowBlock) && opts.rowBlock >= 1)) throw shapeError('crossEntropy', `rowBlock must be an integer >= 1, got ${opts.rowBlock}`);
  const hd = dense(h);
  const wd = dense(w);
  const ld = dense(labels);
  const be = sharedBackend('crossEntropy', h, w, labels);
  const lse = emptyOn(be, [N]);
  const bf16 = bf16Compute(); // the GEMMs follow autocast, in backward too
  if (opts.gradScale !== undefined && needsGrad(h, w)) {
    const gradScale = Math.fround(opts.gradScale);
    const dh = h.requiresGrad ? emptyOn(be, [N, d]) : null;
    const dw = w.requiresGrad ? gradAccumulator(w, [V, d]) : null;
    const [lossSum, count] = be.crossEntropySweep(
      hd.handle, hd.byteOffset, wd.handle, wd.byteOffset, ld.handle, ld.byteOffset, lse.handle, 0,
      opts.rowLoss?.handle ?? NONE, opts.rowLoss?.byteOffset ?? 0, dh?.handle ?? NONE, 0, dw?.into.handle ?? NONE, dw?.into.byteOffset ?? 0,
      N, d, V, opts.rowBlock ?? sweepRowBlock(N, V), gradScale, bf16,
    );
    lse.release();
    const ctx: CeSweepCtx = { kind: 'sweep', dh, dw: dw?.result ?? null, gradScale, used: false };
    return { lossSum: record(Tensor.scalar(lossSum, { backend: be }), 'crossEntropy', [h, w, null], ctx), count };
  }
  const chunk = Math.max(1, Math.min(opts.chunk ?? 4096, Math.max(V, 1)));
  const [lossSum, count] = be.crossEntropyForward(
    hd.handle, hd.byteOffset, wd.handle, wd.byteOffset, ld.handle, ld.byteOffset, lse.handle, 0,
    opts.rowLoss?.handle ?? NONE, opts.rowLoss?.byteOffset ?? 0, N, d, V, chunk, bf16,
  );
  const loss = Tensor.scalar(lossSum, { backend: be });
  const ctx: CePairCtx = { kind: 'pair', h: hd, w: wd, labels: ld, lse, N, d, V, chunk, bf16 };
  return { lossSum: record(loss, 'crossEntropy', [h, w, null], ctx), count };
}

/** Backward of the one sweep: hands back the gradients it made, once, for the gradient it planned. */
function sweepBackward(c: CeSweepCtx, g: Tensor): InputGrad[] {
  const got = g.item();
  if (c.used) throw shapeError('crossEntropy', 'backward ran twice through a one-sweep loss (made with gradScale); its gradients were handed out the first time');
  if (!(Math.abs(got - c.gradScale) <= 1e-6 * Math.abs(c.gradScale))) {
    throw shapeError(
      'crossEntropy',
      `the loss was made with gradScale ${c.gradScale} (its gradients are computed in the forward), but backward brings gradient ${got}; ` +
        'backward from lossSum scaled by exactly gradScale, or leave gradScale out',
    );
  }
  c.used = true;
  return [c.dh, c.dw, null];
}

export const rules = {
  embedding: ((c, g) => {
    const [vocab, dim] = c.weight.shape as [number, number];
    const gd = dense(g);
    // The kernel scatter-adds: straight into the weight's .grad when it has one (no vocab-sized temporary).
    const dw = gradAccumulator(c.weight, [vocab, dim]);
    if (gd.size > 0) g.backend.embeddingBackward(c.ids.handle, c.ids.byteOffset, gd.handle, gd.byteOffset, dw.into.handle, dw.into.byteOffset, c.ids.size, vocab, dim);
    return [dw.result, null];
  }) as Rule<EmbeddingCtx>,
  rmsNorm: ((c, g) => {
    const gd = dense(g);
    const dx = emptyOn(g.backend, c.x.shape);
    const w = c.w as Tensor;
    // dw is accumulated by the kernel: straight into the weight's .grad when it has one.
    const dw = gradAccumulator(w, [c.dim]);
    if (dx.size > 0) {
      g.backend.rmsnormBackward(c.x.handle, c.x.byteOffset, w.handle, w.byteOffset, c.rstd.handle, 0, gd.handle, gd.byteOffset, dx.handle, 0, dw.into.handle, dw.into.byteOffset, c.rows, c.dim);
    }
    return [dx, dw.result];
  }) as Rule<NormCtx>,
  layerNorm: ((c, g) => {
    const gd = dense(g);
    const dx = emptyOn(g.backend, c.x.shape);
    const dw = c.w ? gradAccumulator(c.w, [c.dim]) : null;
    const db = c.b ? gradAccumulator(c.b, [c.dim]) : null;
    if (dx.size > 0) {
      g.backend.layernormBackward(
        c.x.handle, c.x.byteOffset, c.w?.handle ?? NONE, c.w?.byteOffset ?? 0, (c.mean as Tensor).handle, 0, c.rstd.handle, 0,
        gd.handle, gd.byteOffset, dx.handle, 0, dw?.into.handle ?? NONE, dw?.into.byteOffset ?? 0, db?.into.handle ?? NONE, db?.into.byteOffset ?? 0, c.rows, c.dim,
      );
    }
    return [dx, dw?.result ?? null, db?.result ?? null];
  }) as Rule<NormCtx>,
  rope: ((c, g) => [ropeRaw(dense(g), c, true)]) as Rule<RopeCtx>,
  swiglu: ((c, g) => {
    const gd = dense(g);
    const dgate = emptyOn(g.backend, c.gate.shape);
    const dup = emptyOn(g.backend, c.up.shape);
    if (gd.size > 0) g.backend.swigluBackward(c.gate.handle, c.gate.byteOffset, c.up.handle, c.up.byteOffset, gd.handle, gd.byteOffset, dgate.handle, 0, dup.handle, 0, gd.size);
    return [dgate, dup];
  }) as Rule<SwigluCtx>,
  attention: ((c, g) => {
    const { B, T, S, Hq, Hkv, D, kvStride, qOffset, scale, causal, window } = c.dims;
    const gd = dense(g);
    const be = g.backend;
    const dq = emptyOn(be, c.q.shape);
    const dk = emptyOn(be, [B, S, Hkv, D]);
    const dv = emptyOn(be, [B, S, Hkv, D]);
    if (dq.size > 0 || dk.size > 0) {
      be.attentionBackward(
        c.q.handle, c.q.byteOffset, c.k.handle, c.k.byteOffset, c.v.handle, c.v.byteOffset, c.out.handle, 0, c.lse.handle, 0,
        gd.handle, gd.byteOffset, dq.handle, 0, dk.handle, 0, dv.handle, 0,
        c.qSeg?.handle ?? NONE, c.qSeg?.byteOffset ?? 0, c.kSeg?.handle ?? NONE, c.kSeg?.byteOffset ?? 0,
        B, T, S, Hq, Hkv, D, kvStride, qOffset, scale, causal, window,
      );
    }
    return [dq, dk, dv];
  }) as Rule<AttentionCtx>,
  crossEntropy: ((c, g) => {
    if (c.kind === 'sweep') return sweepBackward(c, g);
    const scale = g.item();
    const dh = emptyOn(c.h.backend, [c.N, c.d]);
    // dw (vocab-sized) is accumulated by the kernel: straight into the weight's .grad when it has one.
    const dw = gradAccumulator(c.w, [c.V, c.d]);
    c.h.backend.crossEntropyBackward(
      c.h.handle, c.h.byteOffset, c.w.handle, c.w.byteOffset, c.labels.handle, c.labels.byteOffset, c.lse.handle, 0,
      dh.handle, 0, dw.into.handle, dw.into.byteOffset, c.N, c.d, c.V, c.chunk, scale, c.bf16,
    );
    return [dh, dw.result, null];
  }) as Rule<CeCtx>,
};
