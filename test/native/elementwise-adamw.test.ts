// The fused AdamW step against a JS reimplementation of torch.optim.AdamW (decoupled weight decay) over
// several steps: in float64 with a tolerance, and in float32 with torch's operation order, bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, readF32, relError, randomF32, isaPaths, withIsa, ODD_SIZES } from '../helpers/native.ts';

interface Hyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradScale: number;
}

const HYPER: Hyper = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5 };
const STEPS = 5;

/** torch.optim.AdamW's single-tensor update, one step t (1-based), in float64. */
function adamwRef64(p: Float64Array, g: Float32Array, m: Float64Array, v: Float64Array, t: number, h: Hyper): void {
  const bc1 = 1 - h.beta1 ** t;
  const bc2 = 1 - h.beta2 ** t;
  for (let i = 0; i < p.length; i++) {
    const gi = (g[i] as number) * h.gradScale;
    p[i] = (p[i] as number) * (1 - h.lr * h.weightDecay);
    m[i] = (m[i] as number) * h.beta1 + (1 - h.beta1) * gi;
    v[i] = (v[i] as number) * h.beta2 + (1 - h.beta2) * gi * gi;
    const denom = Math.sqrt(v[i] as number) / Math.sqrt(bc2) + h.eps;
    p[i] = (p[i] as number) - (h.lr / bc1) * ((m[i] as number) / denom);
  }
}

/** The same step in float32, one rounding per torch operation (scalars prepared in double, then float). */
function adamwRef32(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, t: number, h: Hyper): void {
  const f = Math.fround;
  const lr = f(h.lr);
  const bc1 = f(1 - h.beta1 ** t);  // the caller's float64 bias corrections, passed as float
  const bc2 = f(1 - h.beta2 ** t);
  const decay = f(1 - lr * f(h.weightDecay));
  const oneB1 = f(1 - f(h.beta1));
  const oneB2 = f(1 - f(h.beta2));
  const negStep = f(-lr / bc1);
  const bc2Sqrt = f(Math.sqrt(bc2));
  for (let i = 0; i < p.length; i++) {
    const gi = f((g[i] as number) * f(h.gradScale));
    const pi = f((p[i] as number) * decay);
    const mi = f(f((m[i] as number) * f(h.beta1)) + f(oneB1 * gi));
    const vi = f(f((v[i] as number) * f(h.beta2)) + f(f(oneB2 * gi) * gi));
    const denom = f(f(f(Math.sqrt(vi)) / bc2Sqrt) + f(h.eps));
    p[i] = f(pi + f(negStep * f(mi / denom)));
    m[i] = mi;
    v[i] = vi;
  }
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.every((x, i) => x === ub[i]);
}

test('adamw matches torch.optim.AdamW over several steps on every ISA path', () => {
  for (const n of [...ODD_SIZES, 40_001]) {
    const p0 = randomF32(n, n + 1);
    const grads = Array.from({ length: STEPS }, (_, s) => randomF32(n, 100 * n + s, -2, 2));
    // float64 and float32 references of the same trajectory.
    const p64 = Float64Array.from(p0);
    const m64 = new Float64Array(n);
    const v64 = new Float64Array(n);
    const p32 = Float32Array.from(p0);
    const m32 = new Float32Array(n);
    const v32 = new Float32Array(n);
    grads.forEach((g, s) => {
      adamwRef64(p64, g, m64, v64, s + 1, HYPER);
      adamwRef32(p32, g, m32, v32, s + 1, HYPER);
    });
    for (const isa of isaPaths()) {
      withIsa(isa.level, () => {
        const hp = toNative(p0);
        const hm = native.alloc(n * 4, true);
        const hv = native.alloc(n * 4, true);
        const hg = native.alloc(n * 4, false);
        try {
          grads.forEach((g, s) => {
            const t = s + 1;
            native.write(hg, 0, g);
            native.adamw(hp, 0, hg, 0, hm, 0, hv, 0, n, HYPER.lr, HYPER.beta1, HYPER.beta2, HYPER.eps, HYPER.weightDecay,
              1 - HYPER.beta1 ** t, 1 - HYPER.beta2 ** t, HYPER.gradScale);
          });
          const p = readF32(hp, n);
          const m = readF32(hm, n);
          const v = readF32(hv, n);
          const what = `n=${n} on ${isa.name}`;
          assert.ok(relError(p, p64) <= 1e-6, `${what}: p error ${relError(p, p64)}`);
          assert.ok(relError(m, m64) <= 1e-5,  // m sums signed gradients: cancellation
           `${what}: m error ${relError(m, m64)}`);
          assert.ok(relError(v, v64) <= 1e-6, `${what}: v error ${relError(v, v64)}`);
          assert.ok(sameBits(p, p32) && sameBits(m, m32) && sameBits(v, v32), `${what}: not bit-identical to torch's float32 order`);
        } finally {
          for (const h of [hp, hm, hv, hg]) native.free(h);
        }
      });
    }
  }
});

test('adamw rejects bad bias corrections and short buffers', () => {
  const h = native.alloc(64, true);
  const r = native.alloc(64, true);
  try {
    const args = [0.1, 0.9, 0.999, 1e-8, 0] as const;
    assert.throws(() => native.adamw(h, 0, h, 0, h, 0, h, 0, 4, ...args, 0, 1, 1), /adamw: bias corrections must be in \(0, 1\]/);
    assert.throws(() => native.adamw(h, 0, h, 0, h, 0, r, 0, 17, ...args, 0.1, 0.001, 1), /adamw: buffer 'p' too small/);
    assert.throws(() => native.adamw(h, 0, h, 0, h, 0, r, 4, 16, ...args, 0.1, 0.001, 1), /adamw: buffer 'v' too small/);
  } finally {
    native.free(h);
    native.free(r);
  }
});
