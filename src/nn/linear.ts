// Linear layer as HF stores it: weight (out, in), optional bias (out); y = x @ weightᵀ + bias.
import { add, matmul, mT, type Tensor } from '../tensor/index.ts';

export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const y = matmul(x, mT(weight));
  return bias ? add(y, bias) : y;
}
