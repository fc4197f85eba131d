// Fused causal attention (tiled, online softmax, GQA, query offset, segment ids): PyTorch parity on every ISA
// path, SIMD vs naive on odd sizes, KV-cache decoding equals the full computation, segment isolation,
// rows with no visible key, bounds and shape checks, determinism.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, readF32, randomF32, isaPaths, withIsa, ODD_SIZES, Arena, withArena, bits, closeRel } from '../helpers/native.ts';

interface AttnShape { B: number; T: number; S: number; Hq: number; Hkv: number; D: number; qOffset: number; causal: boolean; scale: number; window?: number }
interface AttnInputs extends AttnShape {
  q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number>; dout: ArrayLike<number>;
  qSeg?: ArrayLike<number>; kSeg?: ArrayLike<number>;
}
interface AttnCase extends AttnInputs { name: string; out: number[]; lse: number[]; dq: number[]; dk: number[]; dv: number[] }
interface AttnOutputs { out: Float32Array; lse: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array }

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/nn_ops.json', import.meta.url), 'utf8')) as { attention: AttnCase[] };

const FWD_TOL = 1e-5;
const GRAD_TOL = 1e-4;

/** k or v (B, S, Hkv, D) copied into a KV cache of `capacity` rows per batch; unused rows hold NaN. */
function inCache(x: ArrayLike<number>, c: AttnShape, capacity: number): Float32Array {
  const row = c.Hkv * c.D;
  const cache = new Float32Array(c.B * capacity * row).fill(Number.NaN);
  for (let b = 0; b < c.B; b++) {
    for (let i = 0; i < c.S * row; i++) cache[b * capacity * row + i] = x[b * c.S * row + i] as number;
  }
  return cache;
}

/** Forward, then backward with c.dout; with cacheRows, k and v sit in a larger NaN-padded cache. */
function attention(c: AttnInputs, cacheRows?: number): AttnOutputs {
  const { B, T, S, Hq, Hkv, D } = c;
  const nq = B * T * Hq * D, nkv = B * S * Hkv * D;
  const capacity = cacheRows ?? S;
  const kvStride = capacity * Hkv * D;
  return withArena((a) => {
    const q = a.f32(c.q), dout = a.f32(c.dout);
    const k = a.f32(cacheRows ? inCache(c.k, c, capacity) : c.k);
    const v = a.f32(cacheRows ? inCache(c.v, c, capacity) : c.v);
    const qSeg = c.qSeg ? a.i32(c.qSeg) : 0, kSeg = c.kSeg ? a.i32(c.kSeg) : 0;
    const out = a.zeros(nq), lse = a.zeros(B * Hq * T), dq = a.zeros(nq), dk = a.zeros(nkv), dv = a.zeros(nkv);
    native.attentionForward(q, 0, k, 0, v, 0, out, 0, lse, 0, qSeg, 0, kSeg, 0, B, T, S, Hq, Hkv, D, kvStride, c.qOffset, c.scale, c.causal, c.window ?? 0);
    native.attentionBackward(
      q, 0, k, 0, v, 0, out, 0, lse, 0, dout, 0, dq, 0, dk, 0, dv, 0, qSeg, 0, kSeg, 0,
      B, T, S, Hq, Hkv, D, kvStride, c.qOffset, c.scale, c.causal, c.window ?? 0,
    );
    return { out: readF32(out, nq), lse: readF32(lse, B * Hq * T), dq: readF32(dq, nq), dk: readF32(dk, nkv), dv: readF32(dv, nkv) };
  });
}

function randomAttention(shape: Omit<AttnShape, 'scale'>, seed: number, segLen?: number): AttnInputs {
  const { B, T, S, Hq, Hkv, D } = shape;
  const c: AttnInputs = {
    ...shape, scale: 1 / Math.sqrt(D),
    q: randomF32(B * T * Hq * D, seed, -2, 2), k: randomF32(B * S * Hkv * D, seed + 1, -2, 2),
    v: randomF32(B * S * Hkv * D, seed + 2), dout: randomF32(B * T * Hq * D, seed + 3),
  };
  if (segLen) {
    // packed rows: segments of segLen positions (key position s = query position t + qOffset), numbered from 1
    c.qSeg = Int32Array.from({ length: B * T }, (_, i) => 1 + Math.floor(((i % T) + shape.qOffset) / segLen));
    c.kSeg = Int32Array.from({ length: B * S }, (_, i) => 1 + Math.floor((i % S) / segLen));
  }
  return c;
}

