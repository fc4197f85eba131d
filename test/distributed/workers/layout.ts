// Shared by the distributed workers and tests: a small flat layout with odd sizes whose shard boundary
// (at 2 ranks) falls inside a tensor, and deterministic exactly-summable gradients per rank and step.
import { type FlatLayout, flatLayout } from '../../../src/tensor/index.ts';

export function testLayout(): FlatLayout {
  return flatLayout([
    { name: 'embed.weight', shape: [3] },
    { name: 'layers.0.attn.weight', shape: [17, 5] },
    { name: 'layers.0.norm.weight', shape: [1] },
    { name: 'layers.0.mlp.weight', shape: [8, 8] },
    { name: 'layers.1.mlp.weight', shape: [7, 9] },
    { name: 'frozen.weight', shape: [10] },
    { name: 'final_norm.weight', shape: [5] },
    { name: 'lm_head.weight', shape: [4, 10] },
  ]);
}

/** Gradient of element i on rank r at step s: multiples of 1/64, so sums over ranks are exact. */
export function gradValue(r: number, s: number, i: number): number {
  return (((i * 7 + r * 13 + s * 5) % 31) - 15) / 64;
}

/** The gradient buffer contents (padding stays zero) of rank r at step s. */
export function gradsOf(layout: FlatLayout, r: number, s: number): Float32Array {
  const out = new Float32Array(layout.size);
  layout.names.forEach((_, t) => {
    const off = layout.offsets[t] as number;
    const n = (layout.shapes[t] as number[]).reduce((a, b) => a * b, 1);
    for (let i = off; i < off + n; i++) out[i] = gradValue(r, s, i);
  });
  return out;
}

export function initialParams(layout: FlatLayout): Float32Array {
  const out = new Float32Array(layout.size);
  layout.names.forEach((_, t) => {
    const off = layout.offsets[t] as number;
    const n = (layout.shapes[t] as number[]).reduce((a, b) => a * b, 1);
    for (let i = off; i < off + n; i++) out[i] = Math.sin(i) * 0.5;
  });
  return out;
}
