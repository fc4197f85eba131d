// What the trainer reads: batches of token rows by (epoch, index), so a cursor is just two numbers and
// resume never replays data. Rows are seq_length + 1 long; the trainer shifts them (DESIGN.md).
import { DataError } from '../errors.ts';
import { Rng } from '../tensor/index.ts';

export interface TrainBatch {
  /** batch × rowLength token ids. */
  inputIds: Int32Array;
  /** batch × rowLength labels (-100 = not trained). */
  labels: Int32Array;
  /** batch × rowLength segment ids of packed rows (0 = padding), when packed. */
  segmentIds?: Int32Array | undefined;
}

export interface BatchSource {
  /** Rows per batch (this rank's share of the global batch). */
  readonly batchSize: number;
  /** seq_length + 1. */
  readonly rowLength: number;
  readonly batchesPerEpoch: number;
  /** Batch `index` (0-based) of epoch `epoch` (0-based); the same arguments always give the same rows. */
  batch(epoch: number, index: number): TrainBatch;
}

/** Rows held in memory, shuffled per epoch from a seed; for tests and for library users with small data. */
export class ArrayBatchSource implements BatchSource {
  readonly batchSize: number;
  readonly rowLength: number;
  readonly batchesPerEpoch: number;
  private readonly rows: { inputIds: Int32Array; labels: Int32Array }[];
  private readonly shuffle: boolean;
  private readonly seed: number;
  private order: { epoch: number; perm: Int32Array } | null = null;

  constructor(rows: { inputIds: Int32Array; labels: Int32Array }[], opts: { batchSize: number; shuffle?: boolean; seed?: number }) {
    const first = rows[0];
    if (!first) throw new DataError('no rows to train on');
    this.rowLength = first.inputIds.length;
    for (const [i, r] of rows.entries()) {
      if (r.inputIds.length !== this.rowLength || r.labels.length !== this.rowLength) throw new DataError(`row ${i} is not ${this.rowLength} tokens long`);
    }
    this.rows = rows;
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    this.batchesPerEpoch = Math.floor(rows.length / opts.batchSize);
  }

  batch(epoch: number, index: number): TrainBatch {
    if (index < 0 || index >= this.batchesPerEpoch) throw new DataError(`batch ${index} is past the end of the epoch (${this.batchesPerEpoch} batches)`);
    if (!this.order || this.order.epoch !== epoch) {
      const perm = this.shuffle ? new Rng(this.seed * 1_000_003 + epoch).permutation(this.rows.length) : Int32Array.from(this.rows.keys());
      this.order = { epoch, perm };
    }
    const inputIds = new Int32Array(this.batchSize * this.rowLength);
    const labels = new Int32Array(this.batchSize * this.rowLength);
    for (let b = 0; b < this.batchSize; b++) {
      const row = this.rows[this.order.perm[index * this.batchSize + b] as number] as { inputIds: Int32Array; labels: Int32Array };
      inputIds.set(row.inputIds, b * this.rowLength);
      labels.set(row.labels, b * this.rowLength);
    }
    return { inputIds, labels };
  }
}
