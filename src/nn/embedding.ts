// The token embedding lookup by the table's HF name. A trainable or float32 table goes through the embedding op
// (its gradient scatters into the table); a frozen low-precision table (a bf16 LoRA/QLoRA base: NF4 and int8
// keep embeddings in bf16) is read a row per token from its storage, so no fp32 copy of the whole table
// (32000 × 4096 × 4 bytes = 500 MiB at Llama-2-7B) is made on every forward.
import { ShapeError } from '../errors.ts';
import { Tensor, embedding } from '../tensor/index.ts';
import type { ParameterSet } from './parameters.ts';

/** x = table[ids] for int32 ids (...): returns (..., dim). */
export function embed(ids: Tensor, weights: ParameterSet, name: string): Tensor {
  const rows = weights.frozenRows(name);
  if (!rows) return embedding(weights.weight(name), ids);
  if (ids.dtype !== 'int32') throw new ShapeError(`embedding ${name}: ids must be int32, got ${ids.dtype}`, { where: name });
  const D = rows.cols;
  const ids32 = ids.toArray() as Int32Array;
  const out = Tensor.empty([...ids.shape, D], 'float32', { backend: rows.backend });
  for (let i = 0; i < ids32.length; i++) {
    const id = ids32[i] as number;
    if (!(id >= 0 && id < rows.rows)) throw new ShapeError(`embedding ${name}: token id ${id} (position ${i}) is outside the vocabulary of ${rows.rows}`, { where: name });
    rows.dequantizeRows(id, 1, new Tensor(out.storage, [1, D], [D, 1], out.offset + i * D, 'float32'));
  }
  return out;
}
