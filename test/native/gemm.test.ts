// Tests the native fp32 GEMM: every ISA path against a float64 reference and against the naive kernel,
// on odd sizes, all transposes, alpha/beta, batched strided layouts; determinism; and bad-input errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { host, ISA } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { isaPaths, randomF32, readF32, relError, toNative, withIsa } from '../helpers/native.ts';

const TOL = 1e-5;

interface GemmCase {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  beta: number;
  batch?: number;
  /** Extra elements added to each leading dimension beyond the stored row length. */
  ldPad?: number;
  /** Extra elements between consecutive batch matrices. */
  stridePad?: number;
  /** Initial value of every element of C (default: random), e.g. NaN to prove beta == 0 never reads C. */
  cFill?: number;
}

/** A case's stored layout: A is (M, K) or (K, M) with transA; B is (K, N) or (N, K) with transB; C is (M, N). */
interface Layout {
  batch: number;
  aRows: number; aCols: number; lda: number; strideA: number; aLen: number;
  bRows: number; bCols: number; ldb: number; strideB: number; bLen: number;
  ldc: number; strideC: number; cLen: number;
}

function layout(c: GemmCase): Layout {
  const batch = c.batch ?? 1;
  const pad = c.ldPad ?? 0;
  const sp = c.stridePad ?? 0;
  const aRows = c.transA ? c.K : c.M, aCols = c.transA ? c.M : c.K;
  const bRows = c.transB ? c.N : c.K, bCols = c.transB ? c.K : c.N;
  const lda = Math.max(aCols, 1) + pad, ldb = Math.max(bCols, 1) + pad, ldc = Math.max(c.N, 1) + pad;
  const strideA = aRows * lda + sp, strideB = bRows * ldb + sp, strideC = c.M * ldc + sp;
  return {
    batch, aRows, aCols, lda, strideA, aLen: batch * strideA,
    bRows, bCols, ldb, strideB, bLen: batch * strideB,
    ldc, strideC, cLen: batch * strideC,
  };
}

interface Inputs { a: Float32Array; b: Float32Array; c: Float32Array }

function inputs(c: GemmCase, L: Layout, seed: number): Inputs {
  const cInit = c.cFill === undefined ? randomF32(L.cLen, seed + 2) : new Float32Array(L.cLen).fill(c.cFill);
  return { a: randomF32(L.aLen, seed), b: randomF32(L.bLen, seed + 1), c: cInit };
}

/** Runs the native GEMM on copies of the inputs; returns the whole C buffer afterwards. */
function runNative(c: GemmCase, L: Layout, x: Inputs): Float32Array {
  const ha = toNative(x.a), hb = toNative(x.b), hc = toNative(x.c);
  try {
    native.gemm(c.transA, c.transB, c.M, c.N, c.K, c.alpha, ha, 0, L.lda, hb, 0, L.ldb, c.beta, hc, 0, L.ldc,
      L.batch, L.strideA, L.strideB, L.strideC);
    return readF32(hc, L.cLen);
  } finally {
    native.free(ha);
    native.free(hb);
    native.free(hc);
  }
}

/** float64 reference of the C elements inside the matrices, in (b, i, j) order. */
function reference(c: GemmCase, L: Layout, x: Inputs): Float64Array {
  const out = new Float64Array(L.batch * c.M * c.N);
  for (let b = 0; b < L.batch; b++) {
    for (let i = 0; i < c.M; i++) {
      for (let j = 0; j < c.N; j++) {
        let acc = 0;
        for (let k = 0; k < c.K; k++) {
          const a = x.a[b * L.strideA + (c.transA ? k * L.lda + i : i * L.lda + k)] as number;
          const bv = x.b[b * L.strideB + (c.transB ? j * L.ldb + k : k * L.ldb + j)] as number;
          acc += a * bv;
        }
        const old = x.c[b * L.strideC + i * L.ldc + j] as number;
        out[(b * c.M + i) * c.N + j] = c.beta === 0 ? c.alpha * acc : c.alpha * acc + c.beta * old;
      }
    }
  }
  return out;
}

