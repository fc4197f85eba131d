// MindRecord datasets as MindFormers' llama_preprocess.py writes them (mindspore-lab/mindformers,
// mindformers/tools/dataset_preprocess/llama/llama_preprocess.py: FileWriter with the schema `input_ids` (and,
// for qa, `labels`) int32 of shape [-1], one write_raw_data per row, then commit), read and written.
//
// The layout, from mindspore-ai/mindspore mindspore/ccsrc/minddata/mindrecord/:
// - io/shard_writer.cc `WriteShardHeader`: the file starts with the header's byte length (u64, little-endian)
//   and the header JSON (meta/shard_header.cc `SerializeHeader`: header_size, index_fields, page, page_size,
//   compression_size, schema, shard_addresses, shard_id, statistics, version "3.0"; nlohmann::json objects
//   dump their keys sorted, an empty list dumps as null). Page k lies at header_size + page_size × k
//   (defaults 16 MiB and 32 MiB, include/common/shard_utils.h).
// - A BLOB_DATA page holds rows as [u64 length, little-endian][blob] (`FlushBlobChunk`); a RAW_DATA page holds
//   each row's msgpack JSON the same way (`FlushRawChunk`); with only blob fields that JSON is the dummy
//   {"id": 0} (`kDummyId`). Pages fill in write order; a row that does not fit starts a new page and a new row
//   group (`CutRowGroup`, `NewBlobPage`, `ShiftRawPage`, `WriteRawPage`, meta/shard_page.cc `GetPage`).
// - A row's blob: with one blob field, that field's bytes; with several, for each field in blob_fields order a
//   u64 big-endian length and the bytes (`MergeBlobData`). When the schema has an int32/int64 array, integer
//   fields are compressed (meta/shard_column.cc `CompressInt`): u32 big-endian count, a 2-bit width code per
//   value (4 per byte, first value in the high bits: 0 int8, 1 int16, 2 int32, 3 int64), then each value
//   little-endian in its width.
// - `<file>.db` (io/shard_index_generator.cc): SQLite tables SHARD_NAME(NAME) with the file's name and
//   INDEXES(ROW_ID, PAGE_ID_RAW, PAGE_OFFSET_RAW, PAGE_OFFSET_RAW_END, ROW_GROUP_ID, PAGE_ID_BLOB,
//   PAGE_OFFSET_BLOB, PAGE_OFFSET_BLOB_END), offsets within the page, the blob offset at its length prefix.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ConfigError, FormatError, describeValue } from '../errors.ts';
import { openFileSource, type ByteSource } from './byte-source.ts';
import { fileError, openForWrite, syncAndClose } from './write-file.ts';

// better-sqlite3 (a maintained SQLite binding; 12.x runs on Node 20) has no bundled types: the few calls used.
interface SqliteStatement {
  get(...params: unknown[]): unknown;
  run(...params: unknown[]): unknown;
  raw(on?: boolean): SqliteStatement;
  iterate(...params: unknown[]): IterableIterator<unknown[]>;
}
interface SqliteDb {
  prepare(sql: string): SqliteStatement;
  exec(sql: string): void;
  transaction(fn: () => void): () => void;
  close(): void;
}
type SqliteCtor = new (path: string, opts?: { readonly?: boolean; fileMustExist?: boolean }) => SqliteDb;
const Database = createRequire(import.meta.url)('better-sqlite3') as SqliteCtor;

export const MINDRECORD_VERSION = '3.0';
const SUPPORTED_VERSIONS = ['2.0', '3.0'];
export const DEFAULT_HEADER_SIZE = 1 << 24;
export const DEFAULT_PAGE_SIZE = 1 << 25;
const MIN_HEADER_SIZE = 1 << 14;
const MAX_HEADER_SIZE = 1 << 27;
const MIN_PAGE_SIZE = 1 << 15;
const MAX_PAGE_SIZE = 1 << 28;
const MAX_SHARDS = 4096;
/** msgpack of {"id": 0}: fixmap(1), fixstr "id", positive fixint 0. */
const DUMMY_RAW = Uint8Array.from([0x81, 0xa2, 0x69, 0x64, 0x00]);
const FIELD_TYPES = new Set(['bytes', 'string', 'int32', 'int64', 'float32', 'float64']);
const HINT = 'the MindRecord file or its .db index is corrupt, or they do not belong together; write the dataset again';

export interface MindRecordRow {
  input_ids: Int32Array;
  labels: Int32Array;
}

interface FieldSchema {
  type: string;
  shape?: number[];
}

