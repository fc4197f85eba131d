// The one linear layer every model calls, by the module's HF name, so that what a weight is (trainable,
// frozen in bf16, later quantized or carrying a LoRA adapter) is decided here, not in the model files.
// HF layouts: Llama's nn.Linear stores weight (out, in), y = x @ weightᵀ + bias; GPT-2's Conv1D stores
// weight (in, out), y = x @ weight + bias.
// A module with a LoRA adapter (lora.ts) adds s·dropout(x)·Aᵀ·Bᵀ, A (r, in) and B (out, r) in both layouts.
import { Tensor, add, frozenLinear, inRecomputeForward, isGradEnabled, matmul, mT, mul, scale } from '../tensor/index.ts';
import type { ParameterSet } from './parameters.ts';
import { loraA, loraB } from './lora.ts';
import { addRowAdapters } from './row-lora.ts';

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
  // never widened whole (QLoRA's frozen base).
  const rows = opts.layout !== 'in,out' ? weights.frozenRows(`${name}.weight`) : null;
  let y: Tensor;
  if (rows) {
    y = frozenLinear(x, rows);
  } else {
    const w = weights.weight(`${name}.weight`);
    y = matmul(x, opts.layout === 'in,out' ? w : mT(w));
  }
  // Serving several adapters at once (row-lora.ts): each row adds its own adapter's delta; else y as it is.
  const base = addRowAdapters(opts.bias ? add(y, weights.weight(`${name}.bias`)) : y, x, name);
  const lora = weights.lora?.modules.get(name);
  if (!lora) return base;
  // Dropout on the adapter's input only while training (gradients recorded, or a recompute block's first pass,
  // which backward replays with the same masks), inverted as in PyTorch.
  let xa = x;
  if (lora.dropout > 0 && (isGradEnabled() || inRecomputeForward())) {
    const keepP = 1 - lora.dropout;
    const rng = (weights.lora as NonNullable<ParameterSet['lora']>).rng;
    const n = x.shape.reduce((a, b) => a * b, 1);
    const mask = new Float32Array(n);
    for (let i = 0; i < n; i++) mask[i] = rng.uniform() < keepP ? 1 / keepP : 0;
    xa = mul(x, Tensor.from(mask, [...x.shape]));
  }
  const delta = matmul(matmul(xa, mT(weights.weight(loraA(name)))), mT(weights.weight(loraB(name))));
  return add(base, scale(delta, lora.scale));
}
