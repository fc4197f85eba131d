// A row store (token records, later MindRecord) as the trainer's BatchSource, through the data loader
// (src/data/loader.ts): a batch is addressed by (epoch, index), the loader's global cursor {epoch, position: index × global batch},
// so resume replays nothing and 2 ranks × b read exactly the rows 1 rank reads with accumulation 2 × b.
import type { LoaderCursor } from '../data/loader.ts';
import { DataLoader, type LoaderOptions } from '../data/loader.ts';
import type { RowStore } from '../data/row-store.ts';
import type { BatchSource, TrainBatch } from './batches.ts';

export class RecordsBatchSource implements BatchSource {
  readonly batchSize: number;
  readonly rowLength: number;
  readonly batchesPerEpoch: number;
  private readonly loader: DataLoader;

  constructor(store: RowStore, opts: LoaderOptions) {
    this.loader = new DataLoader(store, opts);
    this.batchSize = this.loader.batchSize;
    this.rowLength = store.rowLength;
    this.batchesPerEpoch = this.loader.stepsPerEpoch;
  }

  /** The loader's cursor at the start of batch `index` of `epoch`. */
  cursorAt(epoch: number, index: number): LoaderCursor {
    const c = this.loader.cursor();
    return { ...c, epoch, position: index * this.loader.globalBatch };
  }

  batch(epoch: number, index: number): TrainBatch {
    this.loader.restore(this.cursorAt(epoch, index));
    const b = this.loader.next();
    if (!b) throw new Error(`records: batch ${index} of epoch ${epoch} is past the end of the epoch`);
    return { inputIds: b.inputIds, labels: b.labels, segmentIds: b.segmentIds };
  }
}