interface Page {
  page_id: number;
  shard_id: number;
  page_type: string;
  page_type_id: number;
  start_row_id: number;
  end_row_id: number;
  page_size: number;
  row_group_ids: Array<{ id: number; offset: number }>;
}

interface Header {
  header_size: number;
  page_size: number;
  version: string;
  schema: Record<string, FieldSchema>;
  blobFields: string[];
  desc: string;
  shardAddresses: string[];
  shardId: number;
  pages: Page[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseHeader(src: ByteSource): Header {
  const fail = (msg: string): never => {
    throw new FormatError(`${src.name}: ${msg}`, { where: src.name, hint: HINT });
  };
  if (src.size < 8) fail(`${src.size} bytes: too short for a MindRecord header`);
  const len = Number(Buffer.from(src.read(0, 8, 'header length')).readBigUInt64LE(0));
  if (len > MAX_HEADER_SIZE || len + 8 > src.size) fail(`the header claims ${len} bytes (the file has ${src.size})`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(src.read(8, len, 'header')));
  } catch (err) {
    if (err instanceof FormatError) throw err;
    fail(`the header is not JSON (${(err as Error).message}); is this a MindRecord file?`);
  }
  if (!isObject(json)) return fail('the header is not a JSON object');
  const h = json;
  const int = (v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
    if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) fail(`${what} must be an integer in [${min}, ${max}] (got ${describeValue(v)})`);
    return v as number;
  };
  if (typeof h['version'] !== 'string' || !SUPPORTED_VERSIONS.includes(h['version'])) fail(`version ${describeValue(h['version'])} is not one MindSpore reads (${SUPPORTED_VERSIONS.join(', ')})`);
  const headerSize = int(h['header_size'], 'header_size', MIN_HEADER_SIZE, MAX_HEADER_SIZE);
  const pageSize = int(h['page_size'], 'page_size', MIN_PAGE_SIZE, MAX_PAGE_SIZE);
  if (len + 8 > headerSize) fail(`the header JSON (${len} bytes) does not fit header_size ${headerSize}`);
  const schemas = h['schema'];
  if (!Array.isArray(schemas) || schemas.length !== 1 || !isObject(schemas[0])) return fail('schema must be a list of one schema');
  const s = schemas[0] as Record<string, unknown>;
  if (!isObject(s['schema'])) fail('schema[0].schema must be an object');
  const schema: Record<string, FieldSchema> = {};
  for (const [name, f] of Object.entries(s['schema'] as Record<string, unknown>)) {
    if (!isObject(f) || typeof f['type'] !== 'string' || !FIELD_TYPES.has(f['type'])) fail(`field ${name}: type ${describeValue(isObject(f) ? f['type'] : f)} is not a MindRecord type`);
    const fs = f as Record<string, unknown>;
    if (fs['shape'] !== undefined && (!Array.isArray(fs['shape']) || !fs['shape'].every((d) => Number.isSafeInteger(d)))) fail(`field ${name}: shape ${describeValue(fs['shape'])} is not a list of integers`);
    schema[name] = { type: fs['type'] as string, ...(fs['shape'] !== undefined ? { shape: fs['shape'] as number[] } : {}) };
  }
  const blobFields = s['blob_fields'];
  if (!Array.isArray(blobFields) || !blobFields.every((b) => typeof b === 'string' && schema[b] !== undefined)) fail(`blob_fields ${describeValue(blobFields)} must name fields of the schema`);
  const addresses = h['shard_addresses'];
  if (!Array.isArray(addresses) || addresses.length < 1 || addresses.length > MAX_SHARDS || !addresses.every((a) => typeof a === 'string' && a !== '' && !a.includes('/') && !a.includes('\\') && a !== '..' && a !== '.')) {
    fail(`shard_addresses ${describeValue(addresses)} must be file names in the dataset's folder`);
  }
  const shardId = int(h['shard_id'], 'shard_id', 0, (addresses as string[]).length - 1);
  const pagesRaw = h['page'] ?? [];
  if (!Array.isArray(pagesRaw)) return fail('page must be a list');
  const pages: Page[] = pagesRaw.map((p: unknown, k: number) => {
    if (!isObject(p)) return fail(`page[${k}] is not an object`);
    const rg = p['row_group_ids'];
    if (!Array.isArray(rg) || !rg.every((g) => isObject(g))) fail(`page[${k}].row_group_ids must be a list of {id, offset}`);
    const page: Page = {
      page_id: int(p['page_id'], `page[${k}].page_id`, k, k),
      shard_id: int(p['shard_id'], `page[${k}].shard_id`),
      page_type: typeof p['page_type'] === 'string' ? p['page_type'] : fail(`page[${k}].page_type must be a string`),
      page_type_id: int(p['page_type_id'], `page[${k}].page_type_id`),
      start_row_id: int(p['start_row_id'], `page[${k}].start_row_id`),
      end_row_id: int(p['end_row_id'], `page[${k}].end_row_id`),
      page_size: int(p['page_size'], `page[${k}].page_size`, 0, pageSize),
      row_group_ids: (rg as Array<Record<string, unknown>>).map((g, j) => ({ id: int(g['id'], `page[${k}].row_group_ids[${j}].id`), offset: int(g['offset'], `page[${k}].row_group_ids[${j}].offset`, 0, pageSize) })),
    };
    if (page.page_type !== 'BLOB_DATA' && page.page_type !== 'RAW_DATA') fail(`page[${k}].page_type ${describeValue(page.page_type)} is neither BLOB_DATA nor RAW_DATA`);
    if (page.end_row_id < page.start_row_id) fail(`page[${k}]: end_row_id ${page.end_row_id} < start_row_id ${page.start_row_id}`);
    return page;
  });
  return {
    header_size: headerSize,
    page_size: pageSize,
    version: h['version'] as string,
    schema,
    blobFields: blobFields as string[],
    desc: typeof s['desc'] === 'string' ? s['desc'] : '',
    shardAddresses: addresses as string[],
    shardId,
    pages,
  };
}