/** Rows t0..t1 (exclusive) of a (B, T, H, D) tensor. */
function queryRows(x: ArrayLike<number>, c: AttnShape, t0: number, t1: number): Float32Array {
  const row = c.Hq * c.D;
  const out = new Float32Array(c.B * (t1 - t0) * row);
  for (let b = 0; b < c.B; b++) {
    for (let i = 0; i < (t1 - t0) * row; i++) out[b * (t1 - t0) * row + i] = x[(b * c.T + t0) * row + i] as number;
  }
  return out;
}

/** lse entries t0..t1 (exclusive) of a (B, H, T) tensor. */
function lseRows(x: ArrayLike<number>, c: AttnShape, t0: number, t1: number): Float32Array {
  const out = new Float32Array(c.B * c.Hq * (t1 - t0));
  for (let bh = 0; bh < c.B * c.Hq; bh++) {
    for (let t = t0; t < t1; t++) out[bh * (t1 - t0) + t - t0] = x[bh * c.T + t] as number;
  }
  return out;
}

for (const { name, level } of isaPaths()) {
  test(`attention matches explicit softmax(QK^T scale + mask) V in PyTorch, with its gradients [${name}]`, () => {
    for (const c of fixtures.attention) {
      const got = withIsa(level, () => attention(c));
      closeRel(`${c.name} out`, got.out, c.out, FWD_TOL);
      closeRel(`${c.name} lse`, got.lse, c.lse, FWD_TOL);
      closeRel(`${c.name} dq`, got.dq, c.dq, GRAD_TOL);
      closeRel(`${c.name} dk`, got.dk, c.dk, GRAD_TOL);
      closeRel(`${c.name} dv`, got.dv, c.dv, GRAD_TOL);
    }
  });
}

test('SIMD attention matches the naive kernel on odd sizes (T, S, head dim, GQA, segments, offsets)', () => {
  const simd = isaPaths().filter((p) => p.level > 0);
  let seed = 1;
  for (const T of ODD_SIZES) {
    const shapes: [Omit<AttnShape, 'scale'>, number | undefined][] = [
      [{ B: 1, T, S: T, Hq: 2, Hkv: 1, D: 64, qOffset: 0, causal: true }, undefined],
      [{ B: 2, T, S: T, Hq: 3, Hkv: 3, D: 7, qOffset: 0, causal: true }, 5],
      [{ B: 1, T, S: T + 6, Hq: 4, Hkv: 2, D: 65, qOffset: 6, causal: true }, undefined],
      [{ B: 1, T, S: T + 3, Hq: 2, Hkv: 2, D: 33, qOffset: 0, causal: false }, undefined],
    ];
    for (const [shape, segLen] of shapes) {
      const c = randomAttention(shape, seed++, segLen);
      const ref = withIsa(0, () => attention(c));
      for (const { name, level } of simd) {
        const got = withIsa(level, () => attention(c));
        const tag = `[${name}] ${JSON.stringify(shape)} seg=${segLen ?? 0}`;
        for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) closeRel(`${tag} ${key}`, got[key], ref[key], 1e-5, 0.1);
      }
    }
  }
});

