// ZeRO-1 optimizer sharding: each rank owns a contiguous, aligned slice of the flat parameters, keeps AdamW
// moments only for it, updates it from the reduce-scattered gradients, then all-gathers the parameters.
import { ShapeError } from '../errors.ts';
import { type AdamWHyper, type AdamWOptions, adamwHyper, adamwStep } from '../tensor/adamw.ts';
import { type FlatBuffer, type FlatLayout, Storage } from '../tensor/index.ts';
import { DEFAULT_BUCKET_BYTES } from './gradients.ts';
import type { ProcessGroup, Span } from './process-group.ts';

/** Shard boundaries fall on multiples of 16 floats (64 bytes), like the tensors of a flat buffer. */
const ALIGN = 16;

export interface ShardRange {
  /** First element of the flat buffer this rank owns. */
  start: number;
  count: number;
}

/** Elements owned by each rank: equal aligned blocks, the last ones shorter (or empty) at the end of the buffer. */
export function shardCounts(layout: FlatLayout, size: number): number[] {
  if (!Number.isInteger(size) || size < 1) throw new ShapeError(`shard: world size must be a positive integer, got ${size}`);
  const per = Math.ceil(layout.size / (ALIGN * size)) * ALIGN;
  return Array.from({ length: size }, (_, r) => Math.min(per, Math.max(0, layout.size - r * per)));
}

/** Which elements of the flat parameters rank `rank` of `size` owns. */
export function shardRange(layout: FlatLayout, rank: number, size: number): ShardRange {
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new ShapeError(`shard: rank ${rank} is not in a world of ${size}`);
  const counts = shardCounts(layout, size);
  const per = counts[0] as number;
  return { start: Math.min(rank * per, layout.size), count: counts[rank] as number };
}

/** Pieces of tensors inside a shard: [tensor name, first element in the flat buffer, element count]. */
export function tensorsInShard(layout: FlatLayout, shard: ShardRange): { name: string; start: number; count: number }[] {
  const out: { name: string; start: number; count: number }[] = [];
  const end = shard.start + shard.count;
  layout.names.forEach((name, i) => {
    const off = layout.offsets[i] as number;
    const n = (layout.shapes[i] as number[]).reduce((a, b) => a * b, 1);
    const lo = Math.max(off, shard.start);
    const hi = Math.min(off + n, end);
    if (hi > lo) out.push({ name, start: lo, count: hi - lo });
  });
  return out;
}

/**
 * Reduces the full gradient buffer across ranks into `shardGrads`, which receives only this rank's shard. In
 * chunks of about bucketBytes, each reduce-scattered on its own (its blocks are its overlap with each rank's
 * shard): one call over the whole buffer would make OpenMPI allocate scratch of the whole buffer's size.
 */
export function reduceScatterGradients(grads: FlatBuffer, pg: ProcessGroup, shardGrads: Span, op: 'sum' | 'avg' = 'avg', bucketBytes = DEFAULT_BUCKET_BYTES): void {
  const { backend, handle } = grads.storage;
  reduceScatterRange(pg, grads.layout, { backend, handle, byteOffset: 0, count: grads.layout.size, dtype: 'float32' }, 0, shardGrads, op, bucketBytes);
}

/**
 * Reduce-scatters `send`, which holds the flat elements [start, start + send.count), into `shard` (this rank's
 * whole shard buffer, from its first element): each rank receives the part inside its shard. In chunks of about
 * bucketBytes (OpenMPI's reduce-scatter allocates scratch the size of what it is given).
 */
