// The one linear layer every model calls, by the module's HF name, so that what a weight is (trainable,
// frozen in bf16, later quantized or carrying a LoRA adapter) is decided here, not in the model files.
// HF layouts: Llama's nn.Linear stores weight (out, in), y = x @ weightᵀ + bias; GPT-2's Conv1D stores
// weight (in, out), y = x @ weight + bias.
// A module with a LoRA adapter (lora.ts) adds s·dropout(x)·Aᵀ·Bᵀ, A (r, in) and B (out, r) in both layouts.
import { type Rng, type Tensor, add, drawDropout, dropoutMaskOf, frozenLinear, inRecomputeForward, isGradEnabled, loraLinear, matmul, mT, mul, scale } from '../tensor/index.ts';
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
  const lora = weights.lora?.modules.get(name);
  // A frozen (out, in) base with an adapter: base and adapter term in one op, no out-wide temporaries (ops/lora-linear.ts).
  if (lora && opts.layout !== 'in,out' && weights.isFrozen(`${name}.weight`)) {
    const w = rows ?? weights.weight(`${name}.weight`);
    const y = loraLinear(x, w, weights.weight(loraA(name)), weights.weight(loraB(name)), { scale: lora.scale, dropout: dropoutOf(weights, lora.dropout) });
    return opts.bias ? add(y, weights.weight(`${name}.bias`)) : y;
  }
  let y: Tensor;
  if (rows) {
    y = frozenLinear(x, rows);
  } else {
    const w = weights.weight(`${name}.weight`);
    y = matmul(x, opts.layout === 'in,out' ? w : mT(w));
  }
  // Serving several adapters at once (row-lora.ts): each row adds its own adapter's delta; else y as it is.
  const base = addRowAdapters(opts.bias ? add(y, weights.weight(`${name}.bias`)) : y, x, name);
  if (!lora) return base;
  const drop = dropoutOf(weights, lora.dropout);
  const xa = drop ? mul(x, dropoutMaskOf(x, drawDropout(drop.rng, drop.p))) : x;
  const delta = matmul(matmul(xa, mT(weights.weight(loraA(name)))), mT(weights.weight(loraB(name))));
  return add(base, scale(delta, lora.scale));
}

/**
 * Dropout on the adapter's input only while training (gradients recorded, or a recompute block's first pass,
 * which backward replays with the same masks), inverted as in PyTorch, drawn from the adapters' Rng: its
 * probability and stream, or null.
 */
function dropoutOf(weights: ParameterSet, dropout: number): { p: number; rng: Rng } | null {
  if (dropout <= 0 || !(isGradEnabled() || inRecomputeForward())) return null;
  return { p: dropout, rng: (weights.lora as NonNullable<ParameterSet['lora']>).rng };
}
