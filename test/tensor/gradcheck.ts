// Finite-difference gradient checking for the op harness: per-coordinate on small inputs, directional on
// larger ones, with the loss L = Σ out ⊙ r for a fixed random r (so d L / d out = r).
import { Tensor, backward, scope, noGrad } from '../../src/tensor/index.ts';
import { randomF32 } from '../helpers/native.ts';

export interface GradInput {
  data: Float32Array | Int32Array;
  shape: number[];
  dtype?: 'float32' | 'int32';
  /** Differentiable (default true for float32). */
  grad?: boolean;
}

export interface GradCheckResult {
  /** Relative error between analytic and numeric derivatives (‖Δ‖/‖numeric‖ over all checked numbers). */
  error: number;
  checked: number;
}

function makeInputs(inputs: GradInput[], withGrad: boolean): Tensor[] {
  return inputs.map((i) => {
    const t = Tensor.from(i.data, i.shape, i.dtype ?? 'float32');
    if (withGrad && (i.dtype ?? 'float32') === 'float32' && i.grad !== false) t.requireGrad();
    return t;
  });
}

/** L(x) in float64 for the given input values. */
function lossAt(fn: (xs: Tensor[]) => Tensor, inputs: GradInput[], r: Float32Array): number {
  return scope(() =>
    noGrad(() => {
      const out = fn(makeInputs(inputs, false)).toArray() as Float32Array;
      let s = 0;
      for (let i = 0; i < out.length; i++) s += (out[i] as number) * (r[i] as number);
      return s;
    }),
  );
}

export function gradCheck(fn: (xs: Tensor[]) => Tensor, inputs: GradInput[], opts: { h?: number; seed?: number; directions?: number } = {}): GradCheckResult {
  const h = opts.h ?? 1e-2;
  const seed = opts.seed ?? 7;
  // Analytic gradients.
  const { grads, r } = scope(() => {
    const xs = makeInputs(inputs, true);
    const out = fn(xs);
    const rr = randomF32(out.size, seed, -1, 1);
    const g = Tensor.from(rr, out.shape);
    backward(out, g);
    const gs = xs.map((x) => (x.requiresGrad && x.grad ? (x.grad.toArray() as Float32Array) : null));
    for (const x of xs) x.grad?.release();
    return { grads: gs, r: rr };
  });
  const diffIdx = inputs.map((inp, k) => ((inp.dtype ?? 'float32') === 'float32' && inp.grad !== false ? k : -1)).filter((k) => k >= 0);
  const total = diffIdx.reduce((s, k) => s + (inputs[k] as GradInput).data.length, 0);
  let num2 = 0;
  let diff2 = 0;
  let checked = 0;
  const perturbed = (k: number, dir: Float32Array, sign: number): GradInput[] =>
    inputs.map((inp, j) => {
      if (j !== k) return inp;
      const d = new Float32Array(inp.data as Float32Array);
      for (let i = 0; i < d.length; i++) d[i] = (d[i] as number) + sign * h * (dir[i] as number);
      return { ...inp, data: d };
    });
  if (total <= 64) {
    for (const k of diffIdx) {
      const inp = inputs[k] as GradInput;
      const g = grads[k];
      for (let i = 0; i < inp.data.length; i++) {
        const dir = new Float32Array(inp.data.length);
        dir[i] = 1;
        const numeric = (lossAt(fn, perturbed(k, dir, 1), r) - lossAt(fn, perturbed(k, dir, -1), r)) / (2 * h);
        const analytic = g ? (g[i] as number) : 0;
        num2 += numeric * numeric;
        diff2 += (numeric - analytic) ** 2;
        checked++;
      }
    }
  } else {
    const dirs = opts.directions ?? 3;
    for (let d = 0; d < dirs; d++) {
      for (const k of diffIdx) {
        const inp = inputs[k] as GradInput;
        const dir = randomF32(inp.data.length, seed + 101 * (d + 1) + k, -1, 1);
        const numeric = (lossAt(fn, perturbed(k, dir, 1), r) - lossAt(fn, perturbed(k, dir, -1), r)) / (2 * h);
        const g = grads[k];
        let analytic = 0;
        if (g) for (let i = 0; i < dir.length; i++) analytic += (g[i] as number) * (dir[i] as number);
        num2 += numeric * numeric;
        diff2 += (numeric - analytic) ** 2;
        checked++;
      }
    }
  }
  return { error: Math.sqrt(diff2 / Math.max(num2, 1e-30)), checked };
}
