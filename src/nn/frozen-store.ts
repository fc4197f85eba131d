// Frozen weights: no gradient and no optimizer state. Each is held in its own storage dtype (float32, or
// bfloat16 at half the bytes), either in its own native block or as a read-only view of a memory-mapped
// checkpoint file. Compute reads them widened to float32 (`dense`); a quantized kind (NF4/int8 blocks with
// their scales) is meant to join FrozenWeight as another `kind`, read by the linear in linear.ts directly.
import { ShapeError } from '../errors.ts';
import { type Storage, Tensor, cast, contiguousStrides, dtypeBytes, keep, noGrad, numel, scope } from '../tensor/index.ts';

/** Storage dtypes a frozen weight may have today. */
export type FrozenDtype = 'float32' | 'bfloat16';

export const FROZEN_DTYPES: readonly FrozenDtype[] = ['float32', 'bfloat16'];

/** One frozen weight as stored. `mapped`: a view of a file mapping (its pages are the file's). */
export interface FrozenWeight {
  readonly kind: 'dense';
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: FrozenDtype;
  readonly tensor: Tensor;
  readonly mapped: boolean;
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

  /** Stores float32 values (rounded to nearest even when the store's dtype is bfloat16). */
  set(name: string, shape: readonly number[], data: Float32Array): void {
    if (data.length !== numel(shape)) throw new ShapeError(`frozen weight ${name}: ${data.length} values for shape [${shape.join(', ')}]`, { where: name });
    this.drop(name);
    const tensor = scope(() => {
      const f32 = Tensor.from(data, [...shape]);
      return keep(this.dtype === 'float32' ? f32 : noGrad(() => cast(f32, this.dtype)));
    });
    tensor.name = name;
    this.weights.set(name, { kind: 'dense', name, shape: [...shape], dtype: this.dtype, tensor, mapped: false });
  }

  /**
   * Makes a frozen weight a view of a read-only mapping: `byteOffset` (a multiple of the element size) into
   * `file`, in `dtype`. The store releases the mapping when it is released.
   */
  map(name: string, shape: readonly number[], file: Storage, byteOffset: number, dtype: FrozenDtype): void {
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

  stored(name: string): Tensor {
    return this.weight(name).tensor;
  }

  /** Float32 for compute: the stored tensor itself when it is float32, else a widened copy in the current scope. */
  dense(name: string): Tensor {
    const w = this.weight(name);
    return w.dtype === 'float32' ? w.tensor : noGrad(() => cast(w.tensor, 'float32'));
  }

  /** Float32 values (checkpoints). */
  read(name: string): Float32Array {
    const w = this.weight(name);
    if (w.dtype === 'float32') return w.tensor.toArray() as Float32Array;
    return scope(() => noGrad(() => cast(w.tensor, 'float32')).toArray() as Float32Array);
  }

  /** Bytes of every loaded frozen weight in its storage dtype (mapped ones included). */
  bytes(): number {
    let n = 0;
    for (const w of this.weights.values()) n += numel(w.shape) * (w.kind === 'dense' ? dtypeBytes(w.dtype) : dtypeBytes(this.dtype));
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
  }

  release(): void {
    for (const name of this.weights.keys()) this.drop(name);
    for (const m of this.mappings) m.release();
    this.mappings.clear();
    this.weights.clear();
  }
}
