// Per-row LoRA adapters, for serving several adapters over one base model in one forward (multi-LoRA
// serving): each row of the batch names its adapter, or none (the base), and linear() adds to each row its
// own adapter's s·x·Aᵀ·Bᵀ. The base GEMM stays one batched GEMM over all rows; per module, the rows of each
// adapter are gathered, go through that adapter's two small GEMMs, and one more gather puts every row's delta
// (zero for a row whose adapter does not adapt the module) in its place. Inference only: the rows are set
// for one forward by withRowAdapters(), and linear() consults them only while they are set.
import { ConfigError, ShapeError } from '../errors.ts';
import { Tensor, add, concat, contiguous, embedding, isGradEnabled, matmul, mT, reshape } from '../tensor/index.ts';

/** One adapted module of a served adapter: A (r, in) and B (out, r) already multiplied by the scale s. */
export interface RowAdapterModule {
  a: Tensor;
  scaledB: Tensor;
}

/** A LoRA adapter held apart from the base's parameters, by module name. */
export interface RowAdapter {
  name: string;
  modules: ReadonlyMap<string, RowAdapterModule>;
}

/** One adapter of a batch: the rows that use it and (once made) their indices as a tensor. */
interface Group {
  adapter: RowAdapter;
  rows: number[];
  ids: Tensor | null;
}

/** The adapters present in one forward's rows, and the index tensors that gather and place their rows. */
class RowAdapterBatch {
  /** Distinct adapters, in order of first row. */
  private readonly groups: Group[] = [];
  /** Per set of adapters adapting a module (a key of group indices), where each row's delta sits. */
  private readonly placements = new Map<string, Tensor>();

  constructor(private readonly rows: readonly (RowAdapter | null)[]) {
    rows.forEach((adapter, r) => {
      if (adapter === null) return;
      const g = this.groups.find((x) => x.adapter === adapter);
      if (g) g.rows.push(r);
      else this.groups.push({ adapter, rows: [r], ids: null });
    });
  }

  /** base (B, ..., out) plus each row's adapter delta of `module` on x (B, ..., in). */
  apply(base: Tensor, x: Tensor, module: string): Tensor {
    const used: number[] = [];
    this.groups.forEach((g, i) => {
      if (g.adapter.modules.has(module)) used.push(i);
    });
    if (used.length === 0) return base;
    const B = this.rows.length;
    if (x.shape[0] !== B) throw new ShapeError(`row adapters: ${module} input is [${x.shape.join(', ')}], the batch has ${B} rows`, { where: module });
    const delta = (xs: Tensor, m: RowAdapterModule): Tensor => matmul(matmul(xs, mT(m.a)), mT(m.scaledB));
    const only = this.groups[used[0] as number];
    if (used.length === 1 && only && only.rows.length === B) return add(base, delta(x, only.adapter.modules.get(module) as RowAdapterModule));
    // Rows flattened: (B, L·in) with L the positions per row (1 when decoding).
    const L = x.size / (B * (x.shape[x.ndim - 1] as number));
    const inF = x.shape[x.ndim - 1] as number;
    const outF = base.shape[base.ndim - 1] as number;
    const flat = reshape(contiguous(x), [B, L * inF]); // (B, L·in)
    const pieces: Tensor[] = [Tensor.zeros([1, L * outF])];
    for (const i of used) {
      const g = this.groups[i] as Group;
      g.ids ??= Tensor.from(Int32Array.from(g.rows), [g.rows.length], 'int32');
      const xg = reshape(embedding(flat, g.ids), [g.rows.length * L, inF]); // (n·L, in)
      pieces.push(reshape(delta(xg, g.adapter.modules.get(module) as RowAdapterModule), [g.rows.length, L * outF])); // (n, L·out)
    }
    const placed = reshape(embedding(concat(pieces, 0), this.placement(used)), base.shape); // (B, ..., out)
    return add(base, placed);
  }

  /** For each row, its row in [zeros; deltas of the used groups in order]: 0 when no used group holds it. */
  private placement(used: readonly number[]): Tensor {
    const key = used.join(',');
    let t = this.placements.get(key);
    if (!t) {
      const at = new Int32Array(this.rows.length);
      let next = 1;
      for (const i of used) for (const r of (this.groups[i] as Group).rows) at[r] = next++;
      t = Tensor.from(at, [at.length], 'int32');
      this.placements.set(key, t);
    }
    return t;
  }
}

let current: RowAdapterBatch | null = null;

/**
 * Runs `fn` (one forward over a batch of rows.length rows) with each row's adapter applied in every linear;
 * `null` rows use the base alone. Without gradients only: serving, not training.
 */
export function withRowAdapters<T>(rows: readonly (RowAdapter | null)[], fn: () => T): T {
  if (rows.every((r) => r === null)) return fn();
  if (isGradEnabled()) throw new ConfigError('per-row LoRA adapters are for inference: run the forward inside noGrad()', { where: 'row adapters' });
  const outer = current;
  current = new RowAdapterBatch(rows);
  try {
    return fn();
  } finally {
    current = outer;
  }
}

/** What linear() calls on its output: `y` plus each row's adapter delta while row adapters are set, else `y`. */
export function addRowAdapters(y: Tensor, x: Tensor, module: string): Tensor {
  return current === null ? y : current.apply(y, x, module);
}