/** Decodes one integer column of a blob: compressed (CompressInt) or raw little-endian of `width` bytes. */
function decodeInts(b: Uint8Array, compressed: boolean, width: 4 | 8, fail: (m: string) => never): Int32Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const check = (v: number | bigint): number => {
    if (v < -2147483648 || v > 2147483647) fail(`value ${v} does not fit int32`);
    return Number(v);
  };
  if (!compressed) {
    if (b.byteLength % width !== 0) fail(`${b.byteLength} bytes are not whole ${width}-byte integers`);
    const out = new Int32Array(b.byteLength / width);
    for (let i = 0; i < out.length; i++) out[i] = width === 4 ? dv.getInt32(i * 4, true) : check(dv.getBigInt64(i * 8, true));
    return out;
  }
  if (b.byteLength < 4) fail('a compressed integer column shorter than its 4-byte count');
  const n = dv.getUint32(0, false);
  const bitmap = Math.ceil(n / 4);
  if (4 + bitmap > b.byteLength || n > b.byteLength) fail(`a compressed column claims ${n} values in ${b.byteLength} bytes`);
  const out = new Int32Array(n);
  let at = 4 + bitmap;
  for (let i = 0; i < n; i++) {
    const code = (b[4 + (i >> 2)]! >> (2 * (3 - (i & 3)))) & 3;
    const size = 1 << code;
    if (at + size > b.byteLength) fail(`a compressed column runs past its ${b.byteLength} bytes`);
    out[i] = code === 0 ? dv.getInt8(at) : code === 1 ? dv.getInt16(at, true) : code === 2 ? dv.getInt32(at, true) : check(dv.getBigInt64(at, true));
    at += size;
  }
  if (at !== b.byteLength) fail(`a compressed column has ${b.byteLength - at} bytes left over`);
  return out;
}

interface ShardIndex {
  path: string;
  src: ByteSource;
  header: Header;
  rows: number;
  /** Per row: absolute file offset of the blob's length prefix, and the blob's end. */
  begin: Float64Array;
  end: Float64Array;
}

