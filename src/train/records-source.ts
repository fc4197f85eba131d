// Token records (src/data) as the trainer's BatchSource: a seeded permutation per epoch, global batches
// of batchSize × worldSize rows of which each rank reads its slice, so 2 ranks × b read exactly the rows
// 1 rank reads with accumulation 2 × b, and any (epoch, batch) is addressable: resume replays nothing.
import { DataError } from '../errors.ts';
import type { Records } from '../data/records.ts';
import { Rng } from '../tensor/index.ts';
import type { BatchSource, TrainBatch } from './batches.ts';

export interface RecordsSourceOptions {
  batchSize: number;
  shuffle: boolean;
  dropRemainder: boolean;
  seed: number;
  rank?: number;
  worldSize?: number;
}

export class RecordsBatchSource implements BatchSource {
  readonly batchSize: number;
  readonly rowLength: number;
  readonly batchesPerEpoch: number;
  private readonly rank: number;
  private readonly worldSize: number;
  private order: { epoch: number; perm: Int32Array } | null = null;

  constructor(
    private readonly records: Records,
    private readonly opts: RecordsSourceOptions,
  ) {
    this.batchSize = opts.batchSize;
    this.rowLength = records.rowLength;
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    const global = this.batchSize * this.worldSize;
    this.batchesPerEpoch = opts.dropRemainder ? Math.floor(records.rows / global) : Math.ceil(records.rows / global);
    if (this.batchesPerEpoch === 0) {
      throw new DataError(`${records.dir}: ${records.rows} rows make no full batch of ${global} (batch_size ${this.batchSize} × ${this.worldSize} ranks)`, {
        where: records.dir,
        hint: 'lower batch_size, or set drop_remainder: false',
      });
    }
  }

  private permutation(epoch: number): Int32Array {
    if (!this.order || this.order.epoch !== epoch) {
      const perm = this.opts.shuffle ? new Rng(this.opts.seed * 1_000_003 + epoch).permutation(this.records.rows) : Int32Array.from(this.records.rows === 0 ? [] : Array.from({ length: this.records.rows }, (_, i) => i));
      this.order = { epoch, perm };
    }
    return this.order.perm;
  }

  batch(epoch: number, index: number): TrainBatch {
    if (index < 0 || index >= this.batchesPerEpoch) throw new DataError(`batch ${index} is past the end of the epoch (${this.batchesPerEpoch} batches)`);
    const perm = this.permutation(epoch);
    const global = this.batchSize * this.worldSize;
    const start = Math.min(index * global + this.rank * this.batchSize, this.records.rows);
    const end = Math.min(start + this.batchSize, this.records.rows, (index + 1) * global);
    const n = end - start;
    const L = this.rowLength;
    const inputIds = new Int32Array(n * L);
    const labels = new Int32Array(n * L);
    const segmentIds = this.records.hasSegments ? new Int32Array(n * L) : undefined;
    for (let i = 0; i < n; i++) {
      const row = perm[start + i] as number;
      this.records.readRow(row, 'input_ids', inputIds, i * L);
      this.records.readRow(row, 'labels', labels, i * L);
      if (segmentIds) this.records.readRow(row, 'segment_ids', segmentIds, i * L);
    }
    return { inputIds, labels, segmentIds };
  }
}
