// Turns tokenized samples into fixed rows of seq_length + 1: truncation or dropping of long samples,
// padding, and packing several samples per row with segment ids. Every sample ends up counted in the report.
import { IGNORE_ID } from './qa-tokenize.ts';
import type { EncodedSample } from './qa-tokenize.ts';
import { countDrop, type PreprocessReport } from './report.ts';

export type Truncation = 'right' | 'drop';

/** Where finished rows go (RecordsWriter, MindRecordWriter). */
export interface RowSink {
  push(ids: Int32Array, labels: Int32Array, segments?: Int32Array): void;
}

export interface RowOptions {
  rowLength: number;
  padId: number;
  packing: boolean;
  truncation: Truncation;
  /** Packed text: mask each segment's first label so no sample is trained to follow the previous one. */
  maskSegmentStart?: boolean;
}

/** Trained label positions: labels[1:] that are not IGNORE_ID (the trainer shifts by one). */
function trainedIn(labels: ArrayLike<number>, from = 1): number {
  let n = 0;
  for (let i = from; i < labels.length; i++) if (labels[i] !== IGNORE_ID) n++;
  return n;
}

export class RowAssembler {
  private readonly ids: Int32Array;
  private readonly labels: Int32Array;
  private readonly segments: Int32Array;
  private used = 0;
  private segmentCount = 0;
  private padTokens = 0;
  /** Tokens of the shortest sample dropped for its length (or left with nothing to train once cut), for the error that says why no row was written. */
  shortestTooLong: number | null = null;

  constructor(
    private readonly opts: RowOptions,
    private readonly sink: RowSink,
    private readonly report: PreprocessReport,
  ) {
    this.ids = new Int32Array(opts.rowLength);
    this.labels = new Int32Array(opts.rowLength);
    this.segments = new Int32Array(opts.rowLength);
  }

  /** Adds one sample (already counted in samples_in); truncates, drops or places it. */
  add(sample: EncodedSample): void {
    const L = this.opts.rowLength;
    let { ids, labels } = sample;
    if (ids.length > L) {
      if (this.opts.truncation === 'drop') {
        this.noteTooLong(ids.length);
        countDrop(this.report, 'longer than seq_length');
        return;
      }
      ids = ids.slice(0, L);
      labels = labels.slice(0, L);
    }
    const startMasked = this.opts.maskSegmentStart === true;
    if (trainedIn(labels) === 0) {
      if (sample.ids.length > L) this.noteTooLong(sample.ids.length);
      countDrop(this.report, sample.ids.length > L ? 'nothing to train after truncation' : 'nothing to train');
      return;
    }
    if (sample.ids.length > L) {
      this.report.truncated.count++;
      this.report.truncated.tokens_lost += sample.ids.length - L;
    }
    if (!this.opts.packing) {
      this.place(ids, labels, false);
      this.flush();
      return;
    }
    if (this.used + ids.length > L) this.flush();
    this.place(ids, labels, startMasked);
  }

  private noteTooLong(tokens: number): void {
    if (this.shortestTooLong === null || tokens < this.shortestTooLong) this.shortestTooLong = tokens;
  }

  private place(ids: readonly number[], labels: readonly number[], maskStart: boolean): void {
    const at = this.used;
    this.segmentCount++;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      this.ids[at + i] = id;
      this.labels[at + i] = maskStart && i === 0 ? IGNORE_ID : (labels[i] as number);
      this.segments[at + i] = this.segmentCount;
      if (id > this.report.max_token_id) this.report.max_token_id = id;
    }
    this.used += ids.length;
  }

  /** Pads and writes the current row, if it holds anything. */
  flush(): void {
    if (this.used === 0) return;
    const L = this.opts.rowLength;
    this.ids.fill(this.opts.padId, this.used);
    this.labels.fill(IGNORE_ID, this.used);
    this.segments.fill(0, this.used);
    if (this.opts.padId > this.report.max_token_id && this.used < L) this.report.max_token_id = this.opts.padId;
    this.report.total_tokens += this.used;
    this.report.trained_tokens += trainedIn(this.labels);
    this.padTokens += L - this.used;
    this.sink.push(this.ids, this.labels, this.opts.packing ? this.segments : undefined);
    this.report.rows_out++;
    this.used = 0;
    this.segmentCount = 0;
  }

  /** Writes the last row and fills in the padding fraction. */
  finish(): void {
    this.flush();
    const all = this.report.rows_out * this.opts.rowLength;
    this.report.padding_fraction = all === 0 ? 0 : this.padTokens / all;
  }
}

/**
 * MindFormers' pretraining layout: a stream of tokens cut into whole rows, the tail dropped (counted).
 * Labels equal input ids.
 */
export class StreamChunker {
  private readonly row: Int32Array;
  private used = 0;

  constructor(
    private readonly rowLength: number,
    private readonly sink: RowSink,
    private readonly report: PreprocessReport,
  ) {
    this.row = new Int32Array(rowLength);
  }

  add(ids: readonly number[]): void {
    for (const id of ids) {
      this.row[this.used++] = id;
      if (id > this.report.max_token_id) this.report.max_token_id = id;
      if (this.used === this.rowLength) {
        this.sink.push(this.row, this.row);
        this.report.rows_out++;
        this.report.total_tokens += this.rowLength;
        this.report.trained_tokens += this.rowLength - 1;
        this.used = 0;
      }
    }
  }

  finish(): void {
    this.report.tail_tokens_dropped += this.used;
    this.used = 0;
    this.report.padding_fraction = 0;
  }
}