function openShard(path: string, expectName: string): ShardIndex {
  const src = openFileSource(path);
  try {
    const header = parseHeader(src);
    const dbPath = `${path}.db`;
    const dbFail = (msg: string): never => {
      throw new FormatError(`${dbPath}: ${msg}`, { where: dbPath, hint: HINT });
    };
    if (!existsSync(dbPath)) dbFail('missing: a MindRecord file is read through its .db index (FileWriter.commit writes it)');
    let db: SqliteDb | null = null;
    try {
      db = new Database(dbPath, { readonly: true, fileMustExist: true });
      const name = (db.prepare('SELECT NAME FROM SHARD_NAME').get() as { NAME?: unknown } | undefined)?.NAME;
      if (name !== expectName) dbFail(`SHARD_NAME is ${describeValue(name)}, not ${JSON.stringify(expectName)}: the index belongs to another file`);
      const blobPages = new Map(header.pages.filter((p) => p.page_type === 'BLOB_DATA').map((p) => [p.page_id, p]));
      const expected = [...blobPages.values()].reduce((n, p) => n + (p.end_row_id - p.start_row_id), 0);
      const count = (db.prepare('SELECT COUNT(*) AS N FROM INDEXES').get() as { N: number }).N;
      if (count !== expected) dbFail(`INDEXES has ${count} rows but the header's blob pages hold ${expected}`);
      const begin = new Float64Array(count);
      const end = new Float64Array(count);
      let row = 0;
      for (const r of db.prepare('SELECT ROW_ID, PAGE_ID_BLOB, PAGE_OFFSET_BLOB, PAGE_OFFSET_BLOB_END FROM INDEXES ORDER BY ROW_ID').raw().iterate()) {
        const [id, pageId, off, offEnd] = r as [unknown, unknown, unknown, unknown];
        if (id !== row) dbFail(`ROW_ID ${describeValue(id)} where row ${row} was expected`);
        const page = typeof pageId === 'number' ? blobPages.get(pageId) : undefined;
        if (page === undefined) dbFail(`row ${row}: PAGE_ID_BLOB ${describeValue(pageId)} is not a blob page of the header`);
        if (!Number.isSafeInteger(off) || !Number.isSafeInteger(offEnd) || (off as number) < 0 || (off as number) + 8 > (offEnd as number) || (offEnd as number) > page!.page_size) {
          dbFail(`row ${row}: blob offsets [${describeValue(off)}, ${describeValue(offEnd)}) are not inside page ${page!.page_id} (${page!.page_size} bytes)`);
        }
        const base = header.header_size + header.page_size * page!.page_id;
        begin[row] = base + (off as number);
        end[row] = base + (offEnd as number);
        if (end[row]! > src.size) dbFail(`row ${row}: its blob ends at byte ${end[row]}, past the end of ${path} (${src.size} bytes)`);
        row++;
      }
      return { path, src, header, rows: count, begin, end };
    } catch (err) {
      if (err instanceof FormatError) throw err;
      return dbFail(`cannot read the SQLite index (${(err as Error).message})`);
    } finally {
      db?.close();
    }
  } catch (err) {
    src.close();
    throw err;
  }
}

/**
 * A MindRecord dataset of token rows: `input_ids` (and `labels`, else labels = input_ids as for pretraining
 * text) int32 or int64 arrays of one length, seq_length + 1. A file of a multi-file dataset opens them all, in
 * shard_addresses order. Rows are read on demand, checked as they are decoded.
 */
export class MindRecordReader {
  readonly path: string;
  readonly rowCount: number;
  readonly seqLength: number;
  readonly hasLabels: boolean;
  /** The schema description (llama_preprocess.py's dataset_type: qa, wiki, ...). */
  readonly desc: string;
  private readonly shards: ShardIndex[];
  private readonly firstRow: number[];
  private readonly compressed: boolean;
  private readonly blobFields: string[];
  private readonly schema: Record<string, FieldSchema>;

  private constructor(path: string, shards: ShardIndex[]) {
    this.path = path;
    this.shards = shards;
    const h = shards[0]!.header;
    this.schema = h.schema;
    this.blobFields = h.blobFields;
    this.desc = h.desc;
    const fail = (msg: string): never => {
      throw new FormatError(`${path}: ${msg}`, { where: path, hint: 'sftkit reads token datasets: int32/int64 arrays input_ids and (optionally) labels, as llama_preprocess.py writes them' });
    };
    for (const col of ['input_ids', 'labels']) {
      const f = h.schema[col];
      if (f === undefined) {
        if (col === 'input_ids') fail('the schema has no input_ids field');
        continue;
      }
      if ((f.type !== 'int32' && f.type !== 'int64') || f.shape === undefined || !h.blobFields.includes(col)) fail(`field ${col} is ${describeValue(f)}, not an int32/int64 array`);
    }
    this.hasLabels = h.schema['labels'] !== undefined;
    // ShardColumn compresses integer blob columns whenever the schema has an integer array (compress_integer).
    this.compressed = Object.values(h.schema).some((f) => (f.type === 'int32' || f.type === 'int64') && f.shape !== undefined);
    this.firstRow = [];
    let n = 0;
    for (const s of shards) {
      this.firstRow.push(n);
      n += s.rows;
    }
    this.rowCount = n;
    if (n === 0) fail('holds no rows');
    this.seqLength = this.decode(0).input_ids.length - 1;
    if (this.seqLength < 1) fail('rows of input_ids have fewer than 2 tokens');
  }