test('sliding window (Mistral): SIMD equals naive; keys outside the window neither change a query nor get its gradient', () => {
  const simd = isaPaths().filter((p) => p.level > 0);
  let seed = 101;
  for (const T of ODD_SIZES) {
    for (const window of [1, 3, 16, 17, 40]) {
      const shapes: Omit<AttnShape, 'scale'>[] = [
        { B: 1, T, S: T, Hq: 2, Hkv: 1, D: 64, qOffset: 0, causal: true, window },
        { B: 2, T, S: T + 5, Hq: 4, Hkv: 2, D: 9, qOffset: 5, causal: true, window },
      ];
      for (const shape of shapes) {
        const c = randomAttention(shape, seed++);
        const ref = withIsa(0, () => attention(c));
        for (const { name, level } of simd) {
          const got = withIsa(level, () => attention(c));
          const tag = `[${name}] ${JSON.stringify(shape)}`;
          for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) closeRel(`${tag} ${key}`, got[key], ref[key], 1e-5, 0.1);
        }
      }
    }
  }
  // A window at least as long as the sequence changes nothing.
  const c = randomAttention({ B: 1, T: 50, S: 50, Hq: 2, Hkv: 1, D: 16, qOffset: 0, causal: true }, 7);
  for (const { name, level } of isaPaths()) {
    const plain = withIsa(level, () => attention(c));
    const wide = withIsa(level, () => attention({ ...c, window: 50 }));
    for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) assert.deepEqual(bits(wide[key]), bits(plain[key]), `[${name}] ${key}`);
    // Window 8: query 30 sees keys 23..30 only. Changing key 22 leaves it alone; changing key 23 does not.
    const w8 = { ...c, window: 8 };
    const base = withIsa(level, () => attention(w8));
    const row = (o: AttnOutputs, t: number) => bits(o.out.subarray(t * 32, t * 32 + 32));
    for (const [key, seen] of [[22, false], [23, true]] as const) {
      const k2 = Float32Array.from(c.k);
      for (let i = 0; i < 16; i++) k2[key * 16 + i] = (k2[key * 16 + i] as number) + 1;
      const moved = withIsa(level, () => attention({ ...w8, k: k2 }));
      if (seen) assert.notDeepEqual(row(moved, 30), row(base, 30), `[${name}] key ${key} is inside query 30's window`);
      else assert.deepEqual(row(moved, 30), row(base, 30), `[${name}] key ${key} is outside query 30's window`);
    }
    // Only query 49 gets a gradient: keys before 42 get none.
    const dout = Float32Array.from(c.dout, (x, i) => (Math.floor(i / 32) === 49 ? x : 0));
    const g = withIsa(level, () => attention({ ...w8, dout }));
    for (let s = 0; s < 50; s++) {
      const zero = g.dk.subarray(s * 16, s * 16 + 16).every((x) => x === 0);
      assert.equal(zero, s < 42, `[${name}] dk of key ${s}`);
    }
  }
});

test('KV-cache decoding: queries at an offset over a cache equal the matching rows of the full computation', () => {
  const full = randomAttention({ B: 2, T: 70, S: 70, Hq: 4, Hkv: 2, D: 16, qOffset: 0, causal: true }, 11);
  for (const { name, level } of isaPaths()) {
    const ref = withIsa(level, () => attention(full));
    for (const [t0, t1] of [[60, 70], [69, 70], [0, 70], [31, 45]] as const) {
      // the cache holds the first t1 keys in a buffer of 96 rows per batch, NaN beyond them
      const kv = (x: ArrayLike<number>) => queryRows(x, { ...full, T: full.S, Hq: full.Hkv }, 0, t1);
      const step: AttnInputs = {
        ...full, T: t1 - t0, S: t1, qOffset: t0,
        q: queryRows(full.q, full, t0, t1), k: kv(full.k), v: kv(full.v), dout: queryRows(full.dout, full, t0, t1),
      };
      const got = withIsa(level, () => attention(step, 96));
      closeRel(`[${name}] rows ${t0}..${t1} out`, got.out, queryRows(ref.out, full, t0, t1), 1e-6);
      closeRel(`[${name}] rows ${t0}..${t1} lse`, got.lse, lseRows(ref.lse, full, t0, t1), 1e-6);
      assert.ok(got.dk.every(Number.isFinite) && got.dv.every(Number.isFinite), 'NaN cache rows beyond S are never read');
    }
  }
});

