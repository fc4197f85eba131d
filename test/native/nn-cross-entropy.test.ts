// Final projection fused with cross-entropy in vocab chunks: PyTorch parity (F.linear + F.cross_entropy,
// sum, ignore_index -100) on every ISA path, SIMD vs naive on odd sizes, chunk size changes nothing beyond
// rounding, dw accumulates, bad labels and too-small buffers throw, determinism, no leaked scratch.
// The one-sweep training kernel (row blocks, one logits GEMM) matches the forward + backward pair.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, readF32, randomF32, isaPaths, withIsa, ODD_SIZES, Arena, withArena, bits, closeRel } from '../helpers/native.ts';

interface CeInputs { N: number; d: number; V: number; h: ArrayLike<number>; w: ArrayLike<number>; labels: ArrayLike<number>; gradScale: number }
interface CeCase extends CeInputs { name: string; labels: number[]; lossSum: number; count: number; lse: number[]; rowLoss: number[]; dh: number[]; dw: number[] }
interface CeOutputs { lossSum: number; count: number; lse: Float32Array; rowLoss: Float32Array; dh: Float32Array; dw: Float32Array }

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/nn_ops.json', import.meta.url), 'utf8')) as { crossEntropy: CeCase[] };

const FWD_TOL = 1e-5;
const GRAD_TOL = 1e-4;

/** Forward, then backward into dw (starting from dw0, zeros by default). */
function crossEntropy(c: CeInputs, chunk: number, dw0?: ArrayLike<number>, bf16 = false): CeOutputs {
  const { N, d, V } = c;
  return withArena((a) => {
    const h = a.f32(c.h), w = a.f32(c.w), labels = a.i32(c.labels);
    const lse = a.zeros(N), rowLoss = a.zeros(N), dh = a.zeros(N * d), dw = dw0 ? a.f32(dw0) : a.zeros(V * d);
    const [lossSum, count] = native.crossEntropyForward(h, 0, w, 0, labels, 0, lse, 0, rowLoss, 0, N, d, V, chunk, bf16);
    native.crossEntropyBackward(h, 0, w, 0, labels, 0, lse, 0, dh, 0, dw, 0, N, d, V, chunk, c.gradScale, bf16);
    return { lossSum, count, lse: readF32(lse, N), rowLoss: readF32(rowLoss, N), dh: readF32(dh, N * d), dw: readF32(dw, V * d) };
  });
}

interface SweepOptions { dw0?: ArrayLike<number>; bf16?: boolean; noDh?: boolean; noDw?: boolean }

/** The one-sweep kernel: forward and backward together, in blocks of rowBlock rows. */
function sweep(c: CeInputs, rowBlock: number, o: SweepOptions = {}): CeOutputs {
  const { N, d, V } = c;
  return withArena((a) => {
    const h = a.f32(c.h), w = a.f32(c.w), labels = a.i32(c.labels);
    const lse = a.zeros(N), rowLoss = a.zeros(N), dh = a.f32(new Float32Array(N * d).fill(Number.NaN)), dw = o.dw0 ? a.f32(o.dw0) : a.zeros(V * d);
    const [lossSum, count] = native.crossEntropySweep(
      h, 0, w, 0, labels, 0, lse, 0, rowLoss, 0, o.noDh ? 0 : dh, 0, o.noDw ? 0 : dw, 0, N, d, V, rowBlock, c.gradScale, o.bf16 ?? false,
    );
    return { lossSum, count, lse: readF32(lse, N), rowLoss: readF32(rowLoss, N), dh: readF32(dh, N * d), dw: readF32(dw, V * d) };
  });
}

function randomCe(N: number, d: number, V: number, seed: number): CeInputs {
  const labels = Int32Array.from({ length: N }, (_, r) => (r % 5 === 3 ? -100 : (r * 31 + seed) % V));
  return { N, d, V, h: randomF32(N * d, seed, -1, 1), w: randomF32(V * d, seed + 1, -0.5, 0.5), labels, gradScale: 1 / N };
}

function compare(tag: string, got: CeOutputs, want: Omit<CeOutputs, 'lse' | 'rowLoss' | 'dh' | 'dw'> & Record<'lse' | 'rowLoss' | 'dh' | 'dw', ArrayLike<number>>, fwdTol: number, gradTol: number, floorRms = 0): void {
  assert.equal(got.count, want.count, `${tag} count`);
  closeRel(`${tag} lossSum`, [got.lossSum], [want.lossSum], fwdTol);
  closeRel(`${tag} lse`, got.lse, want.lse, fwdTol);
  closeRel(`${tag} rowLoss`, got.rowLoss, want.rowLoss, fwdTol);
  closeRel(`${tag} dh`, got.dh, want.dh, gradTol, floorRms);
  closeRel(`${tag} dw`, got.dw, want.dw, gradTol, floorRms);
}

