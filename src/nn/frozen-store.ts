// Frozen weights: no gradient and no optimizer state. Each is held in its own storage dtype (float32, or
// bfloat16 at half the bytes), either in its own native block or as a read-only view of a memory-mapped
// checkpoint file, or quantized (NF4 with double-quantized block scales, or int8 per output channel: QLoRA's
// frozen base). Linears read a low-precision frozen weight through `rows()` (panels expanded into fp32 just
// before the GEMM packs them, src/tensor/frozen-gemm.ts); other code reads it widened to float32 (`dense`).
import { ShapeError } from '../errors.ts';
import {
  Bf16Rows, QuantizedWeight, type RowSource, type Storage, Tensor, cast, contiguousStrides, dtypeBytes, keep, noGrad, numel, scope,
} from '../tensor/index.ts';

/** Storage dtypes of frozen weights (`model.base_dtype`): dense float32/bfloat16, or quantized nf4/int8. */
export type FrozenDtype = 'float32' | 'bfloat16' | 'nf4' | 'int8';

export const FROZEN_DTYPES: readonly FrozenDtype[] = ['float32', 'bfloat16', 'nf4', 'int8'];

type DenseDtype = 'float32' | 'bfloat16';

/** One frozen weight as stored. `mapped`: a view of a file mapping (its pages are the file's). */
export type FrozenWeight =
  | {
      readonly kind: 'dense';
      readonly name: string;
      readonly shape: readonly number[];
      readonly dtype: DenseDtype;
      readonly tensor: Tensor;
      readonly mapped: boolean;
    }
  | {
      readonly kind: 'quantized';
      readonly name: string;
      readonly shape: readonly number[];
      readonly dtype: 'nf4' | 'int8';
      readonly q: QuantizedWeight;
      readonly mapped: false;
    };

/**
 * Whether a weight is quantized under an nf4/int8 store: the matrices of linear layers, as QLoRA quantizes
 * them. Embeddings, the output head and every vector (norms, biases) stay in bfloat16.
 */
export function quantizable(name: string, shape: readonly number[]): boolean {
  return shape.length === 2 && name.endsWith('.weight') && !/(^|\.)(embed_tokens|wte|wpe|lm_head)\./.test(name);
}

/** Bytes of a frozen weight of `shape` stored as `dtype` (as FrozenStore holds it: NF4 codes + double-quantized scales). */
export function frozenBytesOf(name: string, shape: readonly number[], dtype: FrozenDtype): number {
  const n = shape.reduce((a, b) => a * b, 1);
  if ((dtype === 'nf4' || dtype === 'int8') && quantizable(name, shape)) {
    if (dtype === 'int8') return n + (shape[0] as number) * 4;
    const blocks = Math.ceil(n / 64);
    return Math.ceil(n / 2) + blocks + Math.ceil(blocks / 256) * 4;
  }
  return n * (dtype === 'float32' ? 4 : 2);
}

export class FrozenStore {
  /** The dtype new (non-mapped) frozen weights are stored in. */
  readonly dtype: FrozenDtype;
  private readonly weights = new Map<string, FrozenWeight | { kind: 'pending'; shape: readonly number[] }>();
  /** File mappings views point into, released with the store. */
  private readonly mappings = new Set<Storage>();

  constructor(dtype: FrozenDtype) {
    this.dtype = dtype;
  }

  get names(): string[] {
    return [...this.weights.keys()];
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }

  /** Registers a frozen weight whose values come later (set or map), e.g. from a checkpoint. */
  expect(name: string, shape: readonly number[]): void {
    this.weights.set(name, { kind: 'pending', shape: [...shape] });
  }

