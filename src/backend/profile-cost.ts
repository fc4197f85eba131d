// Memory traffic and FLOPs of one native call, estimated from its arguments (the profile's MB and GFLOP/s
// columns). Bytes are what the call's buffer arguments span, read plus written (a read-modify-write counts
// twice), not cache-level traffic; the fused cross-entropy also counts its fp32 logits chunks (written by the
// chunk GEMM and read back), the one large intermediate a kernel keeps to itself.
import { type Dtype, KERNEL_DTYPE_CODES, dtypeBytes } from '../dtype.ts';

const F32 = 4;
/** Bytes per element by kernel dtype code (src/dtype.ts). */
const DTYPE_BYTES: number[] = [];
for (const [name, code] of Object.entries(KERNEL_DTYPE_CODES)) DTYPE_BYTES[code] = dtypeBytes(name as Dtype);

export interface KernelCost { bytes: number; flops: number }

type Args = readonly unknown[];
const num = (args: Args, i: number): number => Number(args[i] ?? 0);
const product = (xs: unknown): number => (Array.isArray(xs) ? xs.reduce((p: number, x) => p * Number(x), 1) : 0);
/** Distinct elements a broadcast operand spans: the product of the dims it is not broadcast along. */
const spanned = (shape: unknown, strides: unknown): number =>
  Array.isArray(shape) && Array.isArray(strides) ? shape.reduce((p: number, d, i) => (Number(strides[i]) === 0 ? p : p * Number(d)), 1) : 0;
const present = (handle: unknown): number => (Number(handle) !== 0 ? 1 : 0);
const viewBytes = (v: unknown): number => (ArrayBuffer.isView(v) ? v.byteLength : 0);

/** (query, key) pairs attention visits: all of them, or those the causal rule leaves visible. */
function attentionPairs(T: number, S: number, qOffset: number, causal: boolean): number {
  if (!causal) return T * S;
  let pairs = 0;
  for (let t = 0; t < T; t++) pairs += Math.max(0, Math.min(S, t + qOffset + 1));
  return pairs;
}

