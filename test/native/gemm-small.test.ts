// Tests the GEMM's small-row path (few rows of C, as in KV-cache decoding; native/kernels/simd/gemm.cc): every
// ISA path against a float64 reference at 1-33 rows crossing the path's cuts, odd N and K, all transposes,
// alpha/beta, batches with padded layouts and a shared A, bf16 compute, and bit-identity across thread counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BF16_PATH, ISA, host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { isaPaths, randomF32, readF32, relError, roundBf16, toNative, withIsa } from '../helpers/native.ts';

interface Case {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  beta: number;
  batch?: number;
  /** Extra elements in every leading dimension and between batch matrices. */
  pad?: number;
  /** All batch matrices share one A (batch stride 0). */
  sharedA?: boolean;
  bf16?: boolean;
}

interface Layout { lda: number; ldb: number; ldc: number; sA: number; sB: number; sC: number; aLen: number; bLen: number; cLen: number }

function layout(c: Case): Layout {
  const batch = c.batch ?? 1, pad = c.pad ?? 0;
  const lda = (c.transA ? c.M : c.K) + pad, ldb = (c.transB ? c.K : c.N) + pad, ldc = c.N + pad;
  const sA = c.sharedA ? 0 : (c.transA ? c.K : c.M) * lda + pad;
  const sB = (c.transB ? c.N : c.K) * ldb + pad, sC = c.M * ldc + pad;
  return { lda, ldb, ldc, sA, sB, sC, aLen: Math.max(1, (batch - 1) * sA + (c.transA ? c.K : c.M) * lda), bLen: batch * sB, cLen: batch * sC };
}

function run(c: Case, L: Layout, a: Float32Array, b: Float32Array, c0: Float32Array): Float32Array {
  const ha = toNative(a), hb = toNative(b), hc = toNative(c0);
  try {
    native.gemm(c.transA, c.transB, c.M, c.N, c.K, c.alpha, ha, 0, L.lda, hb, 0, L.ldb, c.beta, hc, 0, L.ldc,
      c.batch ?? 1, L.sA, L.sB, L.sC, c.bf16 ?? false);
    return readF32(hc, L.cLen);
  } finally {
    native.free(ha);
    native.free(hb);
    native.free(hc);
  }
}

/** float64 reference (inputs rounded to bf16 first with c.bf16) of the C elements, in (batch, i, j) order. */
function reference(c: Case, L: Layout, a: Float32Array, b: Float32Array, c0: Float32Array): Float64Array {
  const batch = c.batch ?? 1;
  const r = c.bf16 ? roundBf16 : (x: number) => x;
  const ra = Float64Array.from(a, r), rb = Float64Array.from(b, r);
  const ref = new Float64Array(batch * c.M * c.N);
  const row = new Float64Array(c.K);
  for (let q = 0; q < batch; q++) {
    for (let i = 0; i < c.M; i++) {
      for (let k = 0; k < c.K; k++) row[k] = ra[q * L.sA + (c.transA ? k * L.lda + i : i * L.lda + k)] as number;
      for (let j = 0; j < c.N; j++) {
        let acc = 0;
        const ob = q * L.sB;
        if (c.transB) for (let k = 0, o = ob + j * L.ldb; k < c.K; k++) acc += (row[k] as number) * (rb[o + k] as number);
        else for (let k = 0, o = ob + j; k < c.K; k++) acc += (row[k] as number) * (rb[o + k * L.ldb] as number);
        const p = q * L.sC + i * L.ldc + j;
        ref[(q * c.M + i) * c.N + j] = c.beta === 0 ? c.alpha * acc : c.alpha * acc + c.beta * (c0[p] as number);
      }
    }
  }
  return ref;
}

/** The C elements inside the matrices, in (batch, i, j) order. */
function inside(c: Case, L: Layout, got: Float32Array): Float32Array {
  const out = new Float32Array((c.batch ?? 1) * c.M * c.N);
  for (let q = 0; q < (c.batch ?? 1); q++)
    for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) out[(q * c.M + i) * c.N + j] = got[q * L.sC + i * L.ldc + j] as number;
  return out;
}

function describe(c: Case): string {
  return `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'} M=${c.M} N=${c.N} K=${c.K} alpha=${c.alpha} beta=${c.beta} batch=${c.batch ?? 1} pad=${c.pad ?? 0}${c.sharedA ? ' sharedA' : ''}${c.bf16 ? ' bf16' : ''}`;
}

/**
 * Checks one case on every SIMD path (and, with bf16 on AVX-512, both bf16 paths; the naive path has no small-row
 * variant and is covered by gemm.test.ts) against float64; C outside the matrices untouched.
 */