for (const { name, level } of isaPaths()) {
  test(`cross-entropy matches F.cross_entropy(F.linear(h, w), sum, ignore_index=-100) for chunks 1, 7, V [${name}]`, () => {
    for (const c of fixtures.crossEntropy) {
      for (const chunk of [1, 7, c.V, c.V + 10]) {
        const got = withIsa(level, () => crossEntropy(c, chunk));
        compare(`${c.name} chunk ${chunk}`, got, c, FWD_TOL, GRAD_TOL);
        const trained = c.labels.filter((y) => y !== -100).length;
        assert.equal(got.count, trained);
        c.labels.forEach((y, r) => y === -100 && assert.equal(got.rowLoss[r], 0, 'ignored rows have zero loss'));
      }
    }
  });
}

test('cross-entropy chunk size does not change results beyond rounding', () => {
  const c = randomCe(65, 33, 257, 3);
  for (const { name, level } of isaPaths()) {
    const ref = withIsa(level, () => crossEntropy(c, c.V));
    for (const chunk of [1, 7, 64, 100]) {
      compare(`[${name}] chunk ${chunk} vs V`, withIsa(level, () => crossEntropy(c, chunk)), ref, 1e-6, 1e-6);
    }
  }
});

test('SIMD cross-entropy matches the naive kernel on odd sizes', () => {
  const simd = isaPaths().filter((p) => p.level > 0);
  for (const N of ODD_SIZES) {
    for (const [d, V] of [[64, 257], [7, 1], [65, 63], [1, 65], [257, 7]] as const) {
      const c = randomCe(N, d, V, N + d + V);
      const chunk = Math.max(1, Math.floor(V / 3));
      const ref = withIsa(0, () => crossEntropy(c, chunk));
      for (const { name, level } of simd) {
        compare(`[${name}] N=${N} d=${d} V=${V}`, withIsa(level, () => crossEntropy(c, chunk)), ref, 1e-5, 1e-5, 1e-3);
      }
    }
  }
});

test('cross-entropy accumulates into dw (+=) and scales both gradients by gradScale', () => {
  const c = fixtures.crossEntropy[0]!;
  const dw0 = randomF32(c.V * c.d, 5);
  for (const { name, level } of isaPaths()) {
    const got = withIsa(level, () => crossEntropy(c, 7, dw0));
    closeRel(`[${name}] dw accumulated`, got.dw, c.dw.map((g, i) => g + (dw0[i] as number)), GRAD_TOL);
    const doubled = withIsa(level, () => crossEntropy({ ...c, gradScale: 2 * c.gradScale }, 7));
    closeRel(`[${name}] dh with twice the grad scale`, doubled.dh, c.dh.map((g) => 2 * g), GRAD_TOL);
  }
});

test('cross-entropy throws naming the first out-of-range label, and -100 is the only ignored value', () => {
  const c = fixtures.crossEntropy[0]!;
  for (const { level } of isaPaths()) {
    withIsa(level, () => {
      for (const [row, label] of [[2, c.V], [4, -1], [0, -99]] as const) {
        const labels = [...c.labels];
        labels[row] = label;
        assert.throws(
          () => crossEntropy({ ...c, labels }, 7),
          new RegExp(`crossEntropyForward: label ${label} at row ${row} is out of range for vocab size ${c.V}`),
        );
      }
      withArena((a) => {
        const h = a.f32(c.h), w = a.f32(c.w), labels = a.i32(c.labels.map((y, r) => (r === 6 ? 1000 : y)));
        const lse = a.zeros(c.N), dh = a.zeros(c.N * c.d), dw = a.zeros(c.V * c.d);
        assert.throws(
          () => native.crossEntropyBackward(h, 0, w, 0, labels, 0, lse, 0, dh, 0, dw, 0, c.N, c.d, c.V, 7, 1),
          /crossEntropyBackward: label 1000 at row 6 is out of range/,
        );
        assert.ok(readF32(dw, c.V * c.d).every((x) => x === 0), 'nothing written before the label check');
      });
    });
  }
});

