// What the data loader reads: a fixed-length table of token rows, whatever file format holds it (our token
// records today, MindRecord next). Everything here is about rows and tokens, nothing about files or shards.
import { DataError } from '../errors.ts';

/** Where one row lands: each array gets rowLength values at element offset `at`. */
export interface RowBuffers {
  inputIds: Int32Array;
  labels: Int32Array;
  /** Filled only when the store has segment ids (packed rows). */
  segmentIds?: Int32Array | undefined;
}

/** The tokenizer the rows were made with (DESIGN.md's tokenizer identity contract). */
export interface RowTokenizer {
  identity: string;
  vocabSize: number;
}

/** What the tokenizer-identity and vocabulary checks need to know about rows, opened or not. */
export interface RowStoreInfo {
  /** Names the data in messages: the file that describes the rows (records: their manifest.json). */
  readonly source: string;
  readonly seqLength: number;
  readonly tokenizer: RowTokenizer;
  /** The largest token id any row holds, padding included (-1 for no rows). */
  readonly maxTokenId: number;
}

export interface RowStore extends RowStoreInfo {
  readonly rows: number;
  /** seqLength + 1: inputs are [:-1] and targets labels[1:] (DESIGN.md's records contract). */
  readonly rowLength: number;
  /** Rows are packed samples with segment ids (0 = padding). */
  readonly hasSegments: boolean;
  /** Copies row `row` (0-based, below `rows`) into the buffers at element offset `at`; the same row always reads the same. */
  readInto(row: number, dst: RowBuffers, at?: number): void;
  /** Releases what the store holds (mappings, files); reading afterwards is an error. */
  close(): void;
}

/** What training expects of the rows: the model's tokenizer, sequence length and vocabulary. */
export interface TrainingSetup {
  tokenizerIdentity: string;
  /** Identities earlier sftkit versions gave the same tokenizer (Tokenizer.earlierIdentities), asked only on a mismatch. */
  earlierIdentities?: () => readonly string[];
  seqLength: number;
  vocabSize: number;
}

/** Errors (before training starts) when rows were made for another tokenizer, sequence length or vocabulary. */
export function validateRowsFor(rows: RowStoreInfo, setup: TrainingSetup): void {
  const where = rows.source;
  const identity = rows.tokenizer.identity;
  // '' : rows whose tokenizer was not recorded (MindRecord); only the vocabulary check below applies to them.
  if (identity !== '' && identity !== setup.tokenizerIdentity && setup.earlierIdentities?.().includes(identity) !== true) {
    throw new DataError(`${where}: the records were tokenized with another tokenizer (identity ${identity.slice(0, 12)}…, the model's is ${setup.tokenizerIdentity.slice(0, 12)}…)`, {
      where,
      hint: "run `sftkit data preprocess` again with the model's tokenizer",
    });
  }
  if (rows.seqLength !== setup.seqLength) {
    throw new DataError(`${where}: the records have seq_length ${rows.seqLength}, training uses ${setup.seqLength}`, { where, hint: 'preprocess again with --seq_length or change the training seq_length' });
  }
  if (rows.tokenizer.vocabSize > setup.vocabSize || rows.maxTokenId >= setup.vocabSize) {
    throw new DataError(`${where}: the records use token ids up to ${rows.maxTokenId} (tokenizer vocabulary ${rows.tokenizer.vocabSize}), the model's vocabulary has ${setup.vocabSize}`, {
      where,
      hint: 'the model and the tokenizer of the records do not belong together',
    });
  }
}
