// ZeRO-2 gradient sharding: no full-size gradient buffer. Each trainable leaf's gradient is redirected
// (autograd's GradTarget) into a bucket buffer that lives only while backward fills it; as soon as every tensor
// of a bucket is final (gradient-ready hooks), the bucket is reduce-scattered, each rank receiving the part that
// falls in its shard of the flat parameters, added onto what earlier micro-batches left there. The optimizer
// (ShardedAdamW) then updates the shard and all-gathers the parameters, as in ZeRO-1.
import { ShapeError } from '../errors.ts';
import type { ComputeBackend } from '../backend/compute.ts';
import { type FlatBuffer, type FlatLayout, Storage, Tensor, contiguousStrides, setGradTarget } from '../tensor/index.ts';
import { accumulateInto } from '../tensor/ops/elementwise.ts';
import { type Bucket, DEFAULT_BUCKET_BYTES, planBuckets } from './gradients.ts';
import type { ProcessGroup } from './process-group.ts';
import { type ShardRange, reduceScatterRange, shardCounts, shardRange } from './zero.ts';

export interface ShardedGradientsOptions {
  bucketBytes?: number;
  /** The buckets, in the order backward fills them (default planBuckets(layout, bucketBytes)); ZeRO-3 passes its layer groups. */
  buckets?: Bucket[];
  /** Called after bucket i was reduce-scattered (ZeRO-3 frees that layer's gathered weights then). */
  onReduced?: (i: number) => void;
}

/** What the gradients need of the trainable weights: their layout and the backend of their memory. */
export interface ShardedValues {
  readonly layout: FlatLayout;
  readonly storage: { readonly backend: ComputeBackend };
}

interface LiveBucket {
  storage: Storage;
  views: Map<string, Tensor>;
}

/** Reduce-scattered gradients of the trainable flat buffer, summed over ranks and micro-batches. */
export class ShardedGradients {
  readonly shard: ShardRange;
  readonly buckets: Bucket[];
  /** This rank's shard of the summed gradients (shard.count floats); zero() starts a step. */
  readonly shardGrads: Storage;
  /** Most bucket bytes alive at once so far (the gradient memory besides the shard). */
  peakBucketBytes = 0;
  /** Elements this rank put into reduce-scatters so far (communication volume). */
  sentElements = 0;
  private readonly values: ShardedValues;
  private readonly pg: ProcessGroup;
  private readonly onReduced: ((i: number) => void) | null;
  private readonly chunkBytes: number;
  private readonly bucketOf = new Map<string, number>();
  /** Per bucket: elements of it in each rank's shard (the reduce-scatter's blocks, in rank order). */
  private readonly blocks: number[][];
  private readonly live: (LiveBucket | null)[];
  private readonly done: boolean[];
  private liveBytes = 0;
  private pending: number[];
  private next = 0;
  private readonly hooks = new Map<Tensor, (t: Tensor) => void>();

  constructor(values: ShardedValues, pg: ProcessGroup, opts: ShardedGradientsOptions = {}) {
    this.values = values;
    this.pg = pg;
    this.onReduced = opts.onReduced ?? null;
    this.chunkBytes = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    const layout = values.layout;
    this.shard = shardRange(layout, pg.rank, pg.size);
    this.shardGrads = Storage.alloc(Math.max(this.shard.count, 1) * 4, { zero: true, persistent: true }, values.storage.backend);
    this.buckets = opts.buckets ?? planBuckets(layout, opts.bucketBytes ?? DEFAULT_BUCKET_BYTES);
    this.buckets.forEach((b, i) => {
      for (const n of b.names) this.bucketOf.set(n, i);
    });
    const counts = shardCounts(layout, pg.size);
    const starts = counts.map((_, r) => shardRange(layout, r, pg.size).start);
    this.blocks = this.buckets.map((b) =>
      counts.map((c, r) => {
        const lo = Math.max(b.start, starts[r] as number);
        const hi = Math.min(b.start + b.count, (starts[r] as number) + c);
        return Math.max(0, hi - lo);
      }),
    );
    this.live = this.buckets.map(() => null);
    this.done = this.buckets.map(() => false);
    this.pending = this.buckets.map((b) => b.names.length);
  }

  /** Redirects the gradients of the flat buffer's tensors here (instead of .grad) and listens for them. */
  attach(values: FlatBuffer): void {
    for (const name of this.values.layout.names) this.hooks.set(values.get(name), this.attachLeaf(values.get(name), name));
  }

  /**
   * Redirects one leaf's gradient here (ZeRO-3 calls it for every weight it gathers: a new leaf each time);
   * returns the hook it added. The leaf is not remembered: detach() does not undo this.
   */
  attachLeaf(leaf: Tensor, name: string): (t: Tensor) => void {
    setGradTarget(leaf, { into: (t) => this.slot(t, name) });
    const hook = (): void => this.markReady(name);
    leaf.onGradReady(hook);
    return hook;
  }