test('cross-entropy rejects bad sizes and too-small buffers, naming op, tensor and shape', () => {
  withArena((a) => {
    const N = 4, d = 8, V = 10;
    const h = a.zeros(N * d), w = a.zeros(V * d), labels = a.i32([0, 1, 2, 3]), lse = a.zeros(N), small = a.zeros(3);
    const fwd = (chunk: number, ww = w, rl = 0, ll = labels) =>
      native.crossEntropyForward(h, 0, ww, 0, ll, 0, lse, 0, rl, 0, N, d, V, chunk);
    assert.throws(() => fwd(0), /crossEntropyForward: d, V and chunk must be >= 1 \(N=4, d=8, V=10, chunk=0\)/);
    assert.throws(() => fwd(4, small), /crossEntropyForward: buffer 'w \(10, 8\)' too small/);
    assert.throws(() => fwd(4, w, small), /crossEntropyForward: buffer 'rowLoss \(4\)' too small/);
    assert.throws(() => fwd(4, w, 0, small), /crossEntropyForward: buffer 'labels \(4\)' too small/);
    assert.throws(
      () => native.crossEntropyBackward(h, 0, w, 0, labels, 0, lse, 0, h, 0, small, 0, N, d, V, 4, 1),
      /crossEntropyBackward: buffer 'dw \(10, 8\)' too small/,
    );
    assert.throws(
      () => native.crossEntropyBackward(h, 0, w, 0, labels, 0, lse, 0, h, 0, w, 0, N, d, V, 4, Number.NaN),
      /crossEntropyBackward: argument 'gradScale' must be finite/,
    );
  });
});

test('cross-entropy is bit-identical run to run at 2 threads and releases its scratch', () => {
  const c = randomCe(257, 64, 1000, 9);
  const before = host.getThreads();
  host.setThreads(2);
  try {
    for (const { name, level } of isaPaths()) {
      const a = withIsa(level, () => crossEntropy(c, 300));
      const live = native.memStats().liveBytes;
      const b = withIsa(level, () => crossEntropy(c, 300));
      assert.equal(native.memStats().liveBytes, live, `[${name}] live native bytes back to baseline`);
      assert.equal(b.lossSum, a.lossSum, `[${name}] lossSum`);
      for (const key of ['lse', 'rowLoss', 'dh', 'dw'] as const) assert.deepEqual(bits(b[key]), bits(a[key]), `[${name}] ${key}`);
    }
  } finally {
    host.setThreads(before);
  }
});

test('cross-entropy with no rows returns a zero sum and count', () => {
  for (const { name, level } of isaPaths()) {
    const got = withIsa(level, () => crossEntropy({ N: 0, d: 8, V: 5, h: [], w: randomF32(40, 1), labels: [], gradScale: 1 }, 2));
    assert.equal(got.lossSum, 0, `[${name}] lossSum`);
    assert.equal(got.count, 0, `[${name}] count`);
    assert.ok(got.dw.every((x) => x === 0), `[${name}] dw untouched`);
  }
});

// Sizes with odd N, d and V; the row blocks run from one row to more than N.
const SWEEP_SHAPES = [[65, 33, 257], [7, 64, 1], [257, 7, 65], [1, 65, 63], [63, 17, 1000]] as const;

for (const { name, level } of isaPaths()) {
  test(`one-sweep cross-entropy matches forward + backward (loss, lse, dh, dw; blocks below and above N; bf16) [${name}]`, () => {
    for (const [N, d, V] of SWEEP_SHAPES) {
      const c = randomCe(N, d, V, N + 2 * d + V);
      for (const bf16 of [false, true]) {
        // The pair with one vocab chunk makes each row's lse with the same operations as the sweep; with
        // small chunks (fp32) its online max / sum-exp differs by rounding only.
        const refs = bf16 ? [V] : [V, Math.max(1, Math.floor(V / 3))];
        for (const chunk of refs) {
          const ref = withIsa(level, () => crossEntropy(c, chunk, undefined, bf16));
          for (const R of [1, 7, 64, N, N + 5]) {
            const got = withIsa(level, () => sweep(c, R, { bf16 }));
            const tag = `N=${N} d=${d} V=${V} R=${R} chunk=${chunk} bf16=${bf16}`;
            assert.equal(got.count, ref.count, `${tag} count`);
            closeRel(`${tag} lossSum`, [got.lossSum], [ref.lossSum], 1e-6);
            closeRel(`${tag} lse`, got.lse, ref.lse, 1e-5);
            closeRel(`${tag} rowLoss`, got.rowLoss, ref.rowLoss, 1e-5);
            closeRel(`${tag} dh`, got.dh, ref.dh, 1e-5, 1e-6);
            closeRel(`${tag} dw`, got.dw, ref.dw, 1e-5, 1e-6);
            Array.from(c.labels).forEach((y, r) => y === -100 && assert.equal(got.rowLoss[r], 0, `${tag}: ignored rows have zero loss`));
          }
        }
      }
    }
  });
}

