// The one linear layer every model calls, by the module's HF name, so that what a weight is (trainable,
// frozen in bf16, later quantized or carrying a LoRA adapter) is decided here, not in the model files.
// HF layouts: Llama's nn.Linear stores weight (out, in), y = x @ weightᵀ + bias; GPT-2's Conv1D stores
// weight (in, out), y = x @ weight + bias.
import { add, frozenLinear, matmul, mT, type Tensor } from '../tensor/index.ts';
import type { ParameterSet } from './parameters.ts';

export interface LinearOptions {
  /** How the weight is stored: 'out,in' (nn.Linear, default) or 'in,out' (GPT-2's Conv1D). */
  layout?: 'out,in' | 'in,out';
  /** Whether `${name}.bias` exists. */
  bias?: boolean;
}

/** GPT-2's Conv1D: weight (in, out) and a bias. */
export const CONV1D: LinearOptions = { layout: 'in,out', bias: true };

/** y = x @ W(name)ᵀ + b for the module `name` (its weight is `${name}.weight`, its bias `${name}.bias`). */
export function linear(x: Tensor, weights: ParameterSet, name: string, opts: LinearOptions = {}): Tensor {
  // A frozen (out, in) weight in bfloat16 or quantized (NF4, int8) is read panel by panel by the GEMM itself,
  // never widened whole.
  const rows = opts.layout !== 'in,out' ? weights.frozenRows(`${name}.weight`) : null;
  if (rows) {
    const y = frozenLinear(x, rows);
    return opts.bias ? add(y, weights.weight(`${name}.bias`)) : y;
  }
  const w = weights.weight(`${name}.weight`);
  const y = matmul(x, opts.layout === 'in,out' ? w : mT(w));
  return opts.bias ? add(y, weights.weight(`${name}.bias`)) : y;
}