  /** Opens a `.mindrecord` file (or the one dataset file in a folder) with its `.db` index and sibling shards. */
  static open(path: string): MindRecordReader {
    let file = path;
    if (isDir(path)) {
      const candidates = readdirSync(path).filter((f) => !f.endsWith('.db') && existsSync(join(path, `${f}.db`))).sort();
      if (candidates.length === 0) throw new ConfigError(`${path}: no MindRecord file (a file with a .db index beside it)`, { where: path });
      file = join(path, candidates[0]!);
    }
    const first = openShard(file, basename(file));
    const shards: ShardIndex[] = [];
    try {
      const addresses = first.header.shardAddresses;
      if (addresses[first.header.shardId] !== basename(file)) {
        throw new FormatError(`${file}: its header names it ${describeValue(addresses[first.header.shardId])}; MindRecord files cannot be renamed`, { where: file, hint: 'give the file back its name, or write the dataset again' });
      }
      for (const [k, name] of addresses.entries()) {
        let s = first;
        if (k !== first.header.shardId) {
          try {
            s = openShard(join(dirname(file), name), name);
          } catch (err) {
            // The header named the file: say so, so a mistyped or missing shard points back at it.
            if (!(err instanceof FormatError)) throw err;
            throw new FormatError(`${file}: shard ${k} of its shard_addresses: ${err.message}`, { where: file, hint: 'every file a MindRecord dataset was written as must stay beside the others, under its name' });
          }
        }
        if (k !== first.header.shardId) shards.push(s);
        else shards.push(first);
        if (s.header.shardId !== k) throw new FormatError(`${s.path}: shard_id ${s.header.shardId}, but it is shard ${k} of ${file}`, { where: s.path, hint: HINT });
        if (JSON.stringify(s.header.schema) !== JSON.stringify(first.header.schema)) throw new FormatError(`${s.path}: its schema differs from ${file}'s`, { where: s.path, hint: HINT });
      }
      return new MindRecordReader(file, shards);
    } catch (err) {
      first.src.close();
      for (const s of shards) if (s !== first) s.src.close();
      throw err;
    }
  }

  /** Row `i` (0-based over all shards): input_ids and labels of seq_length + 1 values each. */
  readRow(i: number): MindRecordRow {
    if (!Number.isInteger(i) || i < 0 || i >= this.rowCount) throw new FormatError(`${this.path}: row ${i} out of range [0, ${this.rowCount})`, { where: this.path });
    const row = this.decode(i);
    const L = this.seqLength + 1;
    if (row.input_ids.length !== L || row.labels.length !== L) {
      throw new FormatError(`${this.path}: row ${i} has ${row.input_ids.length} input_ids and ${row.labels.length} labels; row 0 has ${L}`, { where: `${this.path}: row ${i}`, hint: HINT });
    }
    return row;
  }

  private decode(i: number): MindRecordRow {
    let k = this.shards.length - 1;
    while (this.firstRow[k]! > i) k--;
    const s = this.shards[k]!;
    const r = i - this.firstRow[k]!;
    // A row is located through the index, so a damaged row may be the index's fault as much as the file's.
    const at = `${s.path}: row ${r} (located by ${basename(s.path)}.db)`;
    const fail = (msg: string): never => {
      throw new FormatError(`${at}: ${msg}`, { where: at, hint: HINT });
    };
    const begin = s.begin[r]!;
    const total = s.end[r]! - begin;
    const bytes = s.src.read(begin, total, `row ${r}`);
    const blobLen = Number(Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0));
    if (blobLen !== total - 8) fail(`the blob's length prefix says ${blobLen} bytes, the index ${total - 8}`);
    const blob = bytes.subarray(8);
    const cols = new Map<string, Uint8Array>();
    if (this.blobFields.length === 1) cols.set(this.blobFields[0]!, blob);
    else {
      let pos = 0;
      for (const f of this.blobFields) {
        if (pos + 8 > blob.byteLength) fail(`field ${f}: its length runs past the blob`);
        const n = Number(Buffer.from(blob.buffer, blob.byteOffset + pos, 8).readBigUInt64BE(0));
        if (pos + 8 + n > blob.byteLength) fail(`field ${f}: ${n} bytes run past the blob (${blob.byteLength})`);
        cols.set(f, blob.subarray(pos + 8, pos + 8 + n));
        pos += 8 + n;
      }
      if (pos !== blob.byteLength) fail(`${blob.byteLength - pos} bytes after the last blob field`);
    }
    const column = (name: string): Int32Array => {
      const width = this.schema[name]!.type === 'int64' ? 8 : 4;
      return decodeInts(cols.get(name)!, this.compressed, width, (m) => fail(`field ${name}: ${m}`));
    };
    const input_ids = column('input_ids');
    return { input_ids, labels: this.hasLabels ? column('labels') : input_ids.slice() };
  }

  close(): void {
    for (const s of this.shards) s.src.close();
  }
}