/** The C elements inside the matrices, in (b, i, j) order. */
function inside(c: GemmCase, L: Layout, buf: Float32Array): Float32Array {
  const out = new Float32Array(L.batch * c.M * c.N);
  for (let b = 0; b < L.batch; b++)
    for (let i = 0; i < c.M; i++)
      for (let j = 0; j < c.N; j++) out[(b * c.M + i) * c.N + j] = buf[b * L.strideC + i * L.ldc + j] as number;
  return out;
}

/** Asserts that every element of C outside the matrices (ld padding, batch gaps) kept its bits. */
function assertGapsUntouched(c: GemmCase, L: Layout, before: Float32Array, after: Float32Array, what: string): void {
  const u0 = new Uint32Array(before.buffer), u1 = new Uint32Array(after.buffer);
  for (let p = 0; p < L.cLen; p++) {
    const b = Math.floor(p / L.strideC), r = p % L.strideC, i = Math.floor(r / L.ldc), j = r % L.ldc;
    const isInside = b < L.batch && i < c.M && j < c.N;
    if (!isInside && u0[p] !== u1[p]) assert.fail(`${what}: C[${p}] outside the matrices was written`);
  }
}

function describeCase(c: GemmCase): string {
  const t = `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'}`;
  return `${t} M=${c.M} N=${c.N} K=${c.K} alpha=${c.alpha} beta=${c.beta} batch=${c.batch ?? 1} ldPad=${c.ldPad ?? 0}`;
}

/** Checks one case on every ISA path: vs float64 reference and vs the naive (scalar) path; C gaps untouched. */
function checkCase(c: GemmCase, seed: number): void {
  const L = layout(c);
  const x = inputs(c, L, seed);
  const ref = reference(c, L, x);
  const naive = withIsa(ISA.scalar, () => runNative(c, L, x));
  for (const { name, level } of isaPaths()) {
    const out = level === ISA.scalar ? naive : withIsa(level, () => runNative(c, L, x));
    const what = `${name} ${describeCase(c)}`;
    const got = inside(c, L, out);
    for (const v of got) if (!Number.isFinite(v)) assert.fail(`${what}: non-finite output`);
    const err = relError(got, ref);
    assert.ok(err <= TOL, `${what}: rel error vs float64 ${err}`);
    if (level !== ISA.scalar) {
      const errNaive = relError(got, inside(c, L, naive));
      assert.ok(errNaive <= TOL, `${what}: rel error vs naive ${errNaive}`);
    }
    assertGapsUntouched(c, L, x.c, out, what);
  }
}

const TRANSPOSES: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
// (M, N, K) mixing the odd sizes in every role; 257 crosses the 256-deep K block.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [7, 1, 63], [1, 7, 257], [7, 7, 7], [63, 65, 1], [65, 63, 257],
  [257, 7, 65], [7, 257, 63], [257, 65, 257], [65, 257, 7],
];

test('gemm matches float64 and naive on odd sizes, all transposes, every ISA path', () => {
  let seed = 1;
  for (const [transA, transB] of TRANSPOSES) {
    for (const [M, N, K] of SHAPES) checkCase({ transA, transB, M, N, K, alpha: 1, beta: 0 }, seed++);
  }
});

test('gemm alpha/beta: scaling, accumulation, beta = 0 never reads C (NaN-filled), alpha = 0', () => {
  let seed = 100;
  for (const [transA, transB] of TRANSPOSES) {
    checkCase({ transA, transB, M: 65, N: 63, K: 257, alpha: 1.5, beta: -0.75 }, seed++);
    checkCase({ transA, transB, M: 63, N: 65, K: 7, alpha: 0.5, beta: 0, cFill: Number.NaN }, seed++);
    checkCase({ transA, transB, M: 7, N: 65, K: 63, alpha: 1, beta: 1 }, seed++);
    checkCase({ transA, transB, M: 7, N: 7, K: 7, alpha: 0, beta: 2 }, seed++);
  }
});

