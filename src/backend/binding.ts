// The addon's whole surface, typed: every export of native/glue/*.cc is listed here and nowhere else.
// Buffers are passed as (handle, byteOffset) pairs; the glue bounds-checks them against the handle table.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KERNEL_DTYPE_CODES, MPI_DTYPE_CODES } from '../dtype.ts';

/** A native buffer handle (an id in the addon's handle table; 0 = absent where a buffer is optional). */
export type Handle = number;
/** Byte offset into a native buffer. */
export type ByteOffset = number;

export const DTYPE_CODE = KERNEL_DTYPE_CODES;
export const UNARY_OP = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, silu: 5, gelu: 6, scale: 7, powScalar: 8, addScalar: 9, square: 10, relu: 11,
} as const;
export const BINARY_OP = { add: 0, sub: 1, mul: 2, div: 3, pow: 4, maximum: 5 } as const;
export const REDUCE_OP = { sum: 0, mean: 1, max: 2 } as const;
export const ISA = { scalar: 0, avx2: 1, avx512: 2 } as const;
/**
 * Paths of the bf16 GEMM on AVX-512 CPUs: vdpbf16ps (`native`, CPUs with AVX512_BF16), operands rounded into
 * the fp32 micro-kernel (`fallback`; always the path below AVX-512), the vdpbf16ps path's packing with the
 * instruction emulated (`emulated`, for tests on CPUs without it), AMX tiles (`amx`, tdpbf16ps) and the AMX
 * path's packing with the tile product emulated (`amxEmulated`).
 */
export const BF16_PATH = { fallback: 0, native: 1, emulated: 2, amx: 3, amxEmulated: 4 } as const;
/** Element types of the MPI collectives (float32 and int32 share DTYPE_CODE's numbers). */
export const MPI_DTYPE = MPI_DTYPE_CODES;
export const MPI_OP = { sum: 0, max: 1, min: 2 } as const;

export interface MemStats {
  liveBytes: number;
  peakBytes: number;
  cachedBytes: number;
  osAllocs: number;
  liveBlocks: number;
  mappedBytes: number;
}

export interface Binding {
  // --- memory and runtime (native/glue/services.cc)
  alloc(bytes: number, zero: boolean): Handle;
  free(h: Handle): void;
  /** Read-only mapping of a whole file: [handle, size in bytes]. */
  mmap(path: string): [Handle, number];
  write(h: Handle, off: ByteOffset, src: ArrayBufferView): void;
  read(h: Handle, off: ByteOffset, dst: ArrayBufferView): void;
  /** Size in bytes of a live handle, -1 when unknown. */
  size(h: Handle): number;
  memStats(): MemStats;
  resetPeak(): void;
  emptyCache(): void;
  getThreads(): number;
  setThreads(n: number): void;
  detectedIsa(): number;
  getIsa(): number;
  /** Clamps to the detected level; returns the level now active. */
  setIsa(isa: number): number;
  hasAvx512Bf16(): boolean;
  /** AMX tiles with bf16 (AMX-TILE, AMX-BF16), the tile state enabled by the OS and granted to this process. */
  hasAmxBf16(): boolean;
  /** The bf16 GEMM path (BF16_PATH); starts at amx where the CPU has it, native on AMD CPUs with AVX512_BF16 (where it is faster), else fallback; SFTKIT_BF16_GEMM chooses. */
  getBf16Path(): number;
  /** Clamps to what the CPU runs (native needs AVX512_BF16, emulated AVX-512); returns the path now active. */
  setBf16Path(path: number): number;

