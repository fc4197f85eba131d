// Every differentiable op, and the backward-rule table keyed by op name (complete by type).
import { installAccumulators } from '../autograd.ts';
import type { OpName } from '../op-names.ts';
import { Tensor, copyContiguous } from '../tensor.ts';
import * as elementwise from './elementwise.ts';
import * as fused from './fused.ts';
import * as matmul from './matmul.ts';
import * as recompute from './recompute.ts';
import * as reduce from './reduce.ts';
import type { Rule } from './util.ts';
import * as views from './views.ts';

/** One backward rule per primitive: a missing or extra entry fails to compile. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const BACKWARD_RULES: { readonly [K in OpName]: Rule<any> } = {
  ...elementwise.rules,
  ...reduce.rules,
  ...matmul.rules,
  ...views.rules,
  ...fused.rules,
  ...recompute.rules,
};

installAccumulators({
  accumulate: elementwise.accumulateInto,
  add: (a, b) => {
    const out = copyContiguous(a);
    elementwise.accumulateInto(out, b);
    return out;
  },
  persistentCopy: (g) => {
    const out = Tensor.empty(g.shape, g.dtype, { persistent: true, backend: g.backend });
    views.copyInto(g, out, false);
    return out;
  },
});

export {
  add, sub, mul, div, pow, maximum, neg, exp, log, sqrt, rsqrt, silu, gelu, scale, powScalar, addScalar, square, relu, where,
} from './elementwise.ts';
export { sum, mean, max, sumAll, softmax, logSoftmax, sumTo } from './reduce.ts';
export { matmul, mT } from './matmul.ts';
export { reshape, permute, transpose, slice, expand, contiguous, concat, cast, copyInto } from './views.ts';
export { embedding, rmsNorm, layerNorm, rope, swiglu, attention, crossEntropy } from './fused.ts';
export type { AttentionOptions, CrossEntropyOptions, CrossEntropyResult, RopeTables } from './fused.ts';
export { recompute } from './recompute.ts';