function check(c: Case, seed: number): void {
  const L = layout(c);
  const a = randomF32(L.aLen, seed), b = randomF32(L.bLen, seed + 1);
  const c0 = c.beta === 0 ? new Float32Array(L.cLen).fill(Number.NaN) : randomF32(L.cLen, seed + 2);
  const ref = reference(c, L, a, b, c0);
  for (const { name, level } of isaPaths()) {
    if (level === ISA.scalar) continue;
    const bf16Paths = c.bf16 && level === ISA.avx512 ? [BF16_PATH.fallback, BF16_PATH.emulated] : [host.getBf16Path()];
    for (const bp of bf16Paths) {
      const before = host.getBf16Path();
      host.setBf16Path(bp);
      let got: Float32Array;
      try {
        got = withIsa(level, () => run(c, L, a, b, c0));
      } finally {
        host.setBf16Path(before);
      }
      const what = `${name}${c.bf16 ? ` bf16 path ${bp}` : ''} ${describe(c)}`;
      const out = inside(c, L, got);
      for (const v of out) if (!Number.isFinite(v)) assert.fail(`${what}: non-finite output`);
      const err = relError(out, ref);
      assert.ok(err <= (c.bf16 ? 2e-6 : 1e-5), `${what}: rel error vs float64 ${err}`);
      // everything between and after the matrices (ld padding, batch gaps) keeps its bits
      const u0 = new Uint32Array(c0.buffer), u1 = new Uint32Array(got.buffer);
      for (let p = 0; p < L.cLen; p++) {
        const q = Math.floor(p / L.sC), i = Math.floor((p % L.sC) / L.ldc), j = (p % L.sC) % L.ldc;
        const isInside = q < (c.batch ?? 1) && i < c.M && j < c.N;
        if (!isInside && u0[p] !== u1[p]) assert.fail(`${what}: C[${p}] outside the matrices was written`);
      }
    }
  }
}

const TRANSPOSES: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
// Rows around the register tile (4) and the path's cuts (16 rows for op(B) = B, 32 for op(B) = Bᵀ).
const ROWS = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 32, 33];
// Odd sizes: SIMD tails of 8 and 16 lanes, tiles of 4 and 8 columns, K past 1024.
const SIZES = [1, 7, 63, 65, 257, 1100];

test('small-row gemm matches float64: 1-33 rows x odd N and K, all transposes, every SIMD path', () => {
  let seed = 1;
  for (const [transA, transB] of TRANSPOSES) {
    for (const [r, M] of ROWS.entries()) {
      // every N once per M, each with a different K (never both 1100; past 9 rows only the smaller products)
      for (const [i, N] of SIZES.entries()) {
        const K = SIZES[(i + r + 1) % SIZES.length] as number;
        if (M > 9 && N * K > 80_000) continue;   // keeps the float64 reference fast; the tails are covered below
        check({ transA, transB, M, N, K, alpha: 1, beta: 0 }, seed++);
      }
    }
  }
});

test('small-row gemm alpha/beta (beta = 0 never reads a NaN-filled C), batches, padded layouts, shared A', () => {
  let seed = 1000;
  for (const [transA, transB] of TRANSPOSES) {
    check({ transA, transB, M: 3, N: 65, K: 257, alpha: 1.5, beta: -0.75 }, seed++);
    check({ transA, transB, M: 1, N: 1100, K: 63, alpha: -0.5, beta: 1 }, seed++);
    check({ transA, transB, M: 9, N: 7, K: 65, alpha: 0.25, beta: 0 }, seed++);
    check({ transA, transB, M: 5, N: 63, K: 65, alpha: 1, beta: 0.5, batch: 3, pad: 3 }, seed++);
    check({ transA, transB, M: 1, N: 257, K: 7, alpha: 1, beta: 0, batch: 4, pad: 1, sharedA: true }, seed++);
    check({ transA, transB, M: 17, N: 9, K: 63, alpha: 2, beta: 1, batch: 2, pad: 2, sharedA: true }, seed++);
  }
});

test('small-row gemm with bf16 compute matches float64 on bf16-rounded inputs, every path', () => {
  let seed = 2000;
  for (const [transA, transB] of TRANSPOSES) {
    for (const [M, N, K] of [[1, 65, 257], [4, 7, 1100], [7, 257, 63], [17, 63, 65], [32, 9, 257]] as const)
      check({ transA, transB, M, N, K, alpha: 1, beta: 0, bf16: true }, seed++);
    check({ transA, transB, M: 3, N: 63, K: 65, alpha: 0.5, beta: -1, batch: 2, pad: 1, bf16: true }, seed++);
  }
});

test('small-row gemm gives the same bits at 1 and 2 threads (GEMMs large enough to split)', () => {
  const before = host.getThreads();
  try {
    for (const { name, level } of isaPaths()) {
      if (level === ISA.scalar) continue;
      const cases: Case[] = [
        { transA: false, transB: true, M: 1, N: 1100, K: 600, alpha: 1, beta: 0 },
        { transA: true, transB: true, M: 7, N: 1025, K: 577, alpha: 1, beta: 0.5 },
        { transA: false, transB: false, M: 3, N: 1100, K: 600, alpha: 1, beta: 0 },
        { transA: false, transB: false, M: 16, N: 999, K: 601, alpha: 1.5, beta: 1 },
        { transA: false, transB: true, M: 4, N: 513, K: 257, alpha: 1, beta: 0, batch: 5, pad: 3 },
        // Under 2 MiB of B but 4M multiply-adds: split by its arithmetic (a 16-row decode step).
        { transA: false, transB: true, M: 16, N: 512, K: 513, alpha: 1, beta: 0 },
        { transA: false, transB: true, M: 2, N: 1100, K: 600, alpha: 1, beta: 0, bf16: true },
      ];
      for (const c of cases) {
        const L = layout(c);
        const a = randomF32(L.aLen, 7), b = randomF32(L.bLen, 8), c0 = randomF32(L.cLen, 9);
        const at = (threads: number) => {
          host.setThreads(threads);
          return new Uint32Array(withIsa(level, () => run(c, L, a, b, c0)).buffer);
        };
        const r2 = at(2), r2b = at(2), r1 = at(1);
        assert.deepEqual(r2b, r2, `${name} ${describe(c)}: two runs at 2 threads differ`);
        assert.deepEqual(r1, r2, `${name} ${describe(c)}: 1 thread differs from 2 threads`);
      }
    }
  } finally {
    host.setThreads(before);
  }
});