  // --- GEMM (native/glue/gemm.cc): C[b] = alpha op(A[b]) op(B[b]) + beta C[b]; op(A) (M,K), op(B) (K,N), C (M,N).
  // bf16: A and B are rounded to bf16 (nearest even) and the products accumulate in fp32 (mixed precision).
  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    a: Handle, aOff: ByteOffset, lda: number,
    b: Handle, bOff: ByteOffset, ldb: number,
    beta: number, c: Handle, cOff: ByteOffset, ldc: number,
    batch: number, strideA: number, strideB: number, strideC: number, bf16?: boolean,
  ): void;

  // --- elementwise, reductions, data movement, optimizer (native/glue/elementwise.cc); all fp32 unless noted
  unary(op: number, x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, n: number, alpha: number): void;
  /** dx = dy * f'(x) (y = f(x) is given too, for ops whose derivative reads the output). */
  unaryBackward(
    op: number, x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, dy: Handle, dyOff: ByteOffset,
    dx: Handle, dxOff: ByteOffset, n: number, alpha: number,
  ): void;
  /** Broadcasting binary op: a, b read through element strides (0 on broadcast dims) over shape; out contiguous. */
  binary(
    op: number, a: Handle, aOff: ByteOffset, aStrides: number[], b: Handle, bOff: ByteOffset, bStrides: number[],
    out: Handle, outOff: ByteOffset, shape: number[],
  ): void;
  /** Reduce x viewed as (outer, dim, inner) over dim into y (outer, inner); idx (int32, optional) gets argmax for max. */
  reduce(
    op: number, x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, idx: Handle, idxOff: ByteOffset,
    outer: number, dim: number, inner: number,
  ): void;
  softmax(x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, rows: number, cols: number, log: boolean): void;
  softmaxBackward(
    y: Handle, yOff: ByteOffset, dy: Handle, dyOff: ByteOffset, dx: Handle, dxOff: ByteOffset,
    rows: number, cols: number, log: boolean,
  ): void;
  where(
    cond: Handle, condOff: ByteOffset, a: Handle, aOff: ByteOffset, b: Handle, bOff: ByteOffset,
    out: Handle, outOff: ByteOffset, n: number,
  ): void;
  /** Strided copy (elemBytes 1, 2 or 4); accumulate adds (fp32 only). Strides in elements, non-negative. */
  stridedCopy(
    src: Handle, srcOff: ByteOffset, srcStrides: number[], dst: Handle, dstOff: ByteOffset, dstStrides: number[],
    shape: number[], elemBytes: number, accumulate: boolean,
  ): void;
  fill(x: Handle, xOff: ByteOffset, n: number, value: number, dtype: number): void;
  /**
   * Inverted dropout from a counter-based hash keyed by (key0, key1), two 32-bit draws the caller takes from its
   * Rng: for each i < n (n < 2^32), z = f(f(key0 + 0x9E3779B9·(i+1)) ^ key1) with f murmur3's 32-bit finalizer,
   * mask[i] = z/2^32 < keep ? 1/keep : 0 (float32), out[i] = x[i]·mask[i]; handle 0 skips out (then x) or mask,
   * and out may be x. Elements are independent, so the kernel may split them across threads and lanes; the same
   * keys always give the same mask, so a backward pass regenerates it instead of keeping it.
   */
  dropoutMask(key0: number, key1: number, keep: number, x: Handle, xOff: ByteOffset, out: Handle, outOff: ByteOffset, mask: Handle, maskOff: ByteOffset, n: number): void;
  cast(src: Handle, srcOff: ByteOffset, srcDtype: number, dst: Handle, dstOff: ByteOffset, dstDtype: number, n: number): void;
  /** ids int32 (n); weight (vocab, dim); out (n, dim). Throws naming the first out-of-range id. */
  embedding(
    weight: Handle, wOff: ByteOffset, ids: Handle, idsOff: ByteOffset, out: Handle, outOff: ByteOffset,
    n: number, vocab: number, dim: number,
  ): void;
  /** dweight (vocab, dim) += rows of dout (n, dim) scattered by ids. */
  embeddingBackward(
    ids: Handle, idsOff: ByteOffset, dout: Handle, doutOff: ByteOffset, dweight: Handle, dwOff: ByteOffset,
    n: number, vocab: number, dim: number,
  ): void;
  /** Row-wise argmax into int32 out (rows). */
  argmax(x: Handle, xOff: ByteOffset, out: Handle, outOff: ByteOffset, rows: number, cols: number): void;
  /** Row-wise top-k: values fp32 (rows, k) and indices int32 (rows, k), descending. */
  topk(
    x: Handle, xOff: ByteOffset, values: Handle, vOff: ByteOffset, indices: Handle, iOff: ByteOffset,
    rows: number, cols: number, k: number,
  ): void;
  /** Fused AdamW on n elements of p, g, m, v. */
  adamw(
    p: Handle, pOff: ByteOffset, g: Handle, gOff: ByteOffset, m: Handle, mOff: ByteOffset, v: Handle, vOff: ByteOffset,
    n: number, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
    bc1: number, bc2: number, gradScale: number,
  ): void;
  /** Sum of squares (accumulated in double, deterministic). */
  sumsq(x: Handle, xOff: ByteOffset, n: number): number;

  // --- fused NN kernels (native/glue/nn.cc)
  rmsnormForward(
    x: Handle, xOff: ByteOffset, w: Handle, wOff: ByteOffset, y: Handle, yOff: ByteOffset,
    rstd: Handle, rstdOff: ByteOffset, rows: number, dim: number, eps: number,
  ): void;
  /** dx overwritten; dw (dim) accumulated (+=). */
  rmsnormBackward(
    x: Handle, xOff: ByteOffset, w: Handle, wOff: ByteOffset, rstd: Handle, rstdOff: ByteOffset,
    dy: Handle, dyOff: ByteOffset, dx: Handle, dxOff: ByteOffset, dw: Handle, dwOff: ByteOffset,
    rows: number, dim: number,
  ): void;
  /** w, b optional (handle 0). */
  layernormForward(
    x: Handle, xOff: ByteOffset, w: Handle, wOff: ByteOffset, b: Handle, bOff: ByteOffset, y: Handle, yOff: ByteOffset,
    mean: Handle, meanOff: ByteOffset, rstd: Handle, rstdOff: ByteOffset, rows: number, dim: number, eps: number,
  ): void;
  /** dx overwritten; dw, db (dim) accumulated (+=), optional. */
  layernormBackward(
    x: Handle, xOff: ByteOffset, w: Handle, wOff: ByteOffset, mean: Handle, meanOff: ByteOffset,
    rstd: Handle, rstdOff: ByteOffset, dy: Handle, dyOff: ByteOffset, dx: Handle, dxOff: ByteOffset,
    dw: Handle, dwOff: ByteOffset, db: Handle, dbOff: ByteOffset, rows: number, dim: number,
  ): void;
  /** x, y (rows, H, D); cos, sin (posCount, rotDim/2); positions int32 (rows). Throws on an out-of-range position. */
  rope(
    x: Handle, xOff: ByteOffset, y: Handle, yOff: ByteOffset, cos: Handle, cosOff: ByteOffset, sin: Handle, sinOff: ByteOffset,
    positions: Handle, posOff: ByteOffset, rows: number, H: number, D: number, rotDim: number, posCount: number,
    backward: boolean,
  ): void;
  swigluForward(gate: Handle, gOff: ByteOffset, up: Handle, uOff: ByteOffset, out: Handle, oOff: ByteOffset, n: number): void;
  swigluBackward(
    gate: Handle, gOff: ByteOffset, up: Handle, uOff: ByteOffset, dout: Handle, doOff: ByteOffset,
    dgate: Handle, dgOff: ByteOffset, dup: Handle, duOff: ByteOffset, n: number,
  ): void;
  /**
   * q (B,T,Hq,D); k, v (B,S,Hkv,D) with batch stride kvBatchStride elements; out (B,T,Hq,D); lse (B,Hq,T).
   * qSeg (B,T) and kSeg (B,S) int32 optional (handle 0). window > 0: a sliding window (Mistral), query t sees
   * only keys s > t + qOffset - window; 0 or absent: none.
   */
  attentionForward(
    q: Handle, qOff: ByteOffset, k: Handle, kOff: ByteOffset, v: Handle, vOff: ByteOffset,
    out: Handle, outOff: ByteOffset, lse: Handle, lseOff: ByteOffset,
    qSeg: Handle, qSegOff: ByteOffset, kSeg: Handle, kSegOff: ByteOffset,
    B: number, T: number, S: number, Hq: number, Hkv: number, D: number, kvBatchStride: number, qOffset: number,
    scale: number, causal: boolean, window?: number,
  ): void;
  /** dq (B,T,Hq,D), dk, dv (B,S,Hkv,D) contiguous, all overwritten. */
  attentionBackward(
    q: Handle, qOff: ByteOffset, k: Handle, kOff: ByteOffset, v: Handle, vOff: ByteOffset,
    out: Handle, outOff: ByteOffset, lse: Handle, lseOff: ByteOffset, dout: Handle, doutOff: ByteOffset,
    dq: Handle, dqOff: ByteOffset, dk: Handle, dkOff: ByteOffset, dv: Handle, dvOff: ByteOffset,
    qSeg: Handle, qSegOff: ByteOffset, kSeg: Handle, kSegOff: ByteOffset,
    B: number, T: number, S: number, Hq: number, Hkv: number, D: number, kvBatchStride: number, qOffset: number,
    scale: number, causal: boolean, window?: number,
  ): void;
  /**
   * Final projection + cross-entropy in vocab chunks. h (N,d), w (V,d), labels int32 (N, -100 ignored);
   * lse (N); rowLoss (N) optional. Returns [lossSum, count]. Throws naming the first out-of-range label.
   * bf16: the chunk products are bf16 GEMMs (see gemm).
   */
  crossEntropyForward(
    h: Handle, hOff: ByteOffset, w: Handle, wOff: ByteOffset, labels: Handle, lOff: ByteOffset,
    lse: Handle, lseOff: ByteOffset, rowLoss: Handle, rowLossOff: ByteOffset,
    N: number, d: number, V: number, chunk: number, bf16?: boolean,
  ): [number, number];
  /** dh (N,d) overwritten; dw (V,d) accumulated; both times gradScale (= d loss / d lossSum). */
  crossEntropyBackward(
    h: Handle, hOff: ByteOffset, w: Handle, wOff: ByteOffset, labels: Handle, lOff: ByteOffset,
    lse: Handle, lseOff: ByteOffset, dh: Handle, dhOff: ByteOffset, dw: Handle, dwOff: ByteOffset,
    N: number, d: number, V: number, chunk: number, gradScale: number, bf16?: boolean,
  ): void;
  /**
   * Training in one sweep: what crossEntropyForward and crossEntropyBackward make, from one logits GEMM,
   * in blocks of rowBlock rows (scratch rowBlock·V floats). dh (N,d) overwritten and dw (V,d) accumulated,
   * both times gradScale; either may be 0 (skipped). Returns [lossSum, count].
   */
  crossEntropySweep(
    h: Handle, hOff: ByteOffset, w: Handle, wOff: ByteOffset, labels: Handle, lOff: ByteOffset,
    lse: Handle, lseOff: ByteOffset, rowLoss: Handle, rowLossOff: ByteOffset, dh: Handle, dhOff: ByteOffset, dw: Handle, dwOff: ByteOffset,
    N: number, d: number, V: number, rowBlock: number, gradScale: number, bf16?: boolean,
  ): [number, number];

  // --- low-precision frozen weights (native/glue/quant.cc, native/kernels/quant/); rounding rules in
  // scripts/reference/quant_reference.py. NF4: block 64 over the flat tensor, two codes per byte (first element
  // in the high nibble); double quantization: the block scales as 8-bit codes, block 256, plus an offset.
  /** x (n) -> packed (ceil(n/2) bytes) and absmax (ceil(n/64) floats). */
  nf4Quantize(x: Handle, xOff: ByteOffset, n: number, packed: Handle, pOff: ByteOffset, absmax: Handle, aOff: ByteOffset): void;
  /**
   * Elements [start, start + count) of an n-element NF4 tensor into out. scales: the per-block absmax when
   * qabsmax is 0; else the double quantization's absmax2 (one per 256 blocks), with qabsmax and offset.
   */
  nf4Dequantize(
    packed: Handle, pOff: ByteOffset, scales: Handle, sOff: ByteOffset, qabsmax: Handle, qOff: ByteOffset, offset: number,
    n: number, start: number, count: number, out: Handle, outOff: ByteOffset,
  ): void;
  /** Double quantization of nb block scales: codes (nb bytes), absmax2 (ceil(nb/256)); returns the offset. */
  dqQuantize(absmax: Handle, aOff: ByteOffset, nb: number, codes: Handle, cOff: ByteOffset, absmax2: Handle, a2Off: ByteOffset): number;
  /** The nb block scales a double-quantized tensor dequantizes with. */
  dqDequantize(codes: Handle, cOff: ByteOffset, absmax2: Handle, a2Off: ByteOffset, offset: number, nb: number, out: Handle, outOff: ByteOffset): void;
  /** w (rows, cols) -> q int8 (rows, cols) and scale (rows) = row absmax / 127. */
  int8Quantize(w: Handle, wOff: ByteOffset, rows: number, cols: number, q: Handle, qOff: ByteOffset, scale: Handle, sOff: ByteOffset): void;
  /** Rows [row0, row0 + rows) of a (totalRows, cols) int8 tensor into out (rows, cols). */
  int8Dequantize(
    q: Handle, qOff: ByteOffset, scale: Handle, sOff: ByteOffset, totalRows: number, row0: number, rows: number, cols: number,
    out: Handle, outOff: ByteOffset,
  ): void;

  // --- MPI collectives (native/glue/mpi.cc, native/mpi_comm.cc); every call but mpiAvailable throws when the
  // addon was built without MPI. The first collective (or mpiInit) initializes MPI; only the main thread calls.
  /** Whether the addon was built with MPI. */
  mpiAvailable(): boolean;
  /** Initializes MPI once (idempotent): [rank, size, localRank, localSize]. */
  mpiInit(): [number, number, number, number];
  mpiFinalize(): void;
  /** In place over count elements of dtype (MPI_DTYPE) with op (MPI_OP). */
  mpiAllReduce(h: Handle, off: ByteOffset, count: number, dtype: number, op: number): void;
  /**
   * send holds sum(counts) elements (one block per rank, in rank order); recv gets this rank's block reduced
   * over ranks (counts[rank] elements). The ranges must not overlap.
   */
  mpiReduceScatter(
    send: Handle, sendOff: ByteOffset, recv: Handle, recvOff: ByteOffset, counts: number[], dtype: number, op: number,
  ): void;
  /** In place: rank r's block (counts[r] elements at sum(counts[:r])) is copied to every rank. */
  mpiAllGather(h: Handle, off: ByteOffset, counts: number[], dtype: number): void;
  mpiBroadcast(h: Handle, off: ByteOffset, count: number, dtype: number, root: number): void;
  mpiBarrier(): void;
  /** Ends every rank of the job with this exit code; never returns. */
  mpiAbort(code: number): never;
}

function findAddon(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // src/backend or dist/backend -> package root
  for (const root of [join(here, '..', '..'), join(here, '..', '..', '..')]) {
    const p = join(root, 'build', 'Release', 'sftkit.node');
    if (existsSync(p)) return p;
  }
  throw new Error('sftkit: native addon not built (build/Release/sftkit.node missing); run `npm ci` or `npm run build`.');
}

export const native: Binding = createRequire(import.meta.url)(findAddon()) as Binding;
