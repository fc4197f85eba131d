// y = x·Wᵀ for a frozen weight W held in low precision (NF4, int8, bf16; see frozen-gemm.ts): the weight gets no
// gradient, x gets dx = dy·W. Inside autocast('bfloat16') both GEMMs run in bf16 compute.
import { record } from '../autograd.ts';
import { bf16Compute } from '../autocast.ts';
import { type RowSource, frozenLinearForward, frozenLinearInputGrad } from '../frozen-gemm.ts';
import type { Tensor } from '../tensor.ts';
import { type Rule, dense, expectF32, shapeError } from './util.ts';

interface FrozenLinearCtx { w: RowSource; bf16: boolean }

/** x (..., K) @ W (N, K)ᵀ → (..., N), W frozen. */
export function frozenLinear(x: Tensor, w: RowSource): Tensor {
  expectF32('frozenLinear', ['x', x]);
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== w.cols) {
    throw shapeError('frozenLinear', `input [${x.shape.join(', ')}] does not end in the weight's ${w.cols} columns`);
  }
  const bf16 = bf16Compute();
  const out = frozenLinearForward(dense(x), w, bf16);
  const ctx: FrozenLinearCtx = { w, bf16 };
  return record(out, 'frozenLinear', [x], ctx);
}

export const rules = {
  frozenLinear: ((c, g) => [frozenLinearInputGrad(dense(g), c.w, c.bf16)]) as Rule<FrozenLinearCtx>,
};
