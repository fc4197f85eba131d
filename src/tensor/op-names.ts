// The closed set of differentiable primitive ops. Each has exactly one backward rule (ops/*.ts); the
// table in op-table.ts is typed Record<OpName, ...>, so a missing rule fails to compile.
export const OP_NAMES = [
  // elementwise binary (broadcasting)
  'add', 'sub', 'mul', 'div', 'pow',
  // elementwise unary
  'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'silu', 'gelu', 'scale', 'powScalar', 'addScalar', 'square', 'relu',
  'where',
  // reductions over one axis
  'sum', 'mean', 'max',
  'softmax', 'logSoftmax',
  'matmul',
  // a matmul against a frozen low-precision weight (NF4, int8, bf16): gradient for the input only
  'frozenLinear',
  // a linear over a frozen weight plus its LoRA adapter's term (gradients for the input, A and B)
  'loraLinear',
  // views and copies
  'reshape', 'transpose', 'permute', 'slice', 'expand', 'contiguous', 'concat', 'cast',
  // fused NN primitives
  'embedding', 'rmsNorm', 'layerNorm', 'rope', 'swiglu', 'attention', 'crossEntropy',
  // activation recompute of a block
  'recompute',
] as const;

export type OpName = (typeof OP_NAMES)[number];