test('segment ids isolate packed samples: other segments do not change a query, in forward and backward', () => {
  const c = randomAttention({ B: 1, T: 100, S: 100, Hq: 2, Hkv: 1, D: 16, qOffset: 0, causal: true }, 21);
  const seg = Int32Array.from({ length: 100 }, (_, t) => (t < 40 ? 1 : t < 75 ? 2 : 3));
  c.qSeg = seg;
  c.kSeg = seg;
  // changed keys and values of segment 2
  const k2 = Float32Array.from(c.k), v2 = Float32Array.from(c.v);
  for (let s = 40; s < 75; s++) {
    for (let i = 0; i < 16; i++) {
      k2[s * 16 + i] = (k2[s * 16 + i] as number) * 3 + 1;
      v2[s * 16 + i] = -(v2[s * 16 + i] as number);
    }
  }
  // gradient only on segment 1's queries
  const dout1 = Float32Array.from(c.dout, (x, i) => (Math.floor(i / 32) < 40 ? x : 0));
  for (const { name, level } of isaPaths()) {
    const a = withIsa(level, () => attention({ ...c, dout: dout1 }));
    const b = withIsa(level, () => attention({ ...c, k: k2, v: v2, dout: dout1 }));
    for (let t = 0; t < 100; t++) {
      const same = seg[t] !== 2;
      const rowA = a.out.subarray(t * 32, t * 32 + 32), rowB = b.out.subarray(t * 32, t * 32 + 32);
      if (same) assert.deepEqual(bits(rowB), bits(rowA), `[${name}] query ${t} (segment ${seg[t]}) changed`);
      else assert.notDeepEqual(bits(rowB), bits(rowA), `[${name}] query ${t} should see its own segment's new keys`);
    }
    // keys outside segment 1 get no gradient from segment 1's queries
    for (let s = 40; s < 100; s++) {
      for (let i = 0; i < 16; i++) {
        assert.equal(a.dk[s * 16 + i], 0, `[${name}] dk of key ${s}`);
        assert.equal(a.dv[s * 16 + i], 0, `[${name}] dv of key ${s}`);
      }
    }
  }
});

test('a query with no visible key gets zeros, lse = -inf, and no gradient (no NaN)', () => {
  const c = randomAttention({ B: 1, T: 9, S: 9, Hq: 2, Hkv: 1, D: 8, qOffset: 0, causal: true }, 31);
  c.qSeg = Int32Array.from([1, 1, 1, 7, 2, 2, 2, 2, 2]);   // segment 7 has no keys
  c.kSeg = Int32Array.from([1, 1, 1, 2, 2, 2, 2, 2, 2]);
  for (const { name, level } of isaPaths()) {
    const got = withIsa(level, () => attention(c));
    for (let h = 0; h < 2; h++) {
      assert.equal(got.lse[h * 9 + 3], Number.NEGATIVE_INFINITY, `[${name}] lse`);
      for (let d = 0; d < 8; d++) {
        assert.equal(got.out[(3 * 2 + h) * 8 + d], 0, `[${name}] out`);
        assert.equal(got.dq[(3 * 2 + h) * 8 + d], 0, `[${name}] dq`);
      }
    }
    for (const key of ['out', 'dq', 'dk', 'dv'] as const) assert.ok(got[key].every(Number.isFinite), `[${name}] ${key} finite`);
  }
});

test('attention is bit-identical run to run at 2 threads, equal to 1 thread, and releases its scratch', () => {
  const c = randomAttention({ B: 2, T: 97, S: 97, Hq: 4, Hkv: 2, D: 64, qOffset: 0, causal: true }, 41, 30);
  const before = host.getThreads();
  try {
    for (const { name, level } of isaPaths()) {
      host.setThreads(2);
      const a = withIsa(level, () => attention(c));
      const live = native.memStats().liveBytes;
      const b = withIsa(level, () => attention(c));
      assert.equal(native.memStats().liveBytes, live, `[${name}] scratch released`);
      host.setThreads(1);
      const one = withIsa(level, () => attention(c));
      for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
        assert.deepEqual(bits(b[key]), bits(a[key]), `[${name}] ${key} run to run`);
        assert.deepEqual(bits(one[key]), bits(a[key]), `[${name}] ${key} 1 vs 2 threads`);
      }
    }
  } finally {
    host.setThreads(before);
  }
});

