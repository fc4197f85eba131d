// Reference GEMM: the naive loops of native/kernels/gemm.cc. Each C element accumulates its K products in
// fp32, in k order, every product and sum rounded with Math.fround (no FMA), so results are bit-exact with the
// addon's scalar path; its SIMD paths sum in other orders (and with FMA), a few fp32 ulps apart (about 1e-6
// relative at K in the hundreds). An fp64 accumulator would be closer to the exact product but further from
// every native path, and the reference's job is to be the naive kernel.
import type { ByteOffset, Handle } from '../binding.ts';
import { dim, f32arg, fail, flag } from './args.ts';
import { roundedBf16 } from './bits.ts';
import { f32 } from './memory.ts';

const OP = 'gemm';
const fr = Math.fround;
/** Largest extent (elements) accepted; keeps byte counts far from 2^53. */
const MAX_ELEMS = 2 ** 50;

// Elements spanned by `batch` matrices of rows x cols with leading dimension ld, `stride` apart; 0 when empty.
function extent(batch: number, stride: number, rows: number, ld: number, cols: number): number {
  if (batch === 0 || rows === 0 || cols === 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

/**
 * C[b] = alpha op(A[b]) op(B[b]) + beta C[b]; op(A) (M, K), op(B) (K, N), C (M, N), row-major with leading
 * dimensions and batch strides in elements. beta == 0 overwrites C without reading it (NaN in C does not
 * propagate); alpha == 0 reads neither A nor B. bf16: A and B are rounded to bf16 (nearest even) before the
 * fp32 products, as the addon's fallback path does.
 */
export function gemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  a: Handle, aOff: ByteOffset, lda: number,
  b: Handle, bOff: ByteOffset, ldb: number,
  beta: number, c: Handle, cOff: ByteOffset, ldc: number,
  batch: number, strideA: number, strideB: number, strideC: number, bf16 = false,
): void {
  flag(OP, 'transA', transA);
  flag(OP, 'transB', transB);
  dim(OP, 'M', M);
  dim(OP, 'N', N);
  dim(OP, 'K', K);
  const al = f32arg(OP, 'alpha', alpha);
  dim(OP, 'lda', lda);
  dim(OP, 'ldb', ldb);
  const be = f32arg(OP, 'beta', beta);
  dim(OP, 'ldc', ldc);
  dim(OP, 'batch', batch);
  dim(OP, 'strideA', strideA);
  dim(OP, 'strideB', strideB);
  dim(OP, 'strideC', strideC);
  if (bf16 !== undefined) flag(OP, 'bf16', bf16);

  // Stored shapes: A is (M, K), or (K, M) with transA; B is (K, N), or (N, K) with transB; C is (M, N).
  const aRows = transA ? K : M, aCols = transA ? M : K;
  const bRows = transB ? N : K, bCols = transB ? K : N;
  const shapes = `M=${M} N=${N} K=${K} transA=${transA} transB=${transB} batch=${batch}; stored A (${aRows}, ${aCols}) ` +
    `lda=${lda}, B (${bRows}, ${bCols}) ldb=${ldb}, C (${M}, ${N}) ldc=${ldc}`;
  const checkLd = (name: string, ld: number, cols: number): void => {
    // A leading dimension below the row length would make rows overlap; 1 is the floor for empty rows.
    const floor = cols > 1 ? cols : 1;
    if (ld < floor) fail(OP, `${name} must be >= ${floor} (the stored row length), got ${ld} [${shapes}]`);
  };
  checkLd('lda', lda, aCols);
  checkLd('ldb', ldb, bCols);
  checkLd('ldc', ldc, N);
  const aElems = extent(batch, strideA, aRows, lda, aCols);
  const bElems = extent(batch, strideB, bRows, ldb, bCols);
  const cElems = extent(batch, strideC, M, ldc, N);
  if (aElems > MAX_ELEMS || bElems > MAX_ELEMS || cElems > MAX_ELEMS) fail(OP, `buffer extent overflows [${shapes}]`);

  let A: Float32Array, B: Float32Array, C: Float32Array;
  try {
    A = f32(OP, 'A', a, aOff, aElems, false);
    B = f32(OP, 'B', b, bOff, bElems, false);
    C = f32(OP, 'C', c, cOff, cElems, true);
  } catch (e) {
    // Name the shapes in buffer errors too.
    const msg = (e as Error).message.slice(OP.length + 2);
    fail(OP, `${msg} [${shapes}; strides A=${strideA} B=${strideB} C=${strideC}]`);
  }
  const readAB = al !== 0 && K > 0 && M > 0 && N > 0;
  if (bf16 && readAB) {
    A = roundedBf16(A);
    B = roundedBf16(B);
  }
  const acc = new Float32Array(N);
  for (let bt = 0; bt < batch; bt++) {
    const a0 = bt * strideA, b0 = bt * strideB, c0 = bt * strideC;
    for (let i = 0; i < M; i++) {
      acc.fill(0);
      if (readAB) {
        if (transB) {
          // B stored (N, K): row j of B is contiguous over k.
          for (let j = 0; j < N; j++) {
            let s = 0;
            const bj = b0 + j * ldb;
            if (transA) for (let k = 0; k < K; k++) s = fr(s + fr(A[a0 + k * lda + i]! * B[bj + k]!));
            else for (let k = 0, ai = a0 + i * lda; k < K; k++) s = fr(s + fr(A[ai + k]! * B[bj + k]!));
            acc[j] = s;
          }
        } else {
          // B stored (K, N): for each k, one contiguous row of B updates the whole accumulator row. Each acc[j]
          // still sums its products in k order, so the result is the same as the (i, j, k) loop's.
          for (let k = 0; k < K; k++) {
            const av = transA ? A[a0 + k * lda + i]! : A[a0 + i * lda + k]!;
            const bk = b0 + k * ldb;
            for (let j = 0; j < N; j++) acc[j] = acc[j]! + fr(av * B[bk + j]!);
          }
        }
      }
      const ci = c0 + i * ldc;
      if (be === 0) for (let j = 0; j < N; j++) C[ci + j] = fr(al * acc[j]!);
      else for (let j = 0; j < N; j++) C[ci + j] = fr(fr(al * acc[j]!) + fr(be * C[ci + j]!));
    }
  }
}