  /**
   * Stores float32 values: as they are, rounded to bfloat16 (nearest even), or quantized (nf4/int8 stores:
   * linear matrices; the rest in bfloat16).
   */
  set(name: string, shape: readonly number[], data: Float32Array): void {
    if (data.length !== numel(shape)) throw new ShapeError(`frozen weight ${name}: ${data.length} values for shape [${shape.join(', ')}]`, { where: name });
    this.drop(name);
    if ((this.dtype === 'nf4' || this.dtype === 'int8') && quantizable(name, shape)) {
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i] as number)) throw new ShapeError(`frozen weight ${name}: element ${i} is ${data[i]}; only finite weights can be quantized`, { where: name });
      }
      const kind = this.dtype;
      const q = scope(() => QuantizedWeight.quantize(Tensor.from(data, [...shape]), kind, { name }));
      this.weights.set(name, { kind: 'quantized', name, shape: [...shape], dtype: kind, q, mapped: false });
      return;
    }
    const dense: DenseDtype = this.dtype === 'float32' ? 'float32' : 'bfloat16';
    const tensor = scope(() => {
      const f32 = Tensor.from(data, [...shape]);
      return keep(dense === 'float32' ? f32 : noGrad(() => cast(f32, dense)));
    });
    tensor.name = name;
    this.weights.set(name, { kind: 'dense', name, shape: [...shape], dtype: dense, tensor, mapped: false });
  }

  /**
   * Makes a frozen weight a view of a read-only mapping: `byteOffset` (a multiple of the element size) into
   * `file`, in `dtype`. The store releases the mapping when it is released.
   */
  map(name: string, shape: readonly number[], file: Storage, byteOffset: number, dtype: DenseDtype): void {
    const size = dtypeBytes(dtype);
    if (byteOffset % size !== 0) throw new ShapeError(`frozen weight ${name}: byte offset ${byteOffset} is not a multiple of ${size}`, { where: name });
    if (byteOffset + numel(shape) * size > file.bytes) throw new ShapeError(`frozen weight ${name}: past the end of its mapping`, { where: name });
    this.drop(name);
    const tensor = new Tensor(file, [...shape], contiguousStrides(shape), byteOffset / size, dtype);
    tensor.name = name;
    this.mappings.add(file);
    this.weights.set(name, { kind: 'dense', name, shape: [...shape], dtype, tensor, mapped: true });
  }

  /** The weight as stored. */
  weight(name: string): FrozenWeight {
    const w = this.weights.get(name);
    if (!w) throw new ShapeError(`no frozen weight named ${name}`, { where: name });
    if (w.kind === 'pending') throw new ShapeError(`frozen weight ${name} was never loaded`, { where: name });
    return w;
  }

  /** The stored tensor of a dense frozen weight (a quantized one has none: see `rows` and `dense`). */
  stored(name: string): Tensor {
    const w = this.weight(name);
    if (w.kind !== 'dense') throw new ShapeError(`frozen weight ${name} is quantized (${w.dtype}); it has no dense storage`, { where: name });
    return w.tensor;
  }

  /**
   * A low-precision frozen matrix as rows a linear can expand panel by panel (bfloat16 or quantized), or null
   * when it is float32 (read directly) or not a matrix.
   */
  rows(name: string): RowSource | null {
    const w = this.weight(name);
    if (w.kind === 'quantized') return w.q;
    return w.dtype === 'bfloat16' && w.shape.length === 2 && w.tensor.isContiguous ? new Bf16Rows(w.tensor) : null;
  }

  /** Float32 for compute: the stored tensor itself when it is float32, else a widened copy in the current scope. */
  dense(name: string): Tensor {
    const w = this.weight(name);
    if (w.kind === 'quantized') return w.q.dequantize();
    return w.dtype === 'float32' ? w.tensor : noGrad(() => cast(w.tensor, 'float32'));
  }

  /** Float32 values (checkpoints; a quantized weight's dequantized values). */
  read(name: string): Float32Array {
    const w = this.weight(name);
    if (w.kind === 'quantized') return scope(() => w.q.dequantize().toArray() as Float32Array);
    if (w.dtype === 'float32') return w.tensor.toArray() as Float32Array;
    return scope(() => noGrad(() => cast(w.tensor, 'float32')).toArray() as Float32Array);
  }

  /** Bytes of every loaded frozen weight in its storage dtype (mapped ones included; codes and scales of quantized ones). */
  bytes(): number {
    let n = 0;
    for (const w of this.weights.values()) {
      if (w.kind === 'quantized') n += w.q.bytes;
      else if (w.kind === 'dense') n += numel(w.shape) * dtypeBytes(w.dtype);
      else n += numel(w.shape) * (this.dtype === 'float32' ? 4 : 2);
    }
    return n;
  }

  mappedBytes(): number {
    let n = 0;
    for (const w of this.weights.values()) if (w.kind === 'dense' && w.mapped) n += numel(w.shape) * dtypeBytes(w.dtype);
    return n;
  }

  private drop(name: string): void {
    const w = this.weights.get(name);
    if (w?.kind === 'dense' && !w.mapped) w.tensor.storage.release();
    if (w?.kind === 'quantized') w.q.release();
  }

  release(): void {
    for (const name of this.weights.keys()) this.drop(name);
    for (const m of this.mappings) m.release();
    this.mappings.clear();
    this.weights.clear();
  }
}