export function reduceScatterRange(pg: ProcessGroup, layout: FlatLayout, send: Span, start: number, shard: Span, op: 'sum' | 'avg', bucketBytes = DEFAULT_BUCKET_BYTES): void {
  const counts = shardCounts(layout, pg.size);
  const starts = counts.map((_, r) => shardRange(layout, r, pg.size).start);
  const mine = shardRange(layout, pg.rank, pg.size);
  const chunk = Math.max(ALIGN, Math.floor(bucketBytes / 4 / ALIGN) * ALIGN);
  const end = start + send.count;
  for (let a = start; a < end || a === start; a += chunk) {
    const b = Math.min(end, a + chunk);
    const blocks = counts.map((c, r) => Math.max(0, Math.min(b, (starts[r] as number) + c) - Math.max(a, starts[r] as number)));
    const own = blocks[pg.rank] as number;
    const at = own > 0 ? Math.max(a, mine.start) - mine.start : 0;
    pg.reduceScatter(
      { ...send, byteOffset: send.byteOffset + (a - start) * 4, count: b - a },
      { ...shard, byteOffset: shard.byteOffset + at * 4, count: own },
      { op, counts: blocks },
    );
    if (end === start) break;
  }
}

/** After each rank updated its shard in place, every rank gets every shard. */
export function allGatherParameters(params: Pick<FlatBuffer, 'layout' | 'storage'>, pg: ProcessGroup): void {
  if (pg.size === 1) return;
  pg.allGather({ backend: params.storage.backend, handle: params.storage.handle, byteOffset: 0, count: params.layout.size, dtype: 'float32' }, shardCounts(params.layout, pg.size));
}

export interface ShardedAdamWOptions extends AdamWOptions {
  /** How gradients combine across ranks: 'avg' (default) or 'sum' (loss already normalized by the global token count). */
  gradOp?: 'sum' | 'avg';
  /**
   * This rank's reduced gradients, kept by the caller (ZeRO-2's ShardedGradients fills them during backward);
   * then `grads` is null and reduceGradients() is not used. Not released by release().
   */
  shardGrads?: Storage;
  /**
   * ZeRO-3: this rank's shard of the parameters (shard.count floats, kept by the caller's ShardedParameters):
   * the update writes there and no full buffer is all-gathered; `params` then gives only the layout and backend.
   */
  shardParams?: Storage;
  /** Chunk size of reduceGradients()' reduce-scatter (default DEFAULT_BUCKET_BYTES). */
  bucketBytes?: number;
}

/**
 * AdamW (same arithmetic as train/adamw.ts, the fused native step) on this rank's shard only. A step is
 * reduceGradients() → (optional gradNorm() for clipping) → update(lr, gradScale, skip), which ends with the
 * all-gather, so every rank holds the same full parameters afterwards.
 */