function isDir(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

export function openMindRecord(path: string): MindRecordReader {
  return MindRecordReader.open(path);
}

// ---- writing -----------------------------------------------------------------------------------------------

/** CompressInt of meta/shard_column.cc over int32 values. */
export function compressInts(values: Int32Array): Uint8Array {
  const n = values.length;
  const bitmap = Math.ceil(n / 4);
  const out = new Uint8Array(4 + bitmap + 4 * n);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, n, false);
  let at = 4 + bitmap;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    const code = v >= -128 && v <= 127 ? 0 : v >= -32768 && v <= 32767 ? 1 : 2;
    if (code === 0) dv.setInt8(at, v);
    else if (code === 1) dv.setInt16(at, v, true);
    else dv.setInt32(at, v, true);
    at += 1 << code;
    out[4 + (i >> 2)]! |= code << (2 * (3 - (i & 3)));
  }
  return out.subarray(0, at);
}

export interface MindRecordWriterOptions {
  seqLength: number;
  /** Write a labels field (llama_preprocess.py's qa schema); without it only input_ids (its wiki schema). */
  labels: boolean;
  /** The schema's description (llama_preprocess.py passes the dataset type). */
  desc: string;
  headerSize?: number;
  pageSize?: number;
  /** Replace an existing file and index (FileWriter's overwrite=True). */
  overwrite?: boolean;
}

type WPage = Page;

/**
 * Writes one MindRecord file and its .db as FileWriter does when each row is written by its own
 * write_raw_data call (llama_preprocess.py's loop): the same pages, row groups, header and index. Both files
 * are built under temp names and renamed into place by `finish` (the index first, the data file last).
 */
export class MindRecordWriter {
  private readonly fd: number;
  private readonly tmp: string;
  private readonly tmpDb: string;
  private readonly H: number;
  private readonly P: number;
  private readonly pages: WPage[] = [];
  private lastBlob: WPage | null = null;
  private lastRaw: WPage | null = null;
  private lastRowGroupId = -1;
  private rows = 0;
  private compression = 0;
  private done = false;
  private readonly fields: string[];
  /** Each row's blob bytes with its length prefix, for the index. */
  private readonly blobSizes: number[] = [];

  constructor(
    readonly path: string,
    private readonly o: MindRecordWriterOptions,
  ) {
    this.H = o.headerSize ?? DEFAULT_HEADER_SIZE;
    this.P = o.pageSize ?? DEFAULT_PAGE_SIZE;
    if (this.H < MIN_HEADER_SIZE || this.H > MAX_HEADER_SIZE || this.H % 4 !== 0) throw new ConfigError(`MindRecord header size ${this.H} must be in [16 KiB, 128 MiB] and a multiple of 4`, { where: path });
    if (this.P < MIN_PAGE_SIZE || this.P > MAX_PAGE_SIZE || this.P % 4 !== 0) throw new ConfigError(`MindRecord page size ${this.P} must be in [32 KiB, 256 MiB] and a multiple of 4`, { where: path });
    if (!o.overwrite && (existsSync(path) || existsSync(`${path}.db`))) {
      throw new ConfigError(`${path} (or its .db) already exists`, { where: path, hint: 'choose another --output_file, or pass --force to replace it' });
    }
    // Field order of the schema and of the blob: nlohmann::json keeps object keys sorted.
    this.fields = o.labels ? ['input_ids', 'labels'] : ['input_ids'];
    const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
    this.tmp = join(dirname(path), `.${basename(path)}.tmp-${tag}`);
    this.tmpDb = join(dirname(path), `.${basename(path)}.db.tmp-${tag}`);
    this.fd = openForWrite(this.tmp);
  }

  get rowCount(): number {
    return this.rows;
  }

  private writeAt(data: Uint8Array, position: number): void {
    let done = 0;
    while (done < data.byteLength) {
      let n: number;
      try {
        n = writeSync(this.fd, data, done, data.byteLength - done, position + done);
      } catch (err) {
        throw fileError(err, this.path, 'write');
      }
      if (n <= 0) throw fileError(Object.assign(new Error('no bytes written'), { code: 'ENOSPC' }), this.path, 'write');
      done += n;
    }
  }

  private prefixed(data: Uint8Array, bigEndian: boolean): Uint8Array {
    const out = new Uint8Array(8 + data.byteLength);
    new DataView(out.buffer).setBigUint64(0, BigInt(data.byteLength), !bigEndian);
    out.set(data, 8);
    return out;
  }

