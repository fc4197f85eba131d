// Token records (DESIGN.md contract): manifest.json plus raw little-endian int32 shards [rows, seq_length + 1]
// per column; written by RecordsWriter into a temp directory, read back memory-mapped by openRecords.
import { createHash, type Hash } from 'node:crypto';
import { closeSync, readFileSync, statSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { type Handle } from '../backend/compute.ts';
import { host } from '../backend/host.ts';
import { nativeBackend as native } from '../backend/native.ts';
import { DataError, FormatError, describeValue } from '../errors.ts';
import { openForWrite, syncAndClose, writeAllSync, writeFileAtomicSync } from '../formats/write-file.ts';
import type { PreprocessReport } from './report.ts';
import { type RowBuffers, type RowStore, type RowStoreInfo, type RowTokenizer, type TrainingSetup, validateRowsFor } from './row-store.ts';

export type { TrainingSetup } from './row-store.ts';

export const RECORDS_MAGIC = 'sftkit-records';
export const RECORDS_VERSION = 1;
export const MANIFEST_NAME = 'manifest.json';

export type Column = 'input_ids' | 'labels' | 'segment_ids';

export interface ShardEntry {
  rows: number;
  /** File name and sha256 of each column's shard. */
  files: Partial<Record<Column, { name: string; sha256: string }>>;
}

export interface RecordsManifest {
  magic: typeof RECORDS_MAGIC;
  version: number;
  seq_length: number;
  /** seq_length + 1: the trainer's inputs are [:, :-1], its targets labels[:, 1:]. */
  row_length: number;
  rows: number;
  columns: Partial<Record<Column, 'int32'>>;
  byte_order: 'little';
  dataset_type: string;
  template: string | null;
  /** 'alpaca' when every sample's first user message is a full Stanford Alpaca prompt (alpaca_converter's output), so generation wraps prompts the same way. */
  prompt_format?: 'alpaca' | null;
  packed: boolean;
  pad_id: number;
  ignore_id: -100;
  tokenizer: { identity: string; kind: string; vocab_size: number; bos_id: number | null; eos_id: number | null };
  shards: ShardEntry[];
  report: PreprocessReport;
}

export type RecordsInfo = Omit<RecordsManifest, 'magic' | 'version' | 'row_length' | 'rows' | 'columns' | 'byte_order' | 'shards' | 'report'>;

const shardName = (col: Column, i: number): string => `${col}-${String(i).padStart(5, '0')}.bin`;

function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new FormatError('token records are little-endian int32; this machine is big-endian', { where: 'records' });
}

interface OpenShard {
  fd: number;
  hash: Hash;
  name: string;
}

/** Streams rows into column shards, hashing as it writes; `finish` writes manifest.json. */
export class RecordsWriter {
  readonly rowLength: number;
  private readonly columns: Column[];
  private readonly buffers: Record<string, Int32Array>;
  private buffered = 0;
  private shards: ShardEntry[] = [];
  private open: Partial<Record<Column, OpenShard>> = {};
  private rowsInShard = 0;
  private rows = 0;
  private readonly rowsPerShard: number;

  constructor(
    private readonly dir: string,
    opts: { seqLength: number; segments: boolean; rowsPerShard?: number; bufferRows?: number },
  ) {
    assertLittleEndian();
    this.rowLength = opts.seqLength + 1;
    this.columns = opts.segments ? ['input_ids', 'labels', 'segment_ids'] : ['input_ids', 'labels'];
    // Shards of at most ~1 GiB per column keep each mapping modest.
    this.rowsPerShard = opts.rowsPerShard ?? Math.max(1, Math.floor(2 ** 30 / (4 * this.rowLength)));
    const bufferRows = Math.max(1, Math.min(opts.bufferRows ?? 256, this.rowsPerShard));
    this.buffers = Object.fromEntries(this.columns.map((c) => [c, new Int32Array(bufferRows * this.rowLength)]));
  }

  get rowCount(): number {
    return this.rows;
  }

