// Every differentiable op, and the backward-rule table keyed by op name (ops/table.ts).
export { BACKWARD_RULES } from './table.ts';
export {
  add, sub, mul, div, pow, maximum, neg, exp, log, sqrt, rsqrt, silu, gelu, scale, powScalar, addScalar, square, relu, where,
} from './elementwise.ts';
export { sum, mean, max, sumAll, softmax, logSoftmax, sumTo } from './reduce.ts';
export { matmul, mT } from './matmul.ts';
export { frozenLinear } from './frozen-linear.ts';
export { loraLinear, type LoraLinearOptions } from './lora-linear.ts';
export { type DropoutKeys, applyDropout, drawDropout, dropoutMaskOf } from './dropout.ts';
export { reshape, permute, transpose, slice, expand, contiguous, concat, cast, copyInto } from './views.ts';
export { embedding, rmsNorm, layerNorm, rope, swiglu, attention, crossEntropy } from './fused.ts';
export type { AttentionOptions, CrossEntropyOptions, CrossEntropyResult, RopeTables } from './fused.ts';
export { inRecomputeForward, recompute } from './recompute.ts';
