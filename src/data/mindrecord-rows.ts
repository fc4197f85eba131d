// MindFormers' MindRecord datasets (llama_preprocess.py's input_ids / labels, seq_length + 1 each) as a RowStore,
// so `sftkit run --train_dataset_dir data.mindrecord` trains on them directly. A MindRecord file carries no
// tokenizer identity: its rows are checked against the model's vocabulary only (the caller says so).
import { DataError } from '../errors.ts';
import { MindRecordReader } from '../formats/mindrecord.ts';
import type { RowBuffers, RowStore } from './row-store.ts';

/** The identity of rows whose tokenizer is not recorded: validateRowsFor skips the identity check for it. */
export const UNKNOWN_TOKENIZER = '';

export class MindRecordRows implements RowStore {
  readonly source: string;
  readonly rows: number;
  readonly seqLength: number;
  readonly rowLength: number;
  readonly hasSegments = false;
  readonly tokenizer = { identity: UNKNOWN_TOKENIZER, vocabSize: 0 };
  readonly maxTokenId: number;
  private reader: MindRecordReader | null;

  private constructor(reader: MindRecordReader) {
    this.reader = reader;
    this.source = reader.path;
    this.rows = reader.rowCount;
    this.seqLength = reader.seqLength;
    this.rowLength = reader.seqLength + 1;
    // The vocabulary check needs the largest id: one pass over the rows at open (each row is checked as it decodes).
    let max = -1;
    for (let i = 0; i < this.rows; i++) {
      const r = reader.readRow(i);
      for (const v of r.input_ids) if (v > max) max = v;
      for (const v of r.labels) if (v > max) max = v;
    }
    this.maxTokenId = max;
  }

  static open(path: string): MindRecordRows {
    const reader = MindRecordReader.open(path);
    try {
      return new MindRecordRows(reader);
    } catch (err) {
      reader.close();
      throw err;
    }
  }

  readInto(row: number, dst: RowBuffers, at = 0): void {
    if (!this.reader) throw new DataError(`${this.source}: read after close`, { where: this.source });
    if (!Number.isInteger(row) || row < 0 || row >= this.rows) throw new DataError(`${this.source}: no row ${row} (${this.rows} rows)`, { where: this.source });
    const r = this.reader.readRow(row);
    dst.inputIds.set(r.input_ids, at);
    dst.labels.set(r.labels, at);
    dst.segmentIds?.fill(0, at, at + this.rowLength);
  }

  close(): void {
    this.reader?.close();
    this.reader = null;
  }
}