test('attention rejects bad shapes and too-small buffers, naming op, tensor and shape', () => {
  withArena((a) => {
    const B = 1, T = 4, S = 4, D = 8;
    const q = a.zeros(B * T * 4 * D), kv = a.zeros(B * S * 2 * D), out = a.zeros(B * T * 4 * D), lse = a.zeros(B * 4 * T);
    const seg = a.i32([1, 1, 1, 1]);
    const fwd = (Hq: number, Hkv: number, stride: number, k = kv, o = out, qs = 0, ks = 0) =>
      native.attentionForward(q, 0, k, 0, kv, 0, o, 0, lse, 0, qs, 0, ks, 0, B, T, S, Hq, Hkv, D, stride, 0, 0.35, true);
    assert.throws(() => fwd(4, 3, S * 3 * D), /attentionForward: Hq must be a multiple of Hkv \(B=1, T=4, S=4, Hq=4, Hkv=3, D=8\)/);
    assert.throws(() => fwd(4, 0, S * 2 * D), /attentionForward: Hq, Hkv and D must be >= 1/);
    assert.throws(() => fwd(4, 2, S * 2 * D - 1), /attentionForward: kvBatchStride 63 is smaller than S\*Hkv\*D = 64/);
    assert.throws(() => fwd(4, 2, S * 2 * D, a.zeros(10)), /attentionForward: buffer 'k \(1, 4, 2, 8\)' too small/);
    assert.throws(() => fwd(4, 2, S * 2 * D, kv, a.zeros(10)), /attentionForward: buffer 'out \(1, 4, 4, 8\)' too small/);
    assert.throws(() => fwd(4, 2, S * 2 * D, kv, out, seg, 0), /attentionForward: qSeg and kSeg must be given together/);
    assert.throws(() => fwd(4, 2, S * 2 * D, kv, out, seg, a.i32([1])), /attentionForward: buffer 'kSeg \(1, 4\)' too small/);
    // a cache with a larger batch stride needs (B - 1) * stride + S * Hkv * D elements
    assert.throws(
      () => native.attentionForward(q, 0, kv, 0, kv, 0, out, 0, lse, 0, 0, 0, 0, 0, 2, 2, S, 4, 2, D, 2 * S * 2 * D, 0, 0.35, true),
      /attentionForward: buffer 'k \(2, 4, 2, 8\)' too small/,
    );
    const small = a.zeros(10);
    assert.throws(
      () => native.attentionBackward(q, 0, kv, 0, kv, 0, out, 0, lse, 0, out, 0, q, 0, small, 0, kv, 0, 0, 0, 0, 0, B, T, S, 4, 2, D, S * 2 * D, 0, 0.35, true),
      /attentionBackward: buffer 'dk \(1, 4, 2, 8\)' too small/,
    );
  });
});

test('empty shapes: no keys gives zeros and lse = -inf; no queries or batches is a no-op', () => {
  for (const { name, level } of isaPaths()) {
    const noKeys = withIsa(level, () => attention(randomAttention({ B: 2, T: 3, S: 0, Hq: 2, Hkv: 1, D: 8, qOffset: 0, causal: true }, 51)));
    assert.ok(noKeys.out.every((x) => x === 0) && noKeys.dq.every((x) => x === 0), `[${name}] zeros`);
    assert.ok(noKeys.lse.every((x) => x === Number.NEGATIVE_INFINITY), `[${name}] lse`);
    const noQueries = withIsa(level, () => attention(randomAttention({ B: 1, T: 0, S: 5, Hq: 2, Hkv: 1, D: 8, qOffset: 0, causal: true }, 52)));
    assert.ok(noQueries.dk.every((x) => x === 0) && noQueries.dv.every((x) => x === 0), `[${name}] dk, dv zero`);
    const noBatch = withIsa(level, () => attention(randomAttention({ B: 0, T: 4, S: 4, Hq: 2, Hkv: 1, D: 8, qOffset: 0, causal: true }, 53)));
    assert.equal(noBatch.out.length, 0);
  }
});
