// The training data loader (DESIGN.md contract): batches of rows from a row store (token records, ...), a seeded
// shuffle per epoch, sharding by data-parallel rank, and a global cursor that restores exactly on any world size.
import { ConfigError, DataError } from '../errors.ts';
import type { RowStore } from './row-store.ts';

export interface LoaderOptions {
  /** Rows per rank per step. */
  batchSize: number;
  /** Shuffle every epoch (default true). */
  shuffle?: boolean;
  /** Skip an epoch's last global batch when it is not full (default true). */
  dropRemainder?: boolean;
  /** Seed of the per-epoch permutations (default 0). */
  seed?: number;
  /** Data-parallel rank and world size (default 0 of 1). */
  rank?: number;
  worldSize?: number;
}

/**
 * Where the whole job (all ranks together) stands: `position` samples of epoch `epoch`'s order are consumed.
 * It does not depend on the rank, the world size or the batch size, so it restores under any of them.
 */
export interface LoaderCursor {
  epoch: number;
  position: number;
  /** What the order depends on, checked on restore. */
  rows: number;
  seed: number;
  shuffle: boolean;
}

export interface Batch {
  /** Rows × (seq_length + 1); inputs are [:, :-1], targets labels[:, 1:]. */
  inputIds: Int32Array;
  labels: Int32Array;
  segmentIds?: Int32Array;
  /** Rows in this rank's batch (batchSize, or fewer in a last partial batch; may be 0 there). */
  rows: number;
  /** Rows in the global batch of this step (all ranks). */
  globalRows: number;
  epoch: number;
}

/** splitmix32 (seeding) and xoshiro128** (draws): small, fast, and specified in docs/DATA.md. */
function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

class Xoshiro128 {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number, stream: number) {
    const st = { s: (seed ^ Math.imul(stream + 1, 0x632be5ab)) | 0 };
    this.a = splitmix32(st);
    this.b = splitmix32(st);
    this.c = splitmix32(st);
    this.d = splitmix32(st);
  }
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }
  /** Uniform in [0, n) for n ≤ 2^32, by rejection (no modulo bias). */
  below(n: number): number {
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** The order of rows in `epoch`: identity, or a Fisher-Yates shuffle drawn from (seed, epoch). */
export function epochOrder(rows: number, epoch: number, seed: number, shuffle: boolean): Uint32Array {
  const order = new Uint32Array(rows);
  for (let i = 0; i < rows; i++) order[i] = i;
  if (!shuffle) return order;
  const rng = new Xoshiro128(seed, epoch);
  for (let i = rows - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const t = order[i] as number;
    order[i] = order[j] as number;
    order[j] = t;
  }
  return order;
}

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropRemainder: boolean;
  readonly seed: number;
  readonly rank: number;
  readonly worldSize: number;
  private ep = 0;
  private pos = 0;
  private order: Uint32Array | null = null;
  private orderEpoch = -1;

  constructor(
    readonly store: RowStore,
    opts: LoaderOptions,
  ) {
    const int = (name: string, v: number, min: number): number => {
      if (!Number.isInteger(v) || v < min) throw new ConfigError(`data loader: ${name} must be an integer ≥ ${min} (got ${v})`, { where: name });
      return v;
    };
    this.batchSize = int('batch_size', opts.batchSize, 1);
    this.shuffle = opts.shuffle ?? true;
    this.dropRemainder = opts.dropRemainder ?? true;
    this.seed = int('seed', opts.seed ?? 0, -(2 ** 31)) | 0;
    this.worldSize = int('world_size', opts.worldSize ?? 1, 1);
    this.rank = int('rank', opts.rank ?? 0, 0);
    if (this.rank >= this.worldSize) throw new ConfigError(`data loader: rank ${this.rank} is not below world size ${this.worldSize}`, { where: 'rank' });
    if (this.stepsPerEpoch === 0) {
      throw new DataError(`${store.source}: ${store.rows} rows do not fill one global batch of ${this.globalBatch} (batch ${this.batchSize} × ${this.worldSize} ranks)`, {
        where: store.source,
        hint: 'use a smaller batch size, or drop_remainder: false',
      });
    }
  }

  /** Rows per step over all ranks. */
  get globalBatch(): number {
    return this.batchSize * this.worldSize;
  }

  /** Steps in a whole epoch (from position 0). */
  get stepsPerEpoch(): number {
    const n = this.store.rows;
    return this.dropRemainder ? Math.floor(n / this.globalBatch) : Math.ceil(n / this.globalBatch);
  }

  get epoch(): number {
    return this.ep;
  }

  cursor(): LoaderCursor {
    return { epoch: this.ep, position: this.pos, rows: this.store.rows, seed: this.seed, shuffle: this.shuffle };
  }

  /** Continues from a cursor saved by any rank of a job with any world size or batch size. */
  restore(c: LoaderCursor): void {
    const where = 'data loader cursor';
    if (!Number.isInteger(c.epoch) || c.epoch < 0 || !Number.isInteger(c.position) || c.position < 0 || c.position > this.store.rows) {
      throw new DataError(`${where}: epoch ${c.epoch} position ${c.position} is not valid for ${this.store.rows} rows`, { where });
    }
    if (c.rows !== this.store.rows || c.seed !== this.seed || c.shuffle !== this.shuffle) {
      throw new DataError(`${where}: saved for ${c.rows} rows, seed ${c.seed}, shuffle ${c.shuffle}; this loader has ${this.store.rows}, ${this.seed}, ${this.shuffle}`, {
        where,
        hint: 'resume with the same token records, seed and shuffle setting',
      });
    }
    this.ep = c.epoch;
    this.pos = c.position;
  }

  private orderOf(epoch: number): Uint32Array {
    if (this.orderEpoch !== epoch || this.order === null) {
      this.order = epochOrder(this.store.rows, epoch, this.seed, this.shuffle);
      this.orderEpoch = epoch;
    }
    return this.order;
  }

  /**
   * This rank's next batch, or null once at the end of each epoch (the cursor then moves to the next epoch).
   * Every rank must call it in step: each call consumes one global batch.
   */
  next(): Batch | null {
    const n = this.store.rows;
    const left = n - this.pos;
    const global = Math.min(this.globalBatch, left);
    if (global <= 0 || (this.dropRemainder && global < this.globalBatch)) {
      this.ep++;
      this.pos = 0;
      return null;
    }
    const order = this.orderOf(this.ep);
    // A full step gives each rank batchSize rows; a last partial one splits its rows as evenly as possible.
    const from = this.pos + Math.floor((this.rank * global) / this.worldSize);
    const to = this.pos + Math.floor(((this.rank + 1) * global) / this.worldSize);
    const rows = to - from;
    const L = this.store.rowLength;
    const inputIds = new Int32Array(rows * L);
    const labels = new Int32Array(rows * L);
    const segmentIds = this.store.hasSegments ? new Int32Array(rows * L) : undefined;
    const dst = { inputIds, labels, segmentIds };
    for (let i = 0; i < rows; i++) this.store.readInto(order[from + i] as number, dst, i * L);
    const batch: Batch = { inputIds, labels, rows, globalRows: global, epoch: this.ep };
    if (segmentIds !== undefined) batch.segmentIds = segmentIds;
    this.pos += global;
    return batch;
  }
}
