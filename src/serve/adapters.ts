// LoRA adapters for serving beside one another over one base model: a PEFT folder read and checked against
// the base (targets, ranks, every tensor's shape), its A and s·B held as persistent tensors for row-lora.ts.
import type { CausalLM } from '../models/model.ts';
import type { RowAdapter, RowAdapterModule } from '../nn/row-lora.ts';
import { Tensor } from '../tensor/index.ts';
import { readAdapter } from '../train/lora-io.ts';

/** Loads the adapter in `dir` as the served model `name`; a FormatError names the file and field or tensor. */
export function loadServedAdapter(model: CausalLM, name: string, dir: string): RowAdapter {
  const { modules } = readAdapter(model, dir);
  const out = new Map<string, RowAdapterModule>();
  for (const { module: m, a, b } of modules) {
    const scaledB = b.map((v) => v * m.scale);
    out.set(m.module, {
      a: Tensor.from(a, [m.rank, m.inFeatures], 'float32', { persistent: true }),
      scaledB: Tensor.from(scaledB, [m.outFeatures, m.rank], 'float32', { persistent: true }),
    });
  }
  return { name, modules: out };
}