  /** Appends one row; each array has row_length values. */
  push(ids: Int32Array, labels: Int32Array, segments?: Int32Array): void {
    const L = this.rowLength;
    const at = this.buffered * L;
    (this.buffers['input_ids'] as Int32Array).set(ids, at);
    (this.buffers['labels'] as Int32Array).set(labels, at);
    if (this.columns.length === 3) {
      if (segments === undefined) throw new DataError('records: a packed row needs segment ids', { where: this.dir });
      (this.buffers['segment_ids'] as Int32Array).set(segments, at);
    }
    this.buffered++;
    this.rows++;
    if (this.buffered * L === (this.buffers['input_ids'] as Int32Array).length || this.rowsInShard + this.buffered === this.rowsPerShard) this.flush();
  }

  private flush(): void {
    if (this.buffered === 0) return;
    if (this.open.input_ids === undefined) {
      const index = this.shards.length;
      for (const c of this.columns) {
        const name = shardName(c, index);
        this.open[c] = { fd: openForWrite(join(this.dir, name)), hash: createHash('sha256'), name };
      }
    }
    for (const c of this.columns) {
      const s = this.open[c] as OpenShard;
      const buf = this.buffers[c] as Int32Array;
      const bytes = new Uint8Array(buf.buffer, 0, this.buffered * this.rowLength * 4);
      s.hash.update(bytes);
      writeAllSync(s.fd, bytes, join(this.dir, s.name));
    }
    this.rowsInShard += this.buffered;
    this.buffered = 0;
    if (this.rowsInShard === this.rowsPerShard) this.closeShard();
  }

  private closeShard(): void {
    if (this.open.input_ids === undefined) return;
    const entry: ShardEntry = { rows: this.rowsInShard, files: {} };
    for (const c of this.columns) {
      const s = this.open[c] as OpenShard;
      syncAndClose(s.fd, join(this.dir, s.name));
      entry.files[c] = { name: s.name, sha256: s.hash.digest('hex') };
    }
    this.shards.push(entry);
    this.open = {};
    this.rowsInShard = 0;
  }