const COSTS: Record<string, (a: Args) => KernelCost> = {
  gemm: (a) => {
    const [M, N, K, beta, batch] = [num(a, 2), num(a, 3), num(a, 4), num(a, 12), num(a, 16)];
    return { bytes: F32 * batch * (M * K + K * N + M * N * (beta !== 0 ? 2 : 1)), flops: 2 * batch * M * N * K };
  },
  unary: (a) => ({ bytes: 2 * F32 * num(a, 5), flops: num(a, 5) }),
  // x or y, dy read; dx written.
  unaryBackward: (a) => ({ bytes: 3 * F32 * num(a, 9), flops: 2 * num(a, 9) }),
  binary: (a) => {
    const shape = a[9];
    const n = product(shape);
    return { bytes: F32 * (spanned(shape, a[3]) + spanned(shape, a[6]) + n), flops: n };
  },
  reduce: (a) => {
    const [outer, dim, inner] = [num(a, 7), num(a, 8), num(a, 9)];
    return { bytes: F32 * (outer * dim * inner + outer * inner * (1 + present(a[5]))), flops: outer * dim * inner };
  },
  softmax: (a) => ({ bytes: 2 * F32 * num(a, 4) * num(a, 5), flops: 0 }),
  softmaxBackward: (a) => ({ bytes: 3 * F32 * num(a, 6) * num(a, 7), flops: 0 }),
  where: (a) => ({ bytes: 4 * F32 * num(a, 8), flops: 0 }),
  stridedCopy: (a) => ({ bytes: product(a[6]) * num(a, 7) * (a[8] === true ? 3 : 2), flops: 0 }),
  fill: (a) => ({ bytes: num(a, 2) * (DTYPE_BYTES[num(a, 4) as 0] ?? F32), flops: 0 }),
  dropoutMask: (a) => ({ bytes: num(a, 9) * F32 * (num(a, 5) === 0 ? 1 : 3), flops: 0 }),
  cast: (a) => ({ bytes: num(a, 6) * ((DTYPE_BYTES[num(a, 2) as 0] ?? F32) + (DTYPE_BYTES[num(a, 5) as 0] ?? F32)), flops: 0 }),
  write: (a) => ({ bytes: viewBytes(a[2]), flops: 0 }),
  read: (a) => ({ bytes: viewBytes(a[2]), flops: 0 }),
  alloc: (a) => ({ bytes: a[1] === true ? num(a, 0) : 0, flops: 0 }),
  // ids read, rows gathered and written.
  embedding: (a) => ({ bytes: F32 * num(a, 6) * (1 + 2 * num(a, 8)), flops: 0 }),
  // ids and dout read, rows of dweight read and written.
  embeddingBackward: (a) => ({ bytes: F32 * num(a, 6) * (1 + 3 * num(a, 8)), flops: num(a, 6) * num(a, 8) }),
  argmax: (a) => ({ bytes: F32 * num(a, 4) * (num(a, 5) + 1), flops: 0 }),
  topk: (a) => ({ bytes: F32 * num(a, 6) * (num(a, 7) + 2 * num(a, 8)), flops: 0 }),
  // p, g, m, v read; p, m, v written.
  adamw: (a) => ({ bytes: 7 * F32 * num(a, 8), flops: 12 * num(a, 8) }),
  sumsq: (a) => ({ bytes: F32 * num(a, 2), flops: 2 * num(a, 2) }),
  rmsnormForward: (a) => {
    const [rows, dim] = [num(a, 8), num(a, 9)];
    return { bytes: F32 * (2 * rows * dim + dim + rows), flops: 4 * rows * dim };
  },
  // x, dy, w, rstd read; dx written; dw read and written.
  rmsnormBackward: (a) => {
    const [rows, dim] = [num(a, 12), num(a, 13)];
    return { bytes: F32 * (3 * rows * dim + rows + 3 * dim), flops: 8 * rows * dim };
  },
  layernormForward: (a) => {
    const [rows, dim] = [num(a, 12), num(a, 13)];
    return { bytes: F32 * (2 * rows * dim + dim * (present(a[2]) + present(a[4])) + 2 * rows), flops: 7 * rows * dim };
  },
  layernormBackward: (a) => {
    const [rows, dim] = [num(a, 16), num(a, 17)];
    return { bytes: F32 * (3 * rows * dim + 2 * rows + dim * (present(a[2]) + 2 * present(a[12]) + 2 * present(a[14]))), flops: 10 * rows * dim };
  },
  // x read, y written, positions read, the cos/sin rows of the positions present read once.
  rope: (a) => {
    const [rows, H, D, rotDim, posCount] = [num(a, 10), num(a, 11), num(a, 12), num(a, 13), num(a, 14)];
    return { bytes: F32 * (2 * rows * H * D + rows + Math.min(rows, posCount) * rotDim), flops: 3 * rows * H * rotDim };
  },
  swigluForward: (a) => ({ bytes: 3 * F32 * num(a, 6), flops: 6 * num(a, 6) }),
  swigluBackward: (a) => ({ bytes: 5 * F32 * num(a, 10), flops: 12 * num(a, 10) }),
  attentionForward: (a) => {
    const [B, T, S, Hq, Hkv, D, qOffset, causal] = [num(a, 14), num(a, 15), num(a, 16), num(a, 17), num(a, 18), num(a, 19), num(a, 21), a[23] === true];
    const segs = present(a[10]) * B * (T + S);
    // q read, out written, k and v read, lse written; scores q·k and the p·v sums, 2·D each per pair.
    return { bytes: F32 * (2 * B * T * Hq * D + 2 * B * S * Hkv * D + B * Hq * T + segs), flops: 4 * D * B * Hq * attentionPairs(T, S, qOffset, causal) };
  },
  attentionBackward: (a) => {
    const [B, T, S, Hq, Hkv, D, qOffset, causal] = [num(a, 22), num(a, 23), num(a, 24), num(a, 25), num(a, 26), num(a, 27), num(a, 29), a[31] === true];
    const segs = present(a[18]) * B * (T + S);
    // q, out, dout read and dq written; k, v read and dk, dv written; lse read. Per pair: the scores are
    // recomputed, then dP = dout·v, dv, dk and dq, 2·D each.
    return { bytes: F32 * (4 * B * T * Hq * D + 4 * B * S * Hkv * D + B * Hq * T + segs), flops: 10 * D * B * Hq * attentionPairs(T, S, qOffset, causal) };
  },
  crossEntropyForward: (a) => {
    const [N, d, V] = [num(a, 10), num(a, 11), num(a, 12)];
    // h, w, labels read; lse (and row losses) written; logits chunks written and read back.
    return { bytes: F32 * (N * d + V * d + 2 * N + present(a[8]) * N + 2 * N * V), flops: 2 * N * V * d };
  },
  crossEntropyBackward: (a) => {
    const [N, d, V] = [num(a, 12), num(a, 13), num(a, 14)];
    // h, w, labels, lse read; dh written; dw read and written; logits chunks written and read back.
    return { bytes: F32 * (2 * N * d + 3 * V * d + 2 * N + 2 * N * V), flops: 6 * N * V * d };
  },
  crossEntropySweep: (a) => {
    const [N, d, V, R] = [num(a, 14), num(a, 15), num(a, 16), num(a, 17)];
    const [dh, dw] = [present(a[10]), present(a[12])];
    const blocks = N > 0 ? Math.ceil(N / Math.max(1, R)) : 0;
    // h read twice, w read per GEMM per block; lse, row losses, dh written; dw read and written per block;
    // each block's logits written, read and rewritten as dlogits, then read by the gradient GEMMs.
    return {
      bytes: F32 * (N * d * (1 + dw) + blocks * V * d * (1 + dh + 2 * dw) + 2 * N + present(a[8]) * N + dh * N * d + N * V * (3 + dh + dw)),
      flops: 2 * N * V * d * (1 + dh + dw),
    };
  },
  // (backend, handle, offset, count, dtype, op)
  mpiAllReduce: (a) => ({ bytes: 2 * num(a, 3) * (num(a, 4) === 4 ? 8 : 4), flops: 0 }),
};

const NONE: KernelCost = { bytes: 0, flops: 0 };

/** The estimated cost of one call of the named export (zero for exports without an estimate). */
export function kernelCost(name: string, args: Args): KernelCost {
  const f = COSTS[name];
  return f ? f(args) : NONE;
}