test('gemm batched with batch strides and leading dimensions larger than the rows', () => {
  let seed = 200;
  for (const [transA, transB] of TRANSPOSES) {
    checkCase({ transA, transB, M: 63, N: 65, K: 7, alpha: 1, beta: 0, batch: 3, ldPad: 5, stridePad: 11 }, seed++);
    checkCase({ transA, transB, M: 7, N: 257, K: 65, alpha: 0.25, beta: 0.5, batch: 4, ldPad: 3, stridePad: 1 }, seed++);
    checkCase({ transA, transB, M: 1, N: 7, K: 63, alpha: 1, beta: 1, batch: 5, ldPad: 1, stridePad: 0 }, seed++);
  }
});

test('gemm across cache-block edges (rows past the A block, columns past a B block, K in several blocks)', () => {
  checkCase({ transA: false, transB: true, M: 350, N: 33, K: 520, alpha: 1, beta: 0.5 }, 300);
  checkCase({ transA: true, transB: false, M: 15, N: 2100, K: 260, alpha: 1, beta: 0, ldPad: 2 }, 301);
  checkCase({ transA: false, transB: false, M: 3700, N: 9, K: 20, alpha: 1, beta: 0 }, 302);
  checkCase({ transA: true, transB: true, M: 3700, N: 40, K: 9, alpha: 2, beta: 1 }, 303);
});

test('gemm narrow path (a LoRA adapter\'s shapes): C a few vectors wide, or a few rows tall from a transposed op(A)', () => {
  let seed = 350;
  // Narrow C (N up to 64, 65 falls back to the packed path) over long rows and deep K (past the 256-deep k block).
  for (const [transA, transB] of TRANSPOSES) {
    for (const [M, N, K] of [[64, 1, 64], [200, 16, 300], [97, 17, 520], [130, 48, 65], [66, 64, 257], [70, 65, 100]] as const) {
      checkCase({ transA, transB, M, N, K, alpha: 1.25, beta: seed % 2 === 0 ? 0 : -0.5, ldPad: 3 }, seed++);
    }
  }
  // A few rows of C from op(A) stored (K, M) (A's gradient (g·B)ᵀ·x): computed as Cᵀ and written back transposed.
  for (const transB of [false, true]) {
    for (const [M, N, K] of [[1, 64, 64], [16, 300, 520], [33, 100, 257], [64, 129, 70]] as const) {
      checkCase({ transA: true, transB, M, N, K, alpha: 0.5, beta: seed % 2 === 0 ? 1 : 0, ldPad: 2 }, seed++);
    }
  }
  checkCase({ transA: false, transB: true, M: 90, N: 16, K: 300, alpha: 1, beta: 0, batch: 3, ldPad: 1, stridePad: 5 }, seed++);
  checkCase({ transA: true, transB: false, M: 16, N: 90, K: 300, alpha: 1, beta: 0.5, batch: 2, ldPad: 4, stridePad: 3 }, seed++);
});

test('gemm narrow path: a row of C does not depend on the other rows of the call (batch invariance)', () => {
  // Serving mixes requests in one GEMM: each row of x·Aᵀ must be the same bits whatever rides along with it.
  for (const { name, level } of isaPaths()) {
    withIsa(level, () => {
      const K = 300, N = 16;
      const x = randomF32(200 * K, 360), a = randomF32(N * K, 361);
      const run = (M: number): Float32Array => {
        const c: GemmCase = { transA: false, transB: true, M, N, K, alpha: 1, beta: 0 };
        return runNative(c, layout(c), { a: x.subarray(0, M * K), b: a, c: new Float32Array(M * N) });
      };
      const all = new Uint32Array(run(200).buffer), part = new Uint32Array(run(64).buffer);
      assert.deepEqual(part, all.subarray(0, 64 * N), `${name}: the first 64 rows differ when 136 more ride along`);
    });
  }
});