  /** Flushes the last shard and writes manifest.json; returns the manifest. */
  finish(info: RecordsInfo, report: PreprocessReport): RecordsManifest {
    this.flush();
    this.closeShard();
    const manifest: RecordsManifest = {
      magic: RECORDS_MAGIC,
      version: RECORDS_VERSION,
      seq_length: info.seq_length,
      row_length: this.rowLength,
      rows: this.rows,
      columns: Object.fromEntries(this.columns.map((c) => [c, 'int32'])),
      byte_order: 'little',
      dataset_type: info.dataset_type,
      template: info.template,
      ...(info.prompt_format !== undefined ? { prompt_format: info.prompt_format } : {}),
      packed: info.packed,
      pad_id: info.pad_id,
      ignore_id: -100,
      tokenizer: info.tokenizer,
      shards: this.shards,
      report,
    };
    writeFileAtomicSync(join(this.dir, MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`);
    return manifest;
  }

  /** Closes open files after an error (the temp directory is then removed by the caller). */
  abort(): void {
    for (const s of Object.values(this.open)) {
      try {
        closeSync(s.fd);
      } catch {
        // Already closed by the failed fsync/close that brought us here; the original error is the one to report.
      }
    }
    this.open = {};
  }
}

/** Sizes no real records reach, so claimed values cannot make the reader allocate or loop without bound. */
const MAX_SEQ_LENGTH = 1 << 22;
const MAX_VOCAB = 1 << 24;
const COLUMNS: readonly Column[] = ['input_ids', 'labels', 'segment_ids'];
/** A shard file name as RecordsWriter writes it: no folders, nothing hidden. */
const SHARD_FILE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$/;

/** Checks every field the reader and the trainer use; errors name manifest.json and the field. */
function checkManifest(json: unknown, path: string): RecordsManifest {
  const fail = (field: string, what: string, ...value: unknown[]): never => {
    const got = value.length > 0 ? ` (got ${describeValue(value[0])})` : '';
    throw new FormatError(`${path}: ${field} ${what}${got}`, { where: `${path}: ${field}`, hint: 'the records are corrupt; run `sftkit data preprocess` again' });
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const int = (v: unknown, field: string, min: number, max: number): number => {
    if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) fail(field, `must be an integer in [${min}, ${max}]`, v);
    return v as number;
  };
  if (!isObject(json)) return fail('(root)', 'must be a JSON object', json);
  const m = json;
  if (m['magic'] !== RECORDS_MAGIC) throw new FormatError(`${path}: magic is ${describeValue(m['magic'])}, not "${RECORDS_MAGIC}"`, { where: path });
  if (m['version'] !== RECORDS_VERSION) {
    throw new FormatError(`${path}: token records version ${describeValue(m['version'])} is not supported (this sftkit reads version ${RECORDS_VERSION})`, {
      where: path,
      hint: 'run `sftkit data preprocess` again with this sftkit',
    });
  }
  const seq = int(m['seq_length'], 'seq_length', 1, MAX_SEQ_LENGTH);
  if (m['row_length'] !== seq + 1) fail('row_length', `must be seq_length + 1 = ${seq + 1}`, m['row_length']);
  const rows = int(m['rows'], 'rows', 0, Number.MAX_SAFE_INTEGER);
  const columns = m['columns'];
  if (!isObject(columns) || columns['input_ids'] !== 'int32' || columns['labels'] !== 'int32') fail('columns', 'must give int32 input_ids and labels', columns);
  const cols = columns as Record<string, unknown>;
  for (const [k, v] of Object.entries(cols)) {
    if (!(COLUMNS as readonly string[]).includes(k) || v !== 'int32') fail(`columns.${k}`, 'is not an int32 column of token records', v);
  }
  const present = COLUMNS.filter((c) => cols[c] !== undefined);
  if (m['byte_order'] !== undefined && m['byte_order'] !== 'little') fail('byte_order', 'must be "little"', m['byte_order']);
  if (typeof m['packed'] !== 'boolean') fail('packed', 'must be true or false', m['packed']);
  if (m['ignore_id'] !== -100) fail('ignore_id', 'must be -100', m['ignore_id']);
  const tok = m['tokenizer'];
  if (!isObject(tok)) return fail('tokenizer', 'must be an object', tok);
  if (typeof tok['identity'] !== 'string') fail('tokenizer.identity', 'must be a string', tok['identity']);
  if (typeof tok['kind'] !== 'string') fail('tokenizer.kind', 'must be a string', tok['kind']);
  const vocab = int(tok['vocab_size'], 'tokenizer.vocab_size', 1, MAX_VOCAB);
  for (const k of ['bos_id', 'eos_id'] as const) if (tok[k] !== null && tok[k] !== undefined) int(tok[k], `tokenizer.${k}`, 0, vocab - 1);
  int(m['pad_id'], 'pad_id', 0, vocab - 1);
  const report = m['report'];
  if (!isObject(report)) return fail('report', 'must be an object', report);
  int(report['max_token_id'], 'report.max_token_id', -1, vocab - 1);
  const shards = m['shards'];
  if (!Array.isArray(shards)) return fail('shards', 'must be a list', shards);
  let total = 0;
  const names = new Set<string>();
  shards.forEach((s: unknown, i) => {
    if (!isObject(s)) fail(`shards[${i}]`, 'must be an object', s);
    const shard = s as Record<string, unknown>;
    total += int(shard['rows'], `shards[${i}].rows`, 0, rows);
    const files = shard['files'];
    if (!isObject(files)) fail(`shards[${i}].files`, 'must be an object', files);
    for (const c of present) {
      const file = (files as Record<string, unknown>)[c];
      if (!isObject(file)) fail(`shards[${i}].files.${c}`, 'must be an object with name and sha256', file);
      const name = (file as Record<string, unknown>)['name'];
      if (typeof name !== 'string' || !SHARD_FILE.test(name) || name === MANIFEST_NAME) fail(`shards[${i}].files.${c}.name`, 'must be a file name in the records folder', name);
      if (names.has(name as string)) fail(`shards[${i}].files.${c}.name`, 'names a file another column or shard uses', name);
      names.add(name as string);
      if (typeof (file as Record<string, unknown>)['sha256'] !== 'string') fail(`shards[${i}].files.${c}.sha256`, 'must be a string', (file as Record<string, unknown>)['sha256']);
    }
  });
  if (total !== rows) fail('rows', `is ${rows} but the shards hold ${total} rows`);
  return m as unknown as RecordsManifest;
}

export function readRecordsManifest(dir: string): RecordsManifest {
  const path = join(dir, MANIFEST_NAME);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new FormatError(`${path}: cannot read token records (${(err as Error).message})`, {
      where: path,
      hint: 'make token records with `sftkit data preprocess`',
    });
  }
  return checkManifest(json, path);
}

interface MappedShard {
  first: number;
  rows: number;
  handles: Partial<Record<Column, Handle>>;
}

/** What a manifest tells the row-store checks (validateRowsFor), without opening the shards. */
function manifestInfo(m: RecordsManifest, source: string): RowStoreInfo {
  return {
    source,
    seqLength: m.seq_length,
    tokenizer: { identity: m.tokenizer.identity, vocabSize: m.tokenizer.vocab_size },
    maxTokenId: Math.max(m.report.max_token_id, m.pad_id),
  };
}

/** Token records opened for reading: each shard file memory-mapped, rows copied out on demand. */
export class Records implements RowStore {
  readonly dir: string;
  readonly manifest: RecordsManifest;
  readonly source: string;
  readonly rows: number;
  readonly seqLength: number;
  readonly rowLength: number;
  readonly hasSegments: boolean;
  readonly tokenizer: RowTokenizer;
  readonly maxTokenId: number;
  private readonly shards: MappedShard[] = [];
  private closed = false;

  constructor(dir: string) {
    assertLittleEndian();
    this.dir = dir;
    this.manifest = readRecordsManifest(dir);
    this.rows = this.manifest.rows;
    this.seqLength = this.manifest.seq_length;
    this.rowLength = this.manifest.row_length;
    this.hasSegments = this.manifest.columns.segment_ids === 'int32';
    const info = manifestInfo(this.manifest, join(dir, MANIFEST_NAME));
    this.source = info.source;
    this.tokenizer = info.tokenizer;
    this.maxTokenId = info.maxTokenId;
    let first = 0;
    try {
      for (const s of this.manifest.shards) {
        const shard: MappedShard = { first, rows: s.rows, handles: {} };
        this.shards.push(shard);
        for (const col of this.columns()) {
          const f = s.files[col];
          if (f === undefined) throw new FormatError(`${join(dir, MANIFEST_NAME)}: a shard has no ${col} file`, { where: join(dir, MANIFEST_NAME) });
          const path = join(dir, f.name);
          const listed = `listed in ${MANIFEST_NAME} as shards[${this.shards.length - 1}].files.${col}`;
          const want = s.rows * this.rowLength * 4;
          let size: number;
          try {
            size = statSync(path).size;
          } catch {
            throw new FormatError(`${path}: missing shard file (${listed})`, { where: path });
          }
          if (size !== want) throw new FormatError(`${path}: ${size} bytes, expected ${want} (${s.rows} rows × ${this.rowLength} int32, ${listed})`, { where: path });
          if (want > 0) shard.handles[col] = host.mmap(path)[0];
        }
        first += s.rows;
      }
      this.checkIds();
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /**
   * Every id against the vocabulary the manifest declares (validateRecordsFor then holds that vocabulary to
   * the model's): an id out of range would otherwise surface mid-training as a native error naming no file.
   * One pass over the mapped shards (about 1 GB/s on the shared 2-core VM).
   */
  private checkIds(): void {
    const vocab = this.manifest.tokenizer.vocab_size;
    const L = this.rowLength;
    const chunkRows = Math.max(1, Math.floor((1 << 20) / L));
    const buf = new Int32Array(chunkRows * L);
    this.manifest.shards.forEach((s, i) => {
      const shard = this.shards[i] as MappedShard;
      for (const col of this.columns()) {
        const h = shard.handles[col];
        if (h === undefined) continue;
        // Labels may be the ignore id; segment ids number samples (0 = padding) and are not token ids.
        const min = 0;
        const max = col === 'segment_ids' ? L : vocab - 1;
        for (let r0 = 0; r0 < s.rows; r0 += chunkRows) {
          const n = Math.min(chunkRows, s.rows - r0);
          const view = buf.subarray(0, n * L);
          native.read(h, r0 * L * 4, view);
          for (let k = 0; k < view.length; k++) {
            const v = view[k] as number;
            if ((v < min || v > max) && !(col === 'labels' && v === -100)) {
              const row = Math.floor(k / L);
              const path = join(this.dir, s.files[col]?.name ?? '');
              const what = col === 'segment_ids' ? `segment id ${v}, outside [0, ${L}]` : `token id ${v}, outside the vocabulary [0, ${vocab})`;
              throw new DataError(`${path} (${col} of shards[${i}] in ${MANIFEST_NAME}): row ${shard.first + r0 + row} (row ${r0 + row} of this file), column ${k % L} holds ${what}`, {
                where: `${path}: row ${r0 + row}, column ${k % L}`,
                hint: 'the records are corrupt or were made for another tokenizer; run `sftkit data preprocess` again',
              });
            }
          }
        }
      }
    });
  }

  columns(): Column[] {
    return this.hasSegments ? ['input_ids', 'labels', 'segment_ids'] : ['input_ids', 'labels'];
  }

  private shardOf(row: number): MappedShard {
    let lo = 0;
    let hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.shards[mid] as MappedShard).first <= row) lo = mid;
      else hi = mid - 1;
    }
    return this.shards[lo] as MappedShard;
  }

  /** Copies row `row` of `column` into `dst` at element offset `at`. */
  readRow(row: number, column: Column, dst: Int32Array, at = 0): void {
    if (this.closed) throw new DataError(`${this.dir}: records are closed`, { where: this.dir });
    if (!Number.isInteger(row) || row < 0 || row >= this.rows) throw new DataError(`${this.dir}: row ${row} out of range [0, ${this.rows})`, { where: this.dir });
    const shard = this.shardOf(row);
    const h = shard.handles[column];
    if (h === undefined) throw new DataError(`${this.dir}: no ${column} column`, { where: this.dir });
    native.read(h, (row - shard.first) * this.rowLength * 4, dst.subarray(at, at + this.rowLength));
  }

  /** RowStore's read: input ids, labels and (packed rows) segment ids of one row. */
  readInto(row: number, dst: RowBuffers, at = 0): void {
    this.readRow(row, 'input_ids', dst.inputIds, at);
    this.readRow(row, 'labels', dst.labels, at);
    if (this.hasSegments && dst.segmentIds !== undefined) this.readRow(row, 'segment_ids', dst.segmentIds, at);
  }

  /** One row of every column, freshly allocated (tests and tools; the loader reads into its own buffers). */
  row(row: number): { inputIds: Int32Array; labels: Int32Array; segmentIds?: Int32Array } {
    const get = (c: Column): Int32Array => {
      const a = new Int32Array(this.rowLength);
      this.readRow(row, c, a);
      return a;
    };
    return this.hasSegments ? { inputIds: get('input_ids'), labels: get('labels'), segmentIds: get('segment_ids') } : { inputIds: get('input_ids'), labels: get('labels') };
  }

  /** Re-hashes every shard file against the manifest (reads all the data). */
  verify(): void {
    for (const s of this.manifest.shards) {
      for (const f of Object.values(s.files)) {
        const path = join(this.dir, f.name);
        const got = createHash('sha256').update(readFileSync(path)).digest('hex');
        if (got !== f.sha256) throw new FormatError(`${path}: sha256 ${got} does not match the manifest's ${f.sha256}`, { where: path, hint: 'the file is corrupt; run preprocess again' });
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.shards) for (const h of Object.values(s.handles)) native.free(h);
  }
}

export function openRecords(dir: string): Records {
  return new Records(dir);
}

/** validateRowsFor (row-store.ts) for our records, opened or only their manifest. */
export function validateRecordsFor(records: Records | RecordsManifest, setup: TrainingSetup, where = records instanceof Records ? join(records.dir, MANIFEST_NAME) : 'records'): void {
  validateRowsFor(manifestInfo(records instanceof Records ? records.manifest : records, where), setup);
}
