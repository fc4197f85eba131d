// Flat buffers: many tensors (parameters, their gradients, optimizer moments) as views of one native block,
// allocated once; this is what bucketed all-reduce and optimizer sharding work on.
import type { ComputeBackend } from '../backend/compute.ts';
import { ShapeError } from '../errors.ts';
import { type Shape, contiguousStrides, fmt, numel } from './shape.ts';
import { Storage } from './storage.ts';
import { Tensor } from './tensor.ts';

/** Each tensor starts at a multiple of 16 floats (64 bytes), so SIMD kernels see aligned rows. */
const ALIGN = 16;

export interface FlatLayout {
  names: string[];
  shapes: number[][];
  /** Element offset of each tensor in the block. */
  offsets: number[];
  /** Total elements, padding included. */
  size: number;
}

export function flatLayout(entries: readonly { name: string; shape: Shape }[]): FlatLayout {
  const names: string[] = [];
  const shapes: number[][] = [];
  const offsets: number[] = [];
  let at = 0;
  const seen = new Set<string>();
  for (const { name, shape } of entries) {
    if (seen.has(name)) throw new ShapeError(`flat buffer: duplicate tensor name ${name}`);
    seen.add(name);
    names.push(name);
    shapes.push([...shape]);
    offsets.push(at);
    at += Math.ceil(numel(shape) / ALIGN) * ALIGN;
  }
  return { names, shapes, offsets, size: at };
}

/** One float32 block with a view per named tensor. Persistent: released only by release(). */
export class FlatBuffer {
  readonly layout: FlatLayout;
  readonly storage: Storage;
  /** The whole block as one 1-D tensor (padding included; padding stays zero). */
  readonly all: Tensor;
  readonly views: Map<string, Tensor>;

  constructor(layout: FlatLayout, backend?: ComputeBackend) {
    this.layout = layout;
    this.storage = Storage.alloc(Math.max(layout.size, 1) * 4, { zero: true, persistent: true }, backend);
    this.all = new Tensor(this.storage, [layout.size], [1], 0, 'float32');
    this.views = new Map(
      layout.names.map((name, i) => {
        const shape = layout.shapes[i] as number[];
        return [name, new Tensor(this.storage, shape, contiguousStrides(shape), layout.offsets[i] as number, 'float32')];
      }),
    );
  }

  get(name: string): Tensor {
    const t = this.views.get(name);
    if (!t) throw new ShapeError(`flat buffer: no tensor named ${name}`);
    return t;
  }

  zero(): void {
    this.storage.backend.fill(this.storage.handle, 0, this.layout.size, 0, 0);
  }

  release(): void {
    this.storage.release();
  }
}

/** Copies values into a view of a flat buffer (e.g. loading a checkpoint). */
export function loadInto(view: Tensor, data: Float32Array): void {
  if (data.length !== view.size) throw new ShapeError(`load: ${data.length} values for tensor ${fmt(view.shape)}`);
  if (data.length > 0) view.backend.write(view.handle, view.byteOffset, data);
}
