// Reference fused AdamW step, written to native/kernels/optimizer.cc: PyTorch's arithmetic order
// (torch.optim.AdamW, single-tensor) in fp32 with its scalars prepared in double, every float operation
// rounded with Math.fround, so results are bit-exact with the addon's scalar path.
import type { ByteOffset, Handle } from '../binding.ts';
import { dim, f32arg, fail } from './args.ts';
import { f32 } from './memory.ts';

const fr = Math.fround;

/** A float as C++'s std::to_string prints it ("%f"), for the addon's messages. */
function cFixed(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  return v.toFixed(6);
}

/**
 * Per element: g = g * gradScale; p = p * (1 - lr*wd); m = m*beta1 + (1-beta1)*g; v = v*beta2 + (1-beta2)*g*g;
 * p = p + (-lr/bc1) * (m / (sqrt(v) / sqrt(bc2) + eps)), with bc1 = 1 - beta1^t and bc2 = 1 - beta2^t.
 */
export function adamw(
  p: Handle, pOff: ByteOffset, g: Handle, gOff: ByteOffset, m: Handle, mOff: ByteOffset, v: Handle, vOff: ByteOffset,
  n: number, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
  bc1: number, bc2: number, gradScale: number,
): void {
  const op = 'adamw';
  dim(op, 'n', n);
  const ps = f32(op, 'p', p, pOff, n, true);
  const gs = f32(op, 'g', g, gOff, n, false);
  const ms = f32(op, 'm', m, mOff, n, true);
  const vs = f32(op, 'v', v, vOff, n, true);
  const lrF = f32arg(op, 'lr', lr), b1 = f32arg(op, 'beta1', beta1), b2 = f32arg(op, 'beta2', beta2);
  const epsF = f32arg(op, 'eps', eps), wd = f32arg(op, 'weightDecay', weightDecay);
  const c1 = f32arg(op, 'bc1', bc1), c2 = f32arg(op, 'bc2', bc2), scale = f32arg(op, 'gradScale', gradScale);
  if (!(c1 > 0 && c1 <= 1) || !(c2 > 0 && c2 <= 1)) {
    fail(op, `bias corrections must be in (0, 1] (bc1 = 1 - beta1^t, bc2 = 1 - beta2^t), got bc1 ${cFixed(c1)}, bc2 ${cFixed(c2)}`);
  }
  const decay = fr(1 - lrF * wd);
  const oneB1 = fr(1 - b1), oneB2 = fr(1 - b2);
  const negStep = fr(-lrF / c1);
  const bc2Sqrt = fr(Math.sqrt(c2));
  for (let i = 0; i < n; i++) {
    const gi = fr(gs[i]! * scale);
    const pi = fr(ps[i]! * decay);
    const mi = fr(fr(ms[i]! * b1) + fr(oneB1 * gi));
    const vi = fr(fr(vs[i]! * b2) + fr(fr(oneB2 * gi) * gi));
    const denom = fr(fr(fr(Math.sqrt(vi)) / bc2Sqrt) + epsF);
    ps[i] = fr(pi + fr(negStep * fr(mi / denom)));
    ms[i] = mi;
    vs[i] = vi;
  }
}
