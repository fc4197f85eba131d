// RoPE (HF rotate_half, partial rotary) and SwiGLU kernels: PyTorch parity on every ISA path, SIMD vs naive
// on odd sizes, in-place RoPE, out-of-range positions and too-small buffers rejected, determinism at 2 threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, readF32, randomF32, relError, isaPaths, withIsa, ODD_SIZES, Arena, withArena, bits } from '../helpers/native.ts';

interface RopeCase {
  rows: number; H: number; D: number; rotDim: number; posCount: number; positions: number[];
  cos: number[]; sin: number[]; x: number[]; dy: number[]; y: number[]; dx: number[];
}
interface SwigluCase { n: number; gate: number[]; up: number[]; dout: number[]; out: number[]; dgate: number[]; dup: number[] }
const fixtures = JSON.parse(readFileSync(new URL('../fixtures/nn_ops.json', import.meta.url), 'utf8')) as {
  rope: RopeCase[];
  swiglu: SwigluCase[];
};

const FWD_TOL = 1e-5;
const GRAD_TOL = 1e-4;

function close(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  const e = relError(got, want);
  assert.ok(e <= tol, `${name}: relative error ${e.toExponential(2)} > ${tol}`);
}

interface RopeInputs { rows: number; H: number; D: number; rotDim: number; posCount: number; positions: ArrayLike<number>; cos: ArrayLike<number>; sin: ArrayLike<number>; x: ArrayLike<number>; dy: ArrayLike<number> }

/** Forward (x -> y) and backward (dy -> dx) through the native rope op. */
function rope(c: RopeInputs): { y: Float32Array; dx: Float32Array } {
  const n = c.rows * c.H * c.D;
  return withArena((a) => {
    const x = a.f32(c.x), dy = a.f32(c.dy), cos = a.f32(c.cos), sin = a.f32(c.sin), pos = a.i32(c.positions);
    const y = a.zeros(n), dx = a.zeros(n);
    native.rope(x, 0, y, 0, cos, 0, sin, 0, pos, 0, c.rows, c.H, c.D, c.rotDim, c.posCount, false);
    native.rope(dy, 0, dx, 0, cos, 0, sin, 0, pos, 0, c.rows, c.H, c.D, c.rotDim, c.posCount, true);
    return { y: readF32(y, n), dx: readF32(dx, n) };
  });
}