export class ShardedAdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  step = 0;
  readonly shard: ShardRange;
  /** Moments of the shard (shard.count floats each) and the shard's reduced gradients. */
  readonly m: Storage;
  readonly v: Storage;
  readonly shardGrads: Storage;
  private readonly params: Pick<FlatBuffer, 'layout' | 'storage'>;
  private readonly shardParams: Storage | null;
  private readonly grads: FlatBuffer | null;
  private readonly ownsShardGrads: boolean;
  private readonly pg: ProcessGroup;
  private readonly gradOp: 'sum' | 'avg';
  private readonly bucketBytes: number;
  private readonly hyper: AdamWHyper;
  private readonly pieces: { name: string; start: number; count: number }[];

  constructor(params: Pick<FlatBuffer, 'layout' | 'storage'>, grads: FlatBuffer | null, pg: ProcessGroup, opts: ShardedAdamWOptions) {
    this.hyper = adamwHyper(opts);
    ({ beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay } = this.hyper);
    if (grads === null && !opts.shardGrads) throw new ShapeError('sharded AdamW: needs either the full gradients or the shard of reduced gradients');
    if (grads !== null && params.layout.size !== grads.layout.size) {
      throw new ShapeError(`sharded AdamW: parameters (${params.layout.size}) and gradients (${grads.layout.size}) differ in size`);
    }
    this.params = params;
    this.shardParams = opts.shardParams ?? null;
    this.grads = grads;
    this.pg = pg;
    this.gradOp = opts.gradOp ?? 'avg';
    this.bucketBytes = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    this.shard = shardRange(params.layout, pg.rank, pg.size);
    const bytes = Math.max(this.shard.count, 1) * 4;
    this.m = Storage.alloc(bytes, { zero: true, persistent: true }, params.storage.backend);
    this.v = Storage.alloc(bytes, { zero: true, persistent: true }, params.storage.backend);
    if (opts.shardGrads && opts.shardGrads.bytes < this.shard.count * 4) {
      throw new ShapeError(`sharded AdamW: the given shard gradients hold ${opts.shardGrads.bytes} bytes, the shard needs ${this.shard.count * 4}`);
    }
    this.ownsShardGrads = !opts.shardGrads;
    this.shardGrads = opts.shardGrads ?? Storage.alloc(bytes, { zero: true, persistent: true }, params.storage.backend);
    if (this.shardParams && this.shardParams.bytes < this.shard.count * 4) {
      throw new ShapeError(`sharded AdamW: the given shard parameters hold ${this.shardParams.bytes} bytes, the shard needs ${this.shard.count * 4}`);
    }
    this.pieces = tensorsInShard(params.layout, this.shard);
  }

  /** Reduce-scatters the full gradient buffer into this rank's shard of gradients. */
  reduceGradients(): void {
    if (this.grads === null) throw new ShapeError('sharded AdamW: no full gradients to reduce (the shard is filled by its owner)');
    reduceScatterGradients(this.grads, this.pg, this.shardSpan(this.shardGrads), this.gradOp, this.bucketBytes);
  }

  /** The global L2 norm of the reduced gradients (every rank gets the same value). */
  gradNorm(): number {
    const local = this.shard.count > 0 ? this.shardGrads.backend.sumsq(this.shardGrads.handle, 0, this.shard.count) : 0;
    return Math.sqrt(this.pg.allReduceNumbers([local])[0] as number);
  }

  /** One AdamW update of the shard (gradients times gradScale), then the all-gather of the parameters. */
  update(lr: number, gradScale = 1, skip: (name: string) => boolean = () => false): void {
    this.step += 1;
    // Parameters are addressed in the full flat buffer (in the shard's own buffer at ZeRO-3); gradients and
    // moments in the shard-sized buffers.
    const sp = this.shardParams;
    const pieces = this.pieces.map(({ name, start, count }) => {
      const local = (start - this.shard.start) * 4;
      return { name, count, pOff: sp ? local : start * 4, gOff: local, mOff: local, vOff: local };
    });
    const buffers = { backend: this.params.storage.backend, p: (sp ?? this.params.storage).handle, g: this.shardGrads.handle, m: this.m.handle, v: this.v.handle };
    adamwStep(this.hyper, this.step, lr, gradScale, buffers, pieces, skip);
    if (!sp) allGatherParameters(this.params, this.pg);
  }

  /** The moments as typed arrays (shard.count each), e.g. for optimizer/rank_<r>.safetensors. */
  readState(): { m: Float32Array; v: Float32Array; step: number } {
    const m = new Float32Array(this.shard.count);
    const v = new Float32Array(this.shard.count);
    if (this.shard.count > 0) {
      this.m.backend.read(this.m.handle, 0, m);
      this.v.backend.read(this.v.handle, 0, v);
    }
    return { m, v, step: this.step };
  }

  loadState(state: { m: Float32Array; v: Float32Array; step: number }): void {
    if (state.m.length !== this.shard.count || state.v.length !== this.shard.count) {
      throw new ShapeError(`sharded AdamW: state of ${state.m.length}/${state.v.length} moments for a shard of ${this.shard.count}`);
    }
    if (this.shard.count > 0) {
      this.m.backend.write(this.m.handle, 0, state.m);
      this.v.backend.write(this.v.handle, 0, state.v);
    }
    this.step = state.step;
  }

  release(): void {
    this.m.release();
    this.v.release();
    if (this.ownsShardGrads) this.shardGrads.release();
  }

  private shardSpan(s: Storage): Span {
    return { backend: s.backend, handle: s.handle, byteOffset: 0, count: this.shard.count, dtype: 'float32' };
  }
}