  /** Appends one row (the labels are ignored without a labels field; a pretraining row's labels are its ids). */
  push(ids: Int32Array, labels: Int32Array): void {
    const L = this.o.seqLength + 1;
    if (ids.length !== L || labels.length !== L) throw new FormatError(`${this.path}: a row of ${ids.length} ids, expected ${L}`, { where: this.path });
    const cols = this.o.labels ? [ids, labels] : [ids];
    const compressed = cols.map((c) => compressInts(c));
    const blob = cols.length === 1 ? compressed[0]! : concat(compressed.map((c) => this.prefixed(c, true)));
    const plain = cols.length === 1 ? 4 * L : cols.length * (8 + 4 * L);
    this.compression += plain - blob.byteLength;
    const blobRow = this.prefixed(blob, false);
    const rawRow = this.prefixed(DUMMY_RAW, false);
    const P = this.P;
    if (blobRow.byteLength > P || rawRow.byteLength > P) throw new FormatError(`${this.path}: a row of ${blobRow.byteLength} bytes does not fit a ${P}-byte page`, { where: this.path });
    const rawGroupBytes = this.lastRaw === null ? 0 : this.lastRaw.page_size - this.lastRaw.row_group_ids[this.lastRaw.row_group_ids.length - 1]!.offset;
    const newGroup = this.lastBlob === null || this.lastBlob.page_size + blobRow.byteLength > P || rawGroupBytes + rawRow.byteLength > P;
    if (newGroup) {
      // NewBlobPage: a fresh blob page for this row.
      const page: WPage = {
        page_id: this.pages.length, shard_id: 0, page_type: 'BLOB_DATA',
        page_type_id: this.lastBlob === null ? 0 : this.lastBlob.page_type_id + 1,
        start_row_id: this.lastBlob === null ? 0 : this.lastBlob.end_row_id,
        end_row_id: 0, page_size: blobRow.byteLength, row_group_ids: [],
      };
      page.end_row_id = page.start_row_id + 1;
      this.writeAt(blobRow, this.H + P * page.page_id);
      this.pages.push(page);
      this.lastBlob = page;
      // WriteRawPage for the new row group: a new raw page when there is none or it is full.
      if (this.lastRaw === null || this.lastRaw.page_size + rawRow.byteLength > P) this.emptyRawPage();
      const raw = this.lastRaw!;
      raw.row_group_ids.push({ id: ++this.lastRowGroupId, offset: raw.page_size });
      this.writeAt(rawRow, this.H + P * raw.page_id + raw.page_size);
      raw.page_size += rawRow.byteLength;
    } else {
      // AppendBlobPage.
      const blobPage = this.lastBlob!;
      this.writeAt(blobRow, this.H + P * blobPage.page_id + blobPage.page_size);
      blobPage.page_size += blobRow.byteLength;
      blobPage.end_row_id += 1;
      // ShiftRawPage: the last row group moves to a new raw page when the row does not fit the current one.
      const raw = this.lastRaw!;
      if (raw.page_size + rawRow.byteLength > P) {
        const last = raw.row_group_ids.pop()!;
        const moved = raw.page_size - last.offset;
        const page: WPage = {
          page_id: this.pages.length, shard_id: 0, page_type: 'RAW_DATA', page_type_id: raw.page_id + 1,
          start_row_id: 0, end_row_id: 0, page_size: moved, row_group_ids: [{ id: last.id, offset: 0 }],
        };
        this.shiftRaw(moved, page);
        raw.page_size = last.offset;
        this.pages.push(page);
        this.lastRaw = page;
      }
      const target = this.lastRaw!;
      this.writeAt(rawRow, this.H + P * target.page_id + target.page_size);
      target.page_size += rawRow.byteLength;
    }
    this.blobSizes.push(blobRow.byteLength);
    this.rows++;
  }

  /** EmptyRawPage: its page_type_id is the previous raw page's page_id + 1, as shard_writer.cc sets it. */
  private emptyRawPage(): void {
    const page: WPage = {
      page_id: this.pages.length, shard_id: 0, page_type: 'RAW_DATA',
      page_type_id: this.lastRaw === null ? 0 : this.lastRaw.page_id + 1,
      start_row_id: 0, end_row_id: 0, page_size: 0, row_group_ids: [],
    };
    this.pages.push(page);
    this.lastRaw = page;
  }

  /** The moved row group's bytes at the start of its new page (raw rows are all the same dummy, so rewritten). */
  private shiftRaw(bytes: number, to: WPage): void {
    const one = this.prefixed(DUMMY_RAW, false);
    const buf = new Uint8Array(bytes);
    for (let at = 0; at < bytes; at += one.byteLength) buf.set(one, at);
    this.writeAt(buf, this.H + this.P * to.page_id);
  }

