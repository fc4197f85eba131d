// Data-parallel gradient reduction: the flat gradient buffer split into buckets of whole tensors, each
// all-reduced as soon as all its tensors' gradients are ready (backward order), or all at once at the end.
import { ShapeError } from '../errors.ts';
import type { FlatBuffer, FlatLayout } from '../tensor/index.ts';
import type { ProcessGroup } from './process-group.ts';

/** 25 MiB, PyTorch DDP's default bucket size. */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

export interface Bucket {
  /** Tensors in the bucket, in the order backward makes them ready (reverse layout order). */
  names: string[];
  /** Element range of the flat buffer it covers (contiguous, padding included). */
  start: number;
  count: number;
}

export interface GradientReduceOptions {
  bucketBytes?: number;
  /** 'avg' (default) divides by the world size; 'sum' when the loss is already normalized globally. */
  op?: 'sum' | 'avg';
}

/**
 * Buckets of consecutive tensors, last tensor first, each at least bucketBytes unless it is the last one.
 * Each tensor's range runs to the next tensor's offset, so buckets tile the buffer with no gaps.
 */
export function planBuckets(layout: FlatLayout, bucketBytes = DEFAULT_BUCKET_BYTES): Bucket[] {
  if (!(bucketBytes > 0)) throw new ShapeError(`gradient buckets: bucketBytes must be > 0, got ${bucketBytes}`);
  const limit = Math.max(1, Math.floor(bucketBytes / 4));
  const buckets: Bucket[] = [];
  let names: string[] = [];
  let end = layout.size;
  let start = layout.size;
  for (let i = layout.names.length - 1; i >= 0; i--) {
    start = layout.offsets[i] as number;
    names.push(layout.names[i] as string);
    if (end - start >= limit || i === 0) {
      buckets.push({ names, start, count: end - start });
      names = [];
      end = start;
    }
  }
  return buckets;
}

/**
 * Reduces gradients bucket by bucket as backward marks tensors ready. Buckets are reduced strictly in their
 * order, so every rank issues the same collectives in the same sequence even if hooks fire in another order.
 */
export class GradientBuckets {
  readonly buckets: Bucket[];
  private readonly grads: FlatBuffer;
  private readonly pg: ProcessGroup;
  private readonly op: 'sum' | 'avg';
  private readonly bucketOf = new Map<string, number>();
  private pending: number[];
  private next = 0;

  constructor(grads: FlatBuffer, pg: ProcessGroup, opts: GradientReduceOptions = {}) {
    this.grads = grads;
    this.pg = pg;
    this.op = opts.op ?? 'avg';
    this.buckets = planBuckets(grads.layout, opts.bucketBytes);
    this.buckets.forEach((b, i) => {
      for (const n of b.names) this.bucketOf.set(n, i);
    });
    this.pending = this.buckets.map((b) => b.names.length);
  }

  /** Call when the gradient of `name` is final for this step (e.g. from a gradient-ready hook). */
  markReady(name: string): void {
    const i = this.bucketOf.get(name);
    if (i === undefined) throw new ShapeError(`gradient buckets: no tensor named ${name}`);
    this.pending[i] = (this.pending[i] as number) - 1;
    while (this.next < this.buckets.length && (this.pending[this.next] as number) <= 0) this.reduce(this.next++);
  }

  /** Reduces every bucket not reduced yet (tensors never marked, e.g. unused ones, count as ready) and resets. */
  finish(): void {
    while (this.next < this.buckets.length) this.reduce(this.next++);
    this.next = 0;
    this.pending = this.buckets.map((b) => b.names.length);
  }

  private reduce(i: number): void {
    const b = this.buckets[i] as Bucket;
    if (this.pg.size === 1 || b.count === 0) return;
    this.pg.allReduce({ backend: this.grads.storage.backend, handle: this.grads.storage.handle, byteOffset: b.start * 4, count: b.count, dtype: 'float32' }, this.op);
  }
}

/** All-reduces the whole gradient buffer in buckets (after backward, when no hooks were used). */
export function allReduceGradients(grads: FlatBuffer, pg: ProcessGroup, opts: GradientReduceOptions = {}): void {
  new GradientBuckets(grads, pg, opts).finish();
}
