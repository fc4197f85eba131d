// ZeRO-3 parameter sharding: each rank keeps only its shard of the flat trainable parameters (the same
// contiguous 1/N as the optimizer shard of stages 1 and 2, so the optimizer files are the same at every stage).
// The weights are grouped by layer (every `…layers.<i>.` / `…h.<i>.` tensor is one group; the embeddings, the
// final norm and lm_head are a group each); a group is all-gathered into a buffer of its own the first time
// the model looks up one of its weights (ParameterSet.weight), and freed again:
//   - looked up without gradient recording (evaluation, the first pass of an activation-recompute block): when
//     a second other group has been gathered since (at most two such groups are alive at once);
//   - looked up while recording: once backward has made all the group's gradients (its gradient bucket is
//     reduce-scattered), since the graph holds its weights until then. With model.recompute each layer is
//     gathered again for its backward (recompute re-runs its forward), so one layer is alive at a time;
//     without it every layer stays gathered from its forward to its backward.
// The gradients go through ZeRO-2's buckets (ShardedGradients), one bucket per group, reduce-scattered into
// the shard as soon as backward completes the group. AdamW (ShardedAdamW) updates the shard in place.
// The collectives are blocking (the addon binds no non-blocking MPI): no prefetch of the next group.
import type { ComputeBackend } from '../backend/compute.ts';
import { ShapeError } from '../errors.ts';
import { FlatBuffer, type FlatLayout, Storage, Tensor, contiguousStrides, isGradEnabled } from '../tensor/index.ts';
import { copyInto } from '../tensor/ops/views.ts';
import type { Bucket } from './gradients.ts';
import type { ProcessGroup } from './process-group.ts';
import { type ShardRange, shardCounts, shardRange } from './zero.ts';
import { ShardedGradients } from './zero2.ts';

/** A run of consecutive tensors of the flat layout gathered together (a transformer layer, the embeddings, …). */
export interface ParamGroup {
  key: string;
  /** Tensor names, layout order. */
  names: string[];
  /** Element range of the flat buffer (to the next group's first tensor: padding included). */
  start: number;
  count: number;
}