function ropeTables(posCount: number, rotDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const half = rotDim / 2;
  const cos = new Float32Array(posCount * half), sin = new Float32Array(posCount * half);
  for (let p = 0; p < posCount; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p / Math.pow(theta, (2 * i) / rotDim);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

function randomRope(rows: number, H: number, D: number, rotDim: number, seed: number): RopeInputs {
  const posCount = rows + 5;
  const positions = Int32Array.from({ length: rows }, (_, r) => (r * 7 + 3) % posCount);
  return {
    rows, H, D, rotDim, posCount, positions, ...ropeTables(posCount, rotDim, 10000),
    x: randomF32(rows * H * D, seed), dy: randomF32(rows * H * D, seed + 1),
  };
}

function swiglu(gateA: ArrayLike<number>, upA: ArrayLike<number>, doutA: ArrayLike<number>) {
  const n = gateA.length;
  return withArena((a) => {
    const gate = a.f32(gateA), up = a.f32(upA), dout = a.f32(doutA);
    const out = a.zeros(n), dgate = a.zeros(n), dup = a.zeros(n);
    native.swigluForward(gate, 0, up, 0, out, 0, n);
    native.swigluBackward(gate, 0, up, 0, dout, 0, dgate, 0, dup, 0, n);
    return { out: readF32(out, n), dgate: readF32(dgate, n), dup: readF32(dup, n) };
  });
}

for (const { name, level } of isaPaths()) {
  test(`rope matches HF rotate_half, full and partial rotary, backward is the inverse rotation [${name}]`, () => {
    for (const c of fixtures.rope) {
      const got = withIsa(level, () => rope(c));
      const tag = `rope rows=${c.rows} H=${c.H} D=${c.D} rot=${c.rotDim}`;
      close(`${tag} y`, got.y, c.y, FWD_TOL);
      close(`${tag} dx`, got.dx, c.dx, GRAD_TOL);
      // the pass-through dims of a partial rotary are copied exactly
      for (let i = 0; i < c.rows * c.H; i++) {
        for (let d = c.rotDim; d < c.D; d++) assert.equal(got.y[i * c.D + d], Math.fround(c.x[i * c.D + d] as number));
      }
    }
  });

  test(`swiglu matches PyTorch silu(gate) * up [${name}]`, () => {
    for (const c of fixtures.swiglu) {
      const got = withIsa(level, () => swiglu(c.gate, c.up, c.dout));
      close(`swiglu n=${c.n} out`, got.out, c.out, FWD_TOL);
      close(`swiglu n=${c.n} dgate`, got.dgate, c.dgate, GRAD_TOL);
      close(`swiglu n=${c.n} dup`, got.dup, c.dup, GRAD_TOL);
    }
  });
}

test('SIMD rope and swiglu match the naive kernels on odd sizes', () => {
  const simd = isaPaths().filter((p) => p.level > 0);
  for (const rows of ODD_SIZES) {
    for (const [H, D, rotDim] of [[1, 64, 64], [3, 7, 6], [2, 65, 32], [1, 257, 256], [2, 63, 2]] as const) {
      const inp = randomRope(rows, H, D, rotDim, rows + D);
      const ref = withIsa(0, () => rope(inp));
      for (const { name, level } of simd) {
        const got = withIsa(level, () => rope(inp));
        close(`[${name}] rope ${rows}x${H}x${D} rot ${rotDim} y`, got.y, ref.y, 1e-6);
        close(`[${name}] rope ${rows}x${H}x${D} rot ${rotDim} dx`, got.dx, ref.dx, 1e-6);
      }
    }
  }
  for (const n of [...ODD_SIZES, 4096 + 3, 40000]) {
    const gate = randomF32(n, n, -20, 20), up = randomF32(n, n + 1), dout = randomF32(n, n + 2);
    const ref = withIsa(0, () => swiglu(gate, up, dout));
    for (const { name, level } of simd) {
      const got = withIsa(level, () => swiglu(gate, up, dout));
      close(`[${name}] swiglu n=${n} out`, got.out, ref.out, 1e-6);
      close(`[${name}] swiglu n=${n} dgate`, got.dgate, ref.dgate, 1e-6);
      close(`[${name}] swiglu n=${n} dup`, got.dup, ref.dup, 1e-6);
    }
  }
});

test('rope works in place and its backward undoes the forward', () => {
  const c = fixtures.rope[1]!;
  const n = c.rows * c.H * c.D;
  for (const { name, level } of isaPaths()) {
    withIsa(level, () =>
      withArena((a) => {
        const x = a.f32(c.x), cos = a.f32(c.cos), sin = a.f32(c.sin), pos = a.i32(c.positions);
        native.rope(x, 0, x, 0, cos, 0, sin, 0, pos, 0, c.rows, c.H, c.D, c.rotDim, c.posCount, false);
        close(`[${name}] in-place y`, readF32(x, n), c.y, FWD_TOL);
        native.rope(x, 0, x, 0, cos, 0, sin, 0, pos, 0, c.rows, c.H, c.D, c.rotDim, c.posCount, true);
        close(`[${name}] inverse of forward`, readF32(x, n), c.x, 1e-6);
      }),
    );
  }
});

test('rope and swiglu are bit-identical run to run at 2 threads', () => {
  const before = host.getThreads();
  host.setThreads(2);
  try {
    const inp = randomRope(257, 4, 64, 64, 5);
    const gate = randomF32(100003, 1, -8, 8), up = randomF32(100003, 2), dout = randomF32(100003, 3);
    for (const { name, level } of isaPaths()) {
      const r1 = withIsa(level, () => rope(inp)), r2 = withIsa(level, () => rope(inp));
      assert.deepEqual(bits(r2.y), bits(r1.y), `[${name}] rope y`);
      const s1 = withIsa(level, () => swiglu(gate, up, dout)), s2 = withIsa(level, () => swiglu(gate, up, dout));
      assert.deepEqual(bits(s2.dgate), bits(s1.dgate), `[${name}] swiglu dgate`);
    }
  } finally {
    host.setThreads(before);
  }
});

test('rope throws naming an out-of-range position, writing nothing', () => {
  const c = fixtures.rope[0]!;
  const n = c.rows * c.H * c.D;
  for (const { level } of isaPaths()) {
    withIsa(level, () =>
      withArena((a) => {
        const positions = [...c.positions];
        positions[3] = c.posCount;   // one past the table
        const x = a.f32(c.x), y = a.zeros(n), cos = a.f32(c.cos), sin = a.f32(c.sin), pos = a.i32(positions);
        assert.throws(
          () => native.rope(x, 0, y, 0, cos, 0, sin, 0, pos, 0, c.rows, c.H, c.D, c.rotDim, c.posCount, false),
          new RegExp(`rope: position ${c.posCount} at row 3 is out of range \\[0, ${c.posCount}\\)`),
        );
        assert.ok(readF32(y, n).every((v) => v === 0), 'nothing written');
        const neg = a.i32(c.positions.map((p, i) => (i === 0 ? -1 : p)));
        assert.throws(
          () => native.rope(x, 0, y, 0, cos, 0, sin, 0, neg, 0, c.rows, c.H, c.D, c.rotDim, c.posCount, true),
          /rope: position -1 at row 0 is out of range/,
        );
      }),
    );
  }
});

test('rope and swiglu reject bad sizes and too-small buffers, naming op, tensor and shape', () => {
  withArena((a) => {
    const x = a.zeros(2 * 3 * 8), small = a.zeros(4), table = a.zeros(10 * 4), pos = a.i32([0, 1]);
    assert.throws(() => native.rope(x, 0, x, 0, table, 0, table, 0, pos, 0, 2, 3, 8, 7, 10, false), /rope: rotDim 7 must be even/);
    assert.throws(() => native.rope(x, 0, x, 0, table, 0, table, 0, pos, 0, 2, 3, 8, 10, 10, false), /rope: rotDim 10 .* <= D \(8\)/);
    assert.throws(() => native.rope(x, 0, small, 0, table, 0, table, 0, pos, 0, 2, 3, 8, 8, 10, false), /rope: buffer 'y \(2, 3, 8\)' too small/);
    assert.throws(() => native.rope(x, 0, x, 0, table, 0, table, 0, pos, 0, 2, 3, 8, 8, 11, false), /rope: buffer 'cos \(11, 4\)' too small/);
    assert.throws(() => native.rope(x, 0, x, 0, table, 0, table, 0, pos, 0, 3, 2, 8, 8, 10, false), /rope: buffer 'positions \(3\)' too small/);
    assert.throws(() => native.swigluForward(x, 0, x, 0, small, 0, 48), /swigluForward: buffer 'out \(48\)' too small/);
    assert.throws(() => native.swigluBackward(x, 0, small, 0, x, 0, x, 0, x, 0, 48), /swigluBackward: buffer 'up \(48\)' too small/);
    assert.throws(() => native.swigluForward(x, 0, x, 0, x, 0, -1), /swigluForward: size 'n' out of range/);
  });
});
