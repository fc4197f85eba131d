// RMSNorm and LayerNorm kernels: PyTorch parity on every ISA path, SIMD vs naive on odd sizes,
// weight gradients accumulated (+=), optional affine, bounds-checked buffers, determinism at 2 threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, readF32, randomF32, relError, isaPaths, withIsa, ODD_SIZES, Arena, withArena, bits } from '../helpers/native.ts';

interface RmsCase { rows: number; dim: number; eps: number; x: number[]; w: number[]; dy: number[]; y: number[]; rstd: number[]; dx: number[]; dw: number[] }
interface LnCase {
  rows: number; dim: number; eps: number; affine: boolean; x: number[]; dy: number[]; y: number[]; mean: number[]; rstd: number[];
  dx: number[]; w?: number[]; b?: number[]; dw?: number[]; db?: number[];
}
const fixtures = JSON.parse(readFileSync(new URL('../fixtures/nn_ops.json', import.meta.url), 'utf8')) as {
  rmsnorm: RmsCase[];
  layernorm: LnCase[];
};

const FWD_TOL = 1e-5;
const GRAD_TOL = 1e-4;

interface NormInputs { rows: number; dim: number; eps: number; x: ArrayLike<number>; dy: ArrayLike<number>; w?: ArrayLike<number>; b?: ArrayLike<number>; dw0?: ArrayLike<number>; db0?: ArrayLike<number> }
interface NormOutputs { y: Float32Array; rstd: Float32Array; mean?: Float32Array; dx: Float32Array; dw?: Float32Array; db?: Float32Array }

function rmsnorm(inp: NormInputs): NormOutputs {
  const { rows, dim } = inp;
  return withArena((a) => {
    const x = a.f32(inp.x), w = a.f32(inp.w ?? []), dy = a.f32(inp.dy);
    const y = a.zeros(rows * dim), rstd = a.zeros(rows), dx = a.zeros(rows * dim);
    const dw = inp.dw0 ? a.f32(inp.dw0) : a.zeros(dim);
    native.rmsnormForward(x, 0, w, 0, y, 0, rstd, 0, rows, dim, inp.eps);
    native.rmsnormBackward(x, 0, w, 0, rstd, 0, dy, 0, dx, 0, dw, 0, rows, dim);
    return { y: readF32(y, rows * dim), rstd: readF32(rstd, rows), dx: readF32(dx, rows * dim), dw: readF32(dw, dim) };
  });
}

function layernorm(inp: NormInputs): NormOutputs {
  const { rows, dim } = inp;
  return withArena((a) => {
    const x = a.f32(inp.x), dy = a.f32(inp.dy);
    const w = inp.w ? a.f32(inp.w) : 0, b = inp.b ? a.f32(inp.b) : 0;
    const y = a.zeros(rows * dim), mean = a.zeros(rows), rstd = a.zeros(rows), dx = a.zeros(rows * dim);
    const dw = inp.w ? (inp.dw0 ? a.f32(inp.dw0) : a.zeros(dim)) : 0;
    const db = inp.b ? (inp.db0 ? a.f32(inp.db0) : a.zeros(dim)) : 0;
    native.layernormForward(x, 0, w, 0, b, 0, y, 0, mean, 0, rstd, 0, rows, dim, inp.eps);
    native.layernormBackward(x, 0, w, 0, mean, 0, rstd, 0, dy, 0, dx, 0, dw, 0, db, 0, rows, dim);
    const out: NormOutputs = {
      y: readF32(y, rows * dim), mean: readF32(mean, rows), rstd: readF32(rstd, rows), dx: readF32(dx, rows * dim),
    };
    if (dw) out.dw = readF32(dw, dim);
    if (db) out.db = readF32(db, dim);
    return out;
  });
}

function close(name: string, got: ArrayLike<number> | undefined, want: ArrayLike<number> | undefined, tol: number): void {
  assert.ok(got && want, `${name}: missing`);
  const e = relError(got, want);
  assert.ok(e <= tol, `${name}: relative error ${e.toExponential(2)} > ${tol}`);
}

function randomInputs(rows: number, dim: number, seed: number): NormInputs {
  // With dim 1, RMSNorm's dx = w dy rstd (1 - x^2 rstd^2) = w dy rstd eps / (x^2 + eps) cancels catastrophically
  // in fp32 for a small eps; a large eps keeps that case well-conditioned.
  return {
    rows, dim, eps: dim === 1 ? 1 : 1e-5,
    x: randomF32(rows * dim, seed, -2, 2), dy: randomF32(rows * dim, seed + 1),
    w: randomF32(dim, seed + 2, 0.5, 1.5), b: randomF32(dim, seed + 3), dw0: randomF32(dim, seed + 4), db0: randomF32(dim, seed + 5),
  };
}