  /** Undoes attach(): gradients go to .grad again. */
  detach(): void {
    for (const [leaf, hook] of this.hooks) {
      setGradTarget(leaf, null);
      const i = leaf.gradHooks.indexOf(hook);
      if (i >= 0) leaf.gradHooks.splice(i, 1);
    }
    this.hooks.clear();
  }

  /** Starts a step: the shard's gradients become zero. */
  zero(): void {
    if (this.shard.count > 0) this.shardGrads.backend.fill(this.shardGrads.handle, 0, this.shard.count, 0, 0);
  }

  /** The tensor `name`'s gradient is added into: its place in its bucket's buffer, made when first needed. */
  private slot(t: Tensor, name: string): Tensor {
    const i = this.bucketOf.get(name) as number;
    if (this.done[i]) throw new ShapeError(`ZeRO-2: a gradient of ${name} arrived after its bucket was reduced in this backward`, { where: name });
    const b = this.open(i);
    let view = b.views.get(name);
    if (!view) {
      const layout = this.values.layout;
      const k = layout.names.indexOf(name);
      const shape = layout.shapes[k] as number[];
      view = new Tensor(b.storage, shape, contiguousStrides(shape), (layout.offsets[k] as number) - (this.buckets[i] as Bucket).start, 'float32');
      b.views.set(name, view);
    }
    if (view.size !== t.size) throw new ShapeError(`ZeRO-2: ${name} has ${t.size} elements, its slot ${view.size}`, { where: name });
    return view;
  }

  private open(i: number): LiveBucket {
    let b = this.live[i];
    if (!b) {
      const bytes = Math.max((this.buckets[i] as Bucket).count, 1) * 4;
      b = { storage: Storage.alloc(bytes, { zero: true, persistent: true }, this.values.storage.backend), views: new Map() };
      this.live[i] = b;
      this.liveBytes += bytes;
      this.peakBucketBytes = Math.max(this.peakBucketBytes, this.liveBytes);
    }
    return b;
  }

  /** Call when the gradient of `name` is final for this backward (the gradient-ready hook does). */
  markReady(name: string): void {
    const i = this.bucketOf.get(name);
    if (i === undefined) throw new ShapeError(`ZeRO-2: no trainable tensor named ${name}`, { where: name });
    this.pending[i] = (this.pending[i] as number) - 1;
    // Strictly in bucket order, so every rank issues the same collectives in the same sequence.
    while (this.next < this.buckets.length && (this.pending[this.next] as number) <= 0) this.reduce(this.next++);
  }

  /** After each micro-batch's backward: reduces the buckets not reduced yet (unused tensors count as ready). */
  finish(): void {
    while (this.next < this.buckets.length) this.reduce(this.next++);
    this.next = 0;
    this.pending = this.buckets.map((b) => b.names.length);
    this.done.fill(false);
  }

  private reduce(i: number): void {
    const bucket = this.buckets[i] as Bucket;
    const blocks = this.blocks[i] as number[];
    // A bucket no gradient reached on this rank still takes part (as zeros): the others may have some.
    const b = this.open(i);
    const mine = blocks[this.pg.rank] as number;
    const lo = Math.max(bucket.start, this.shard.start);
    const backend = this.shardGrads.backend;
    if (mine > 0) {
      // The sum over ranks lands on the shard, overwriting it: add the earlier micro-batches' sum into this
      // rank's own block first, so the result is their sum plus this micro-batch's.
      const own = new Tensor(b.storage, [mine], [1], lo - bucket.start, 'float32');
      accumulateInto(own, new Tensor(this.shardGrads, [mine], [1], lo - this.shard.start, 'float32'));
    }
    // In chunks of at most bucketBytes: a bucket of one big tensor (the embeddings, a ZeRO-3 layer group) would
    // otherwise make OpenMPI allocate scratch of its whole size.
    reduceScatterRange(
      this.pg,
      this.values.layout,
      { backend, handle: b.storage.handle, byteOffset: 0, count: bucket.count, dtype: 'float32' },
      bucket.start,
      { backend, handle: this.shardGrads.handle, byteOffset: 0, count: this.shard.count, dtype: 'float32' },
      'sum',
      this.chunkBytes,
    );
    this.sentElements += bucket.count;
    this.liveBytes -= b.storage.bytes;
    b.storage.release();
    this.live[i] = null;
    this.done[i] = true;
    this.onReduced?.(i);
  }

  release(): void {
    this.detach();
    for (let i = 0; i < this.live.length; i++) {
      this.live[i]?.storage.release();
      this.live[i] = null;
    }
    this.liveBytes = 0;
    this.shardGrads.release();
  }
}
