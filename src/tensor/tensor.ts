// The Tensor: a strided view over a backend's storage, with the fields reverse-mode autograd needs.
import type { ComputeBackend } from '../backend/compute.ts';
import { ShapeError } from '../errors.ts';
import { type DType, dtypeBytes } from './dtype.ts';
import { type Shape, checkShape, contiguousStrides, fmt, numel } from './shape.ts';
import { Storage } from './storage.ts';
import type { OpName } from './op-names.ts';

/** Where a new tensor lives: `backend` (the active one by default); `persistent` keeps it out of step scopes. */
export interface TensorOptions {
  persistent?: boolean;
  backend?: ComputeBackend;
}

/**
 * A recorded op (autograd.ts's record): backward calls BACKWARD_RULES[op](ctx, d loss / d output) for the
 * gradient of each input. ctx holds what that rule reads (saved tensors and attributes); its type is the op
 * file's Ctx for that op.
 */
export interface GradNode {
  readonly op: OpName;
  readonly inputs: readonly (Tensor | null)[];
  readonly ctx: unknown;
}

export type TypedArrayOf<D extends DType> = D extends 'int32' ? Int32Array : D extends 'float32' ? Float32Array : Uint16Array;

export class Tensor {
  readonly storage: Storage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  /** Offset of element [0, ..., 0] in the storage, in elements. */
  readonly offset: number;
  readonly dtype: DType;
  requiresGrad = false;
  grad: Tensor | null = null;
  /** The op that made this tensor (null for leaves and for tensors made without grad). */
  gradFn: GradNode | null = null;
  /** Called once per backward pass when this leaf's gradient is complete (bucketed all-reduce hooks). */
  readonly gradHooks: ((t: Tensor) => void)[] = [];
  name = '';

  constructor(storage: Storage, shape: Shape, strides: readonly number[], offset: number, dtype: DType) {
    this.storage = storage;
    this.shape = shape;
    this.strides = strides;
    this.offset = offset;
    this.dtype = dtype;
  }

  // --- creation

  /** Uninitialized; on opts.backend, else the active backend (backend/select.ts). */
  static empty(shape: Shape, dtype: DType = 'float32', opts: TensorOptions & { zero?: boolean } = {}): Tensor {
    checkShape('empty', shape);
    const storage = Storage.alloc(numel(shape) * dtypeBytes(dtype), opts, opts.backend);
    return new Tensor(storage, [...shape], contiguousStrides(shape), 0, dtype);
  }

  static zeros(shape: Shape, dtype: DType = 'float32', opts: TensorOptions = {}): Tensor {
    return Tensor.empty(shape, dtype, { ...opts, zero: true });
  }

  static full(shape: Shape, value: number, dtype: DType = 'float32', opts: TensorOptions = {}): Tensor {
    const t = Tensor.empty(shape, dtype, opts);
    if (dtype !== 'float32' && dtype !== 'int32') throw new ShapeError(`full: dtype ${dtype} is storage-only; make float32 and cast`);
    t.backend.fill(t.handle, t.byteOffset, t.size, value, dtype === 'int32' ? 3 : 0);
    return t;
  }

  /** Copies data into a new tensor; `data` length must equal the shape's size. */
  static from(data: ArrayLike<number> | Float32Array | Int32Array | Uint16Array, shape: Shape, dtype: DType = 'float32', opts: TensorOptions = {}): Tensor {
    checkShape('from', shape);
    const n = numel(shape);
    if (data.length !== n) throw new ShapeError(`from: ${data.length} values do not fill shape ${fmt(shape)} (${n})`);
    const t = Tensor.empty(shape, dtype, opts);
    let typed: Float32Array | Int32Array | Uint16Array;
    if (dtype === 'float32') typed = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
    else if (dtype === 'int32') typed = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
    else if (data instanceof Uint16Array) typed = data;
    else throw new ShapeError(`from: ${dtype} data must be given as raw Uint16Array bits`);
    if (n > 0) t.backend.write(t.handle, 0, typed);
    return t;
  }

  static scalar(value: number, opts: TensorOptions = {}): Tensor {
    return Tensor.from([value], [], 'float32', opts);
  }

  // --- facts

  get ndim(): number {
    return this.shape.length;
  }

  get size(): number {
    return numel(this.shape);
  }

  /** The compute backend of the storage: ops on this tensor run its kernels. */
  get backend(): ComputeBackend {
    return this.storage.backend;
  }

  get handle(): number {
    return this.storage.handle;
  }

  get byteOffset(): number {
    return this.offset * dtypeBytes(this.dtype);
  }

  get isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      const d = this.shape[i] as number;
      if (d !== 1 && this.strides[i] !== s) return false;
      s *= d;
    }
    return true;
  }

  dim(axis: number): number {
    const a = axis < 0 ? axis + this.ndim : axis;
    const d = this.shape[a];
    if (d === undefined) throw new ShapeError(`dim: axis ${axis} out of range for shape ${fmt(this.shape)}`);
    return d;
  }

  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // --- reading back

  /** Copies the values out (contiguous order). */
  toArray(): TypedArrayOf<this['dtype']> {
    const src = this.isContiguous ? this : copyContiguous(this);
    const n = src.size;
    const out = this.dtype === 'float32' ? new Float32Array(n) : this.dtype === 'int32' ? new Int32Array(n) : new Uint16Array(n);
    if (n > 0) src.backend.read(src.handle, src.byteOffset, out);
    if (src !== this) src.release();
    return out as TypedArrayOf<this['dtype']>;
  }

  item(): number {
    if (this.size !== 1) throw new ShapeError(`item: tensor of shape ${fmt(this.shape)} has ${this.size} elements, not 1`);
    const v = this.toArray()[0];
    return v as number;
  }

  // --- autograd

  /** Marks a leaf as trainable. */
  requireGrad(flag = true): this {
    if (this.gradFn) throw new ShapeError('requireGrad: only leaf tensors can be marked trainable');
    this.requiresGrad = flag;
    return this;
  }

  /** A tensor sharing storage with this one, outside the graph. */
  detach(): Tensor {
    return new Tensor(this.storage, this.shape, this.strides, this.offset, this.dtype);
  }

  onGradReady(hook: (t: Tensor) => void): void {
    this.gradHooks.push(hook);
  }

  /** Releases the native storage now (every view of it becomes unusable). */
  release(): void {
    this.storage.release();
  }
}

/** A contiguous copy of any strided tensor (no autograd; see ops for the differentiable version). */
export function copyContiguous(t: Tensor): Tensor {
  const out = Tensor.empty(t.shape, t.dtype, { backend: t.backend });
  if (t.size > 0) {
    const scalar = t.ndim === 0;
    t.backend.stridedCopy(
      t.handle, t.byteOffset, scalar ? [1] : [...t.strides], out.handle, 0, scalar ? [1] : [...out.strides],
      scalar ? [1] : [...t.shape], dtypeBytes(t.dtype), false,
    );
  }
  return out;
}