test('gemm degenerate sizes: K = 0 gives beta * C; M = 0 or N = 0 writes nothing', () => {
  for (const { name, level } of isaPaths()) {
    withIsa(level, () => {
      for (const beta of [0, 1, -2]) {
        const c0 = randomF32(7 * 9, 400);
        const hc = toNative(c0);
        // K = 0: A and B are empty, so no buffer is needed (handle 0).
        native.gemm(false, false, 7, 9, 0, 1, 0, 0, 1, 0, 0, 9, beta, hc, 0, 9, 1, 0, 0, 63);
        const out = readF32(hc, 63);
        native.free(hc);
        const want = Float32Array.from(c0, (v) => (beta === 0 ? 0 : beta * v));
        assert.deepEqual(out, want, `${name} K=0 beta=${beta}`);
      }
      const c0 = randomF32(16, 401);
      const hc = toNative(c0);
      const ha = toNative(randomF32(16, 402));
      native.gemm(false, false, 0, 4, 4, 1, ha, 0, 4, ha, 0, 4, 0, hc, 0, 4, 1, 0, 0, 0);
      native.gemm(false, false, 4, 0, 4, 1, ha, 0, 4, ha, 0, 1, 0, hc, 0, 1, 1, 0, 0, 0);
      native.gemm(false, false, 4, 4, 4, 1, ha, 0, 4, ha, 0, 4, 0, hc, 0, 4, 0, 0, 0, 0);
      assert.deepEqual(readF32(hc, 16), c0, `${name}: an empty GEMM wrote to C`);
      native.free(hc);
      native.free(ha);
    });
  }
});

test('gemm is deterministic: identical bits run to run at 2 threads, and the same bits at 1 thread', () => {
  const before = host.getThreads();
  try {
    for (const { name, level } of isaPaths()) {
      if (level === ISA.scalar) continue;
      withIsa(level, () => {
        const cases: GemmCase[] = [
          // threads split columns; split rows (N small); take whole GEMMs of a batch
          { transA: false, transB: true, M: 257, N: 263, K: 300, alpha: 1, beta: 0 },
          { transA: true, transB: false, M: 5, N: 1200, K: 257, alpha: 1, beta: 1 },
          { transA: false, transB: false, M: 1200, N: 5, K: 257, alpha: 1, beta: 0 },
          // the narrow path: threads split the rows of C, or of Cᵀ
          { transA: false, transB: true, M: 1000, N: 16, K: 300, alpha: 1, beta: 0 },
          { transA: true, transB: false, M: 16, N: 1000, K: 600, alpha: 1, beta: 0 },
          { transA: false, transB: false, M: 65, N: 63, K: 257, alpha: 1, beta: 0, batch: 6 },
        ];
        for (const c of cases) {
          const L = layout(c);
          const x = inputs(c, L, 500);
          host.setThreads(2);
          const r1 = new Uint32Array(runNative(c, L, x).buffer);
          const r2 = new Uint32Array(runNative(c, L, x).buffer);
          host.setThreads(1);
          const r3 = new Uint32Array(runNative(c, L, x).buffer);
          assert.deepEqual(r2, r1, `${name} ${describeCase(c)}: two runs at 2 threads differ`);
          assert.deepEqual(r3, r1, `${name} ${describeCase(c)}: 1 thread differs from 2 threads`);
        }
      });
    }
  } finally {
    host.setThreads(before);
  }
});