for (const { name, level } of isaPaths()) {
  test(`rmsnorm matches PyTorch (HF LlamaRMSNorm) [${name}]`, () => {
    for (const c of fixtures.rmsnorm) {
      const got = withIsa(level, () => rmsnorm(c));
      const tag = `rmsnorm ${c.rows}x${c.dim}`;
      close(`${tag} y`, got.y, c.y, FWD_TOL);
      close(`${tag} rstd`, got.rstd, c.rstd, FWD_TOL);
      close(`${tag} dx`, got.dx, c.dx, GRAD_TOL);
      close(`${tag} dw`, got.dw, c.dw, GRAD_TOL);
    }
  });

  test(`layernorm matches PyTorch, with and without weight/bias [${name}]`, () => {
    for (const c of fixtures.layernorm) {
      const got = withIsa(level, () => layernorm(c));
      const tag = `layernorm ${c.rows}x${c.dim} affine=${c.affine}`;
      close(`${tag} y`, got.y, c.y, FWD_TOL);
      close(`${tag} mean`, got.mean, c.mean, FWD_TOL);
      close(`${tag} rstd`, got.rstd, c.rstd, FWD_TOL);
      close(`${tag} dx`, got.dx, c.dx, GRAD_TOL);
      if (c.affine) {
        close(`${tag} dw`, got.dw, c.dw, GRAD_TOL);
        close(`${tag} db`, got.db, c.db, GRAD_TOL);
      } else {
        assert.equal(got.dw, undefined);
      }
    }
  });
}

test('norm weight gradients accumulate into dw and db (+=)', () => {
  const c = fixtures.rmsnorm[0]!;
  const dw0 = randomF32(c.dim, 9);
  for (const { level } of isaPaths()) {
    const got = withIsa(level, () => rmsnorm({ ...c, dw0 }));
    close('rmsnorm dw accumulated', got.dw, c.dw.map((g, i) => g + (dw0[i] as number)), GRAD_TOL);
  }
  const l = fixtures.layernorm.find((x) => x.affine)!;
  const db0 = randomF32(l.dim, 10);
  for (const { level } of isaPaths()) {
    const got = withIsa(level, () => layernorm({ ...l, dw0, db0: db0 }));
    close('layernorm dw accumulated', got.dw, l.dw!.map((g, i) => g + (dw0[i] as number)), GRAD_TOL);
    close('layernorm db accumulated', got.db, l.db!.map((g, i) => g + (db0[i] as number)), GRAD_TOL);
  }
});

test('SIMD norms match the naive kernels on odd sizes', () => {
  const simd = isaPaths().filter((p) => p.level > 0);
  for (const rows of ODD_SIZES) {
    for (const dim of [...ODD_SIZES, 64]) {
      const inp = randomInputs(rows, dim, rows * 1000 + dim);
      const refR = withIsa(0, () => rmsnorm(inp));
      const refL = withIsa(0, () => layernorm(inp));
      for (const { name, level } of simd) {
        const tag = `[${name}] ${rows}x${dim}`;
        const r = withIsa(level, () => rmsnorm(inp));
        close(`rmsnorm y ${tag}`, r.y, refR.y, 1e-5);
        close(`rmsnorm dx ${tag}`, r.dx, refR.dx, 1e-5);
        close(`rmsnorm dw ${tag}`, r.dw, refR.dw, 1e-5);
        const l = withIsa(level, () => layernorm(inp));
        close(`layernorm y ${tag}`, l.y, refL.y, 1e-5);
        close(`layernorm dx ${tag}`, l.dx, refL.dx, 1e-5);
        close(`layernorm dw ${tag}`, l.dw, refL.dw, 1e-5);
        close(`layernorm db ${tag}`, l.db, refL.db, 1e-5);
      }
    }
  }
});

test('norms are bit-identical run to run at 2 threads', () => {
  const before = host.getThreads();
  host.setThreads(2);
  try {
    const inp = randomInputs(257, 300, 77);
    for (const { name, level } of isaPaths()) {
      const a = withIsa(level, () => [rmsnorm(inp), layernorm(inp)]);
      const b = withIsa(level, () => [rmsnorm(inp), layernorm(inp)]);
      for (let i = 0; i < 2; i++) {
        for (const key of ['y', 'dx', 'dw'] as const) {
          assert.deepEqual(bits(b[i]![key]!), bits(a[i]![key]!), `[${name}] ${i === 0 ? 'rmsnorm' : 'layernorm'} ${key}`);
        }
      }
    }
  } finally {
    host.setThreads(before);
  }
});

test('norm ops reject too-small buffers and bad sizes, naming op, tensor and shape', () => {
  withArena((a) => {
    const x = a.zeros(4 * 7), small = a.zeros(5), w = a.zeros(7), y = a.zeros(28), r = a.zeros(4);
    assert.throws(() => native.rmsnormForward(x, 0, w, 0, small, 0, r, 0, 4, 7, 1e-5), /rmsnormForward: buffer 'y \(4, 7\)' too small/);
    assert.throws(() => native.rmsnormForward(x, 0, small, 0, y, 0, r, 0, 4, 7, 1e-5), /rmsnormForward: buffer 'w \(7\)' too small/);
    assert.throws(() => native.rmsnormForward(x, 4, w, 0, y, 0, r, 0, 4, 7, 1e-5), /buffer 'x \(4, 7\)' too small/);
    assert.throws(() => native.rmsnormForward(x, 0, w, 0, y, 0, r, 0, 4, 0, 1e-5), /rmsnormForward: dim must be >= 1/);
    assert.throws(() => native.rmsnormBackward(x, 0, w, 0, r, 0, x, 0, small, 0, w, 0, 4, 7), /rmsnormBackward: buffer 'dx \(4, 7\)' too small/);
    assert.throws(
      () => native.layernormForward(x, 0, 0, 0, 0, 0, y, 0, small, 0, r, 0, 6, 7, 1e-5),
      /layernormForward: buffer 'x \(6, 7\)' too small/,
    );
    assert.throws(
      () => native.layernormBackward(x, 0, 0, 0, r, 0, r, 0, x, 0, y, 0, w, 0, 0, 0, 4, 7),
      /layernormBackward: dw given without w/,
    );
  });
});