test('one-sweep cross-entropy: SIMD matches the naive kernel, dw accumulates, skipped gradients change nothing else', () => {
  const c = randomCe(65, 33, 257, 11);
  const ref = withIsa(0, () => sweep(c, 16));
  const dw0 = randomF32(c.V * c.d, 12);
  for (const { name, level } of isaPaths()) {
    if (level > 0) compare(`[${name}] vs naive`, withIsa(level, () => sweep(c, 16)), ref, 1e-5, 1e-5, 1e-6);
    const full = withIsa(level, () => sweep(c, 16));
    const acc = withIsa(level, () => sweep(c, 16, { dw0 }));
    closeRel(`[${name}] dw accumulated`, acc.dw, full.dw.map((g, i) => g + (dw0[i] as number)), 1e-6);
    const noDh = withIsa(level, () => sweep(c, 16, { noDh: true }));
    const noDw = withIsa(level, () => sweep(c, 16, { noDw: true }));
    assert.ok(noDh.dh.every((x) => Number.isNaN(x)), `[${name}] dh untouched when skipped`);
    assert.ok(noDw.dw.every((x) => x === 0), `[${name}] dw untouched when skipped`);
    assert.deepEqual(bits(noDh.dw), bits(full.dw), `[${name}] dw without dh`);
    assert.deepEqual(bits(noDw.dh), bits(full.dh), `[${name}] dh without dw`);
    for (const o of [noDh, noDw]) {
      assert.equal(o.lossSum, full.lossSum, `[${name}] lossSum`);
      assert.deepEqual(bits(o.lse), bits(full.lse), `[${name}] lse`);
    }
  }
});

test('one-sweep cross-entropy is bit-identical at 1, 2 and 3 threads and releases its scratch', () => {
  const c = randomCe(257, 64, 1000, 13);
  const before = host.getThreads();
  try {
    for (const { name, level } of isaPaths()) {
      for (const bf16 of [false, true]) {
        host.setThreads(1);
        const a = withIsa(level, () => sweep(c, 64, { bf16 }));
        const live = native.memStats().liveBytes;
        for (const threads of [2, 3]) {
          host.setThreads(threads);
          const b = withIsa(level, () => sweep(c, 64, { bf16 }));
          assert.equal(native.memStats().liveBytes, live, `[${name}] live native bytes back to baseline`);
          assert.equal(b.lossSum, a.lossSum, `[${name}] ${threads} threads bf16=${bf16} lossSum`);
          for (const key of ['lse', 'rowLoss', 'dh', 'dw'] as const) assert.deepEqual(bits(b[key]), bits(a[key]), `[${name}] ${threads} threads bf16=${bf16} ${key}`);
        }
      }
    }
  } finally {
    host.setThreads(before);
  }
});

test('one-sweep cross-entropy names the first bad label before writing, and rejects bad sizes', () => {
  const c = fixtures.crossEntropy[0]!;
  for (const { level } of isaPaths()) {
    withIsa(level, () => {
      const labels = c.labels.map((y, r) => (r === 3 ? c.V : y));
      assert.throws(() => sweep({ ...c, labels }, 2), new RegExp(`crossEntropySweep: label ${c.V} at row 3 is out of range for vocab size ${c.V}`));
      const got = withIsa(level, () => sweep({ N: 0, d: 8, V: 5, h: [], w: randomF32(40, 1), labels: [], gradScale: 1 }, 4));
      assert.equal(got.lossSum, 0);
      assert.equal(got.count, 0);
      assert.ok(got.dw.every((x) => x === 0), 'dw untouched with no rows');
    });
  }
  withArena((a) => {
    const N = 4, d = 8, V = 10;
    const h = a.zeros(N * d), w = a.zeros(V * d), labels = a.i32([0, 1, 2, 3]), lse = a.zeros(N), small = a.zeros(3);
    const run = (rowBlock: number, dw = w, scale = 1) =>
      native.crossEntropySweep(h, 0, w, 0, labels, 0, lse, 0, 0, 0, h, 0, dw, 0, N, d, V, rowBlock, scale);
    assert.throws(() => run(0), /crossEntropySweep: d, V and rowBlock must be >= 1 \(N=4, d=8, V=10, rowBlock=0\)/);
    assert.throws(() => run(2, small), /crossEntropySweep: buffer 'dw \(10, 8\)' too small/);
    assert.throws(() => run(2, w, Number.POSITIVE_INFINITY), /crossEntropySweep: argument 'gradScale' must be finite/);
  });
});