test('the thread pool: a threaded GEMM after the workers went to sleep, and many back to back, give the same bits', async () => {
  // Workers spin for a while after a job, then block on a condition variable: both ways of being woken (and
  // resizing the pool while they spin) must run every part of the next job exactly once.
  const before = host.getThreads();
  try {
    host.setThreads(2);
    // beta = 1 accumulates into C: a part run twice (or skipped) changes the bits.
    const c: GemmCase = { transA: false, transB: true, M: 300, N: 40, K: 257, alpha: 1, beta: 1 };
    const L = layout(c);
    const x = inputs(c, L, 600);
    const want = new Uint32Array(runNative(c, L, x).buffer);
    for (const idleMs of [0, 5, 40]) {
      await new Promise((done) => setTimeout(done, idleMs));
      assert.deepEqual(new Uint32Array(runNative(c, L, x).buffer), want, `after ${idleMs} ms idle`);
    }
    for (let i = 0; i < 200; i++) {
      if (i % 50 === 25) host.setThreads(i % 100 === 25 ? 1 : 2);
      const got = new Uint32Array(runNative(c, L, x).buffer);
      if (got.some((v, j) => v !== want[j])) assert.fail(`call ${i} at ${host.getThreads()} threads differs`);
    }
  } finally {
    host.setThreads(before);
  }
});

test('gemm rejects bad sizes, leading dimensions and buffers with an error naming gemm and the shapes', () => {
  const h = toNative(new Float32Array(64));
  const small = toNative(new Float32Array(15));
  const call = (over: Partial<Record<string, number | boolean>>) => () => {
    const p = { tA: false, tB: false, M: 4, N: 4, K: 4, a: h, lda: 4, b: h, ldb: 4, c: h, ldc: 4, batch: 1, sA: 0, sB: 0, sC: 0, ...over };
    native.gemm(p.tA as boolean, p.tB as boolean, p.M as number, p.N as number, p.K as number, 1,
      p.a as number, 0, p.lda as number, p.b as number, 0, p.ldb as number, 0, p.c as number, 0, p.ldc as number,
      p.batch as number, p.sA as number, p.sB as number, p.sC as number);
  };
  assert.doesNotThrow(call({}));
  const cases: [Partial<Record<string, number | boolean>>, RegExp][] = [
    [{ a: small }, /^gemm: buffer 'A' too small.*M=4 N=4 K=4/],
    [{ b: small }, /^gemm: buffer 'B' too small/],
    [{ c: small }, /^gemm: buffer 'C' too small/],
    [{ lda: 3 }, /^gemm: lda must be >= 4.*lda=3/],
    [{ tA: true, M: 5, lda: 4 }, /^gemm: lda must be >= 5/],
    [{ tB: true, K: 5, ldb: 4, lda: 5 }, /^gemm: ldb must be >= 5/],
    [{ ldc: 2 }, /^gemm: ldc must be >= 4/],
    [{ batch: 2, sA: 60 }, /^gemm: buffer 'A' too small.*batch=2/],
    [{ batch: 5, sC: 16 }, /^gemm: buffer 'C' too small/],
    [{ M: -1 }, /^gemm: size 'M' out of range/],
    [{ K: 2.5 }, /^gemm: argument 'K' must be an integer/],
    [{ c: 987654 }, /^gemm: buffer 'C' is not a live native buffer/],
    [{ batch: 2, sA: 2 ** 40, sB: 0, sC: 0 }, /^gemm: (buffer 'A' too small|buffer extent overflows)/],
  ];
  for (const [over, re] of cases) {
    assert.throws(call(over), (e: unknown) => e instanceof Error && re.test(e.message), `case ${JSON.stringify(over)}`);
  }
  // C may not be a read-only file mapping.
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-gemm-'));
  try {
    const file = join(dir, 'c.bin');
    writeFileSync(file, Buffer.alloc(64 * 4));
    const [hm] = host.mmap(file);
    try {
      assert.throws(call({ c: hm }), /^Error: gemm: buffer 'C' is read-only/);
    } finally {
      native.free(hm);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  native.free(h);
  native.free(small);
});