  /** The header JSON exactly as ShardHeader::SerializeHeader writes it for shard 0 of one file. */
  headerJson(): string {
    const pages = this.pages.map((p) => ({
      end_row_id: p.end_row_id, page_id: p.page_id, page_size: p.page_size, page_type: p.page_type, page_type_id: p.page_type_id,
      row_group_ids: p.row_group_ids.length === 0 ? [{ id: 0, offset: 0 }] : p.row_group_ids, shard_id: p.shard_id, start_row_id: p.start_row_id,
    }));
    const fieldSchema = Object.fromEntries(this.fields.map((f) => [f, { shape: [-1], type: 'int32' }]));
    const schema = [{ blob_fields: this.fields, desc: this.o.desc, schema: fieldSchema }];
    return `{"header_size":${this.H},"index_fields":null,"page":${pages.length === 0 ? 'null' : JSON.stringify(pages)},"page_size":${this.P},` +
      `"compression_size":${Math.max(0, this.compression)},"schema":${JSON.stringify(schema)},"shard_addresses":${JSON.stringify([basename(this.path)])},` +
      `"shard_id":0,"statistics":null,"version":"${MINDRECORD_VERSION}"}`;
  }

  /** Writes the header and the index, then renames both into place. */
  finish(): void {
    const json = new TextEncoder().encode(this.headerJson());
    if (json.byteLength + 8 > this.H) throw new FormatError(`${this.path}: the header (${json.byteLength} bytes) does not fit header_size ${this.H}`, { where: this.path });
    this.writeAt(this.prefixed(json, false), 0);
    syncAndClose(this.fd, this.path);
    this.done = true;
    try {
      this.writeIndex();
      if (this.o.overwrite) rmSync(`${this.path}.db`, { force: true });
      renameSync(this.tmpDb, `${this.path}.db`);
      renameSync(this.tmp, this.path);
    } catch (err) {
      rmSync(this.tmp, { force: true });
      rmSync(this.tmpDb, { force: true });
      throw err instanceof FormatError || err instanceof ConfigError ? err : fileError(err, this.path, 'write its index');
    }
  }

  /** ShardIndexGenerator: raw pages in order, each row group's blob page rows with both pages' offsets. */
  private writeIndex(): void {
    const db = new Database(this.tmpDb);
    try {
      db.exec(
        'CREATE TABLE INDEXES(  ROW_ID               INT  NOT NULL, PAGE_ID_RAW          INT  NOT NULL' +
          ', PAGE_OFFSET_RAW      INT  NOT NULL, PAGE_OFFSET_RAW_END  INT  NOT NULL' +
          ', ROW_GROUP_ID         INT  NOT NULL, PAGE_ID_BLOB         INT  NOT NULL' +
          ', PAGE_OFFSET_BLOB     INT  NOT NULL, PAGE_OFFSET_BLOB_END INT  NOT NULL, PRIMARY KEY(ROW_ID));',
      );
      db.exec('CREATE TABLE SHARD_NAME(NAME TEXT NOT NULL);');
      db.prepare('INSERT INTO SHARD_NAME (NAME) VALUES (?)').run(basename(this.path));
      const insert = db.prepare(
        'INSERT INTO INDEXES (ROW_ID,ROW_GROUP_ID,PAGE_ID_RAW,PAGE_OFFSET_RAW,PAGE_OFFSET_RAW_END,PAGE_ID_BLOB,PAGE_OFFSET_BLOB,PAGE_OFFSET_BLOB_END) VALUES (?,?,?,?,?,?,?,?)',
      );
      const blobByGroup = new Map(this.pages.filter((p) => p.page_type === 'BLOB_DATA').map((p) => [p.page_type_id, p]));
      const rawSize = 8 + DUMMY_RAW.byteLength;
      db.transaction(() => {
        for (const raw of this.pages.filter((p) => p.page_type === 'RAW_DATA')) {
          for (const g of raw.row_group_ids) {
            const blob = blobByGroup.get(g.id)!;
            let rawAt = g.offset;
            let blobAt = 0;
            for (let row = blob.start_row_id; row < blob.end_row_id; row++) {
              const size = this.blobSizes[row]!;
              insert.run(row, blob.page_type_id, raw.page_id, rawAt, rawAt + rawSize, blob.page_id, blobAt, blobAt + size);
              rawAt += rawSize;
              blobAt += size;
            }
          }
        }
      })();
    } finally {
      db.close();
    }
  }


  /** Closes and removes the temp files after an error. */
  abort(): void {
    if (!this.done) {
      try {
        syncAndClose(this.fd, this.path);
      } catch {
        // The error that brought us here is the one to report.
      }
    }
    this.done = true;
    rmSync(this.tmp, { force: true });
    rmSync(this.tmpDb, { force: true });
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