/** The group a weight belongs to: its layer (`model.layers.3`, `transformer.h.0`), else its module. */
export function groupKey(name: string): string {
  const layer = /^(.*?\.(?:layers|h|blocks)\.\d+)\./.exec(name);
  if (layer) return layer[1] as string;
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

/** Consecutive tensors of the same key form a group; groups tile the flat buffer. */
export function planGroups(layout: FlatLayout): ParamGroup[] {
  const groups: ParamGroup[] = [];
  layout.names.forEach((name, i) => {
    const key = groupKey(name);
    const last = groups[groups.length - 1];
    if (last && last.key === key) last.names.push(name);
    else groups.push({ key, names: [name], start: layout.offsets[i] as number, count: 0 });
  });
  groups.forEach((g, i) => {
    g.count = (i + 1 < groups.length ? (groups[i + 1] as ParamGroup).start : layout.size) - g.start;
  });
  return groups;
}

interface LiveGroup {
  storage: Storage;
  leaves: Map<string, Tensor>;
  /** Looked up while recording gradients: kept until backward has reduced the group's gradients. */
  pinned: boolean;
}

export interface ShardedParametersOptions {
  /** Called with every leaf tensor a gather makes (the trainer's gradient routing). */
  onLeaf?: (leaf: Tensor, name: string) => void;
}

/** This rank's shard of the trainable weights, gathered layer group by layer group when the model reads them. */
export class ShardedParameters {
  readonly layout: FlatLayout;
  readonly shard: ShardRange;
  /** This rank's parameters (shard.count floats): what AdamW updates. */
  readonly shardValues: Storage;
  readonly groups: ParamGroup[];
  /** Elements all-gathered so far (every group gather counts the group's size: the communication volume). */
  gatheredElements = 0;
  /** Group gathers so far. */
  gathers = 0;
  /** Most gathered bytes alive at once so far. */
  peakGatheredBytes = 0;
  private gatheredBytes = 0;
  private readonly pg: ProcessGroup;
  private readonly groupOf = new Map<string, number>();
  private readonly indexOf = new Map<string, number>();
  /** Per group: its elements in each rank's shard (the all-gather's blocks, in rank order). */
  private readonly blocks: number[][];
  private readonly live: (LiveGroup | null)[];
  /** Unpinned live groups, least recently used first. */
  private recent: number[] = [];
  private onLeaf: ((leaf: Tensor, name: string) => void) | null;
  /** While a consolidated save streams the weights out: the groups gathered so far in layout order. */
  private saveCursor = -1;
  private released = false;

  /**
   * Takes this rank's shard of `values`: the full buffer (which the caller then frees), or only its layout and
   * backend, for a model whose weights are then written with load() (loading each rank's part only).
   */
  constructor(values: FlatBuffer | { layout: FlatLayout; backend: ComputeBackend }, pg: ProcessGroup, opts: ShardedParametersOptions = {}) {
    this.layout = values.layout;
    this.pg = pg;
    this.onLeaf = opts.onLeaf ?? null;
    this.shard = shardRange(this.layout, pg.rank, pg.size);
    const full = values instanceof FlatBuffer ? values : null;
    const backend = full ? full.storage.backend : (values as { backend: ComputeBackend }).backend;
    this.shardValues = Storage.alloc(Math.max(this.shard.count, 1) * 4, { zero: true, persistent: true }, backend);
    if (full && this.shard.count > 0) {
      copyInto(new Tensor(full.storage, [this.shard.count], [1], this.shard.start, 'float32'), this.shardSlice(this.shard.start, this.shard.count), false);
    }
    this.layout.names.forEach((n, k) => this.indexOf.set(n, k));
    this.groups = planGroups(this.layout);
    this.groups.forEach((g, i) => {
      for (const n of g.names) this.groupOf.set(n, i);
    });
    const counts = shardCounts(this.layout, pg.size);
    const starts = counts.map((_, r) => shardRange(this.layout, r, pg.size).start);
    this.blocks = this.groups.map((g) =>
      counts.map((c, r) => Math.max(0, Math.min(g.start + g.count, (starts[r] as number) + c) - Math.max(g.start, starts[r] as number))),
    );
    this.live = this.groups.map(() => null);
  }

  /** The gradient buckets for ShardedGradients: one per group, in the order backward completes them (last group first). */
  buckets(): Bucket[] {
    return this.groups.map((g) => ({ names: [...g.names].reverse(), start: g.start, count: g.count })).reverse();
  }

  /** Routes the leaves of later gathers (e.g. into ShardedGradients.attachLeaf). */
  setOnLeaf(fn: ((leaf: Tensor, name: string) => void) | null): void {
    this.onLeaf = fn;
  }

  has(name: string): boolean {
    return this.groupOf.has(name);
  }

  /**
   * The weight `name` as a dense fp32 leaf, gathering its group if needed: a collective, so every rank must
   * look up the same groups in the same order (the same model code on every rank does).
   */
  weight(name: string): Tensor {
    const i = this.groupIndex(name);
    let g = this.live[i];
    if (!g) {
      // Keep at most one other unpinned group: a model may read two groups' weights before using them.
      while (this.recent.length > 1) this.free(this.recent.shift() as number);
      g = this.gather(i);
    }
    if (isGradEnabled()) {
      g.pinned = true;
      this.recent = this.recent.filter((k) => k !== i);
    } else if (!g.pinned) {
      this.recent = [...this.recent.filter((k) => k !== i), i];
    }
    return g.leaves.get(name) as Tensor;
  }

  /** Backward has reduced group `bucket`'s gradients (ShardedGradients' onReduced, bucket order = reversed groups). */
  bucketReduced(bucket: number): void {
    const i = this.groups.length - 1 - bucket;
    if (this.live[i]?.pinned) this.free(i);
  }

  /** Frees every gathered group (before the update changes the shard, or when a step ends). */
  freeAll(): void {
    for (let i = 0; i < this.live.length; i++) this.free(i);
    this.recent = [];
  }

  /**
   * Starts streaming the weights out for a consolidated checkpoint: every rank calls beginSave(), then the
   * writing rank reads the trainable weights in layout order (read()), and every rank calls endSave(), which
   * gathers whatever groups the writer did not reach, so all ranks make the same collectives.
   */
  beginSave(): void {
    this.freeAll();
    this.saveCursor = 0;
  }

  endSave(): void {
    if (this.saveCursor < 0) return;
    try {
      while (this.saveCursor < this.groups.length) this.advanceSave();
    } finally {
      this.saveCursor = -1;
      this.freeAll();
    }
  }

  /** A weight's values. Inside a save: streamed (groups in layout order); otherwise a collective gather. */
  read(name: string): Float32Array {
    const i = this.groupIndex(name);
    if (this.saveCursor >= 0) {
      if (i < this.saveCursor - 1) throw new ShapeError(`ZeRO-3: ${name} read out of layout order while saving`, { where: name });
      while (this.saveCursor <= i) this.advanceSave();
    }
    const leaf = this.live[i]?.leaves.get(name) ?? this.weight(name);
    return leaf.toArray() as Float32Array;
  }

  /** Writes a weight's values into this rank's part of it (no collective). */
  load(name: string, data: Float32Array): void {
    const i = this.groupIndex(name);
    this.free(i);
    const k = this.indexOf.get(name) as number;
    const off = this.layout.offsets[k] as number;
    if (data.length !== this.shapeSize(k)) throw new ShapeError(`ZeRO-3: ${data.length} values for ${name} of ${this.shapeSize(k)}`, { where: name });
    const lo = Math.max(off, this.shard.start);
    const hi = Math.min(off + data.length, this.shard.start + this.shard.count);
    if (hi > lo) {
      const part = data.subarray(lo - off, hi - off);
      this.shardValues.backend.write(this.shardValues.handle, (lo - this.shard.start) * 4, part);
    }
  }

  /** Every rank gets the full flat buffer again (a collective): the model leaves ZeRO-3. */
  gatherAll(): FlatBuffer {
    this.freeAll();
    const full = new FlatBuffer(this.layout, this.shardValues.backend);
    if (this.shard.count > 0) {
      copyInto(this.shardSlice(this.shard.start, this.shard.count), new Tensor(full.storage, [this.shard.count], [1], this.shard.start, 'float32'), false);
    }
    if (this.pg.size > 1) {
      this.pg.allGather({ backend: full.storage.backend, handle: full.storage.handle, byteOffset: 0, count: this.layout.size, dtype: 'float32' }, shardCounts(this.layout, this.pg.size));
    }
    return full;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.freeAll();
    this.shardValues.release();
  }

  private advanceSave(): void {
    const i = this.saveCursor++;
    if (i > 0) this.free(i - 1);
    if (!this.live[i]) this.gather(i);
  }

  private groupIndex(name: string): number {
    if (this.released) throw new ShapeError(`ZeRO-3: the sharded weights were released (reading ${name})`, { where: name });
    const i = this.groupOf.get(name);
    if (i === undefined) throw new ShapeError(`ZeRO-3: no trainable weight named ${name}`, { where: name });
    return i;
  }

  private shapeSize(k: number): number {
    return (this.layout.shapes[k] as number[]).reduce((a, b) => a * b, 1);
  }

  /** A 1-D view of the shard buffer over flat elements [start, start + count). */
  private shardSlice(start: number, count: number): Tensor {
    return new Tensor(this.shardValues, [count], [1], start - this.shard.start, 'float32');
  }

  private gather(i: number): LiveGroup {
    const group = this.groups[i] as ParamGroup;
    const blocks = this.blocks[i] as number[];
    const backend = this.shardValues.backend;
    const storage = Storage.alloc(Math.max(group.count, 1) * 4, { persistent: true }, backend);
    const mine = blocks[this.pg.rank] as number;
    const lo = Math.max(group.start, this.shard.start);
    if (mine > 0) copyInto(this.shardSlice(lo, mine), new Tensor(storage, [mine], [1], lo - group.start, 'float32'), false);
    if (this.pg.size > 1) this.pg.allGather({ backend, handle: storage.handle, byteOffset: 0, count: group.count, dtype: 'float32' }, blocks);
    this.gatheredElements += group.count;
    this.gathers += 1;
    this.gatheredBytes += storage.bytes;
    this.peakGatheredBytes = Math.max(this.peakGatheredBytes, this.gatheredBytes);
    const leaves = new Map<string, Tensor>();
    for (const name of group.names) {
      const k = this.indexOf.get(name) as number;
      const shape = this.layout.shapes[k] as number[];
      const leaf = new Tensor(storage, shape, contiguousStrides(shape), (this.layout.offsets[k] as number) - group.start, 'float32');
      leaf.name = name;
      leaf.requiresGrad = true;
      this.onLeaf?.(leaf, name);
      leaves.set(name, leaf);
    }
    const g: LiveGroup = { storage, leaves, pinned: false };
    this.live[i] = g;
    return g;
  }

  private free(i: number): void {
    const g = this.live[i];
    if (!g) return;
    this.gatheredBytes -= g.storage.bytes;
    g.storage.release();
    this.live[i] = null;
    this.recent = this.recent.filter((k) => k !== i);
  }
}
