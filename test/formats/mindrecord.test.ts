// MindRecord: a hand-built file and .db that follow mindspore-ai/mindspore's shard_writer.cc, shard_header.cc,
// shard_page.cc, shard_column.cc (CompressInt) and shard_index_generator.cc byte for byte, read by our reader
// and written identically by our writer; page and raw-page overflow; preprocess into MindRecord equals token
// records row for row; typed errors for a missing or foreign index and a damaged header.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRecords, preprocess, preprocessToMindRecord } from '../../src/data/index.ts';
import { FormatError } from '../../src/errors.ts';
import { compressInts, MindRecordReader, MindRecordWriter } from '../../src/formats/mindrecord.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const Database = createRequire(import.meta.url)('better-sqlite3') as new (p: string, o?: object) => {
  exec(sql: string): void;
  prepare(sql: string): { run(...a: unknown[]): unknown; all(...a: unknown[]): unknown[] };
  close(): void;
};

const tmp = (): string => mkdtempSync(join(tmpdir(), 'sftkit-mr-'));
const H = 1 << 14; // FileWriter.set_header_size's minimum
const P = 1 << 15; // FileWriter.set_page_size's minimum

const u64le = (n: number): number[] => [...Buffer.from(new BigUint64Array([BigInt(n)]).buffer)];
const u64be = (n: number): number[] => u64le(n).reverse();

// Row 0: input_ids [1, 300, 70000, -100] -> widths int8, int16, int32, int8 (codes 0, 1, 2, 0 = 0b00011000);
// labels [-100, -100, 70000, 2] -> codes 0, 0, 2, 0 (0b00001000). Row 1: all int8.
const ROWS = [
  { ids: [1, 300, 70000, -100], labels: [-100, -100, 70000, 2] },
  { ids: [5, 6, 7, 8], labels: [-100, 6, 7, 8] },
];
const COMPRESSED = [
  { ids: [0, 0, 0, 4, 0x18, 0x01, 0x2c, 0x01, 0x70, 0x11, 0x01, 0x00, 0x9c], labels: [0, 0, 0, 4, 0x08, 0x9c, 0x9c, 0x70, 0x11, 0x01, 0x00, 0x02] },
  { ids: [0, 0, 0, 4, 0x00, 5, 6, 7, 8], labels: [0, 0, 0, 4, 0x00, 0x9c, 6, 7, 8] },
];

/** The blob page row: u64 LE blob length, then per field (input_ids, labels) u64 BE length and CompressInt bytes. */
const blobRow = (c: { ids: number[]; labels: number[] }): number[] => {
  const blob = [...u64be(c.ids.length), ...c.ids, ...u64be(c.labels.length), ...c.labels];
  return [...u64le(blob.length), ...blob];
};
/** The raw page row: u64 LE length and the msgpack of kDummyId {"id": 0}. */
const RAW_ROW = [...u64le(5), 0x81, 0xa2, 0x69, 0x64, 0x00];

function handBuilt(dir: string): { path: string; header: string } {
  const b0 = blobRow(COMPRESSED[0]!);
  const b1 = blobRow(COMPRESSED[1]!);
  const plain = 2 * (8 + 16);
  const compression = plain - (b0.length - 8) + plain - (b1.length - 8);
  const header =
    `{"header_size":${H},"index_fields":null,"page":[` +
    `{"end_row_id":2,"page_id":0,"page_size":${b0.length + b1.length},"page_type":"BLOB_DATA","page_type_id":0,"row_group_ids":[{"id":0,"offset":0}],"shard_id":0,"start_row_id":0},` +
    `{"end_row_id":0,"page_id":1,"page_size":26,"page_type":"RAW_DATA","page_type_id":0,"row_group_ids":[{"id":0,"offset":0}],"shard_id":0,"start_row_id":0}],` +
    `"page_size":${P},"compression_size":${compression},` +
    `"schema":[{"blob_fields":["input_ids","labels"],"desc":"qa","schema":{"input_ids":{"shape":[-1],"type":"int32"},"labels":{"shape":[-1],"type":"int32"}}}],` +
    `"shard_addresses":["hand.mindrecord"],"shard_id":0,"statistics":null,"version":"3.0"}`;
  const file = new Uint8Array(H + P + 26);
  file.set([...u64le(header.length), ...Buffer.from(header)], 0);
  file.set([...b0, ...b1], H);
  file.set([...RAW_ROW, ...RAW_ROW], H + P);
  const path = join(dir, 'hand.mindrecord');
  writeFileSync(path, file);
  const db = new Database(`${path}.db`);
  db.exec('CREATE TABLE INDEXES(  ROW_ID               INT  NOT NULL, PAGE_ID_RAW          INT  NOT NULL, PAGE_OFFSET_RAW      INT  NOT NULL, PAGE_OFFSET_RAW_END  INT  NOT NULL, ROW_GROUP_ID         INT  NOT NULL, PAGE_ID_BLOB         INT  NOT NULL, PAGE_OFFSET_BLOB     INT  NOT NULL, PAGE_OFFSET_BLOB_END INT  NOT NULL, PRIMARY KEY(ROW_ID));');
  db.exec('CREATE TABLE SHARD_NAME(NAME TEXT NOT NULL);');
  db.prepare('INSERT INTO SHARD_NAME (NAME) VALUES (?)').run('hand.mindrecord');
  const ins = db.prepare('INSERT INTO INDEXES VALUES (?,?,?,?,?,?,?,?)');
  ins.run(0, 1, 0, 13, 0, 0, 0, b0.length);
  ins.run(1, 1, 13, 26, 0, 0, b0.length, b0.length + b1.length);
  db.close();
  return { path, header };
}

const indexRows = (path: string): unknown[] => {
  const db = new Database(path, { readonly: true });
  try {
    return [db.prepare('SELECT * FROM INDEXES ORDER BY ROW_ID').all(), db.prepare('SELECT NAME FROM SHARD_NAME').all()];
  } finally {
    db.close();
  }
};

test('CompressInt: count, 2-bit widths high bits first, values little-endian in their width', () => {
  assert.deepEqual([...compressInts(Int32Array.from(ROWS[0]!.ids))], COMPRESSED[0]!.ids);
  assert.deepEqual([...compressInts(Int32Array.from(ROWS[0]!.labels))], COMPRESSED[0]!.labels);
  assert.deepEqual([...compressInts(Int32Array.from([-2147483648, 32767, -32769, 127, -129]))].slice(0, 6), [0, 0, 0, 5, 0b10011000, 0b01000000]);
});

test('a hand-built llama_preprocess.py file is read row for row', () => {
  const dir = tmp();
  try {
    const { path } = handBuilt(dir);
    const r = MindRecordReader.open(path);
    try {
      assert.equal(r.rowCount, 2);
      assert.equal(r.seqLength, 3);
      assert.equal(r.desc, 'qa');
      ROWS.forEach((row, i) => {
        assert.deepEqual([...r.readRow(i).input_ids], row.ids);
        assert.deepEqual([...r.readRow(i).labels], row.labels);
      });
    } finally {
      r.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('our writer produces the hand-built file byte for byte and the same index', () => {
  const dir = tmp();
  try {
    const { path, header } = handBuilt(dir);
    const out = join(dir, 'out');
    // The name is part of the header and of SHARD_NAME: write under the same name in another folder.
    const mine = join(out, 'hand.mindrecord');
    mkdirSync(out, { recursive: true });
    const w = new MindRecordWriter(mine, { seqLength: 3, labels: true, desc: 'qa', headerSize: H, pageSize: P });
    for (const row of ROWS) w.push(Int32Array.from(row.ids), Int32Array.from(row.labels));
    assert.equal(w.headerJson(), header);
    w.finish();
    assert.ok(readFileSync(mine).equals(readFileSync(path)));
    assert.deepEqual(indexRows(`${mine}.db`), indexRows(`${path}.db`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('blob pages and raw pages overflow as FileWriter fills them; every row and raw entry is where the index says', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'many.mindrecord');
    // 42-byte blob rows (780 per 32 KiB page), 13-byte raw rows (2520 per page): both kinds of page turn over,
    // and the raw page turns over inside a row group (ShiftRawPage).
    const w = new MindRecordWriter(path, { seqLength: 3, labels: true, desc: 'qa', headerSize: H, pageSize: P });
    const n = 6000;
    const row = (i: number): Int32Array => Int32Array.from([i % 100, (i * 7) % 100, 1, 2]);
    for (let i = 0; i < n; i++) w.push(row(i), row(i + 1));
    w.finish();
    const header = JSON.parse(readFileSync(path).subarray(8, 8 + Number(readFileSync(path).readBigUInt64LE(0))).toString()) as { page: Array<{ page_type: string; row_group_ids: unknown[] }> };
    assert.ok(header.page.filter((p) => p.page_type === 'BLOB_DATA').length >= 7);
    assert.ok(header.page.filter((p) => p.page_type === 'RAW_DATA').length >= 2);
    const r = MindRecordReader.open(path);
    try {
      assert.equal(r.rowCount, n);
      for (let i = 0; i < n; i++) {
        assert.deepEqual(r.readRow(i).input_ids, row(i));
        assert.deepEqual(r.readRow(i).labels, row(i + 1));
      }
    } finally {
      r.close();
    }
    const file = readFileSync(path);
    const [rows] = indexRows(`${path}.db`) as [Array<Record<string, number>>];
    for (const x of rows) {
      const at = H + P * x['PAGE_ID_RAW']! + x['PAGE_OFFSET_RAW']!;
      assert.deepEqual([...file.subarray(at, at + 13)], RAW_ROW, `raw entry of row ${x['ROW_ID']}`);
      assert.equal(x['PAGE_OFFSET_RAW_END']! - x['PAGE_OFFSET_RAW']!, 13);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const tok = Tokenizer.fromSentencePiece(join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'bpe.model'));

test('data preprocess into MindRecord equals token records, record for record (qa and wiki)', async () => {
  const dir = tmp();
  try {
    const golden = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'data', 'golden_vicuna.json'), 'utf8')) as { alpaca_converted: string };
    writeFileSync(join(dir, 'conv.json'), golden.alpaca_converted);
    writeFileSync(join(dir, 'wiki.txt'), ' = T = \n\n The army wintered there .\nIt was cold .\n\n A park keeps the site today .\n\n More words follow here , many of them .\n');
    for (const c of [{ type: 'qa' as const, glob: join(dir, 'conv.json'), seq: 255 }, { type: 'wiki' as const, glob: join(dir, 'wiki.txt'), seq: 7 }]) {
      const opts = { datasetType: c.type, inputGlob: c.glob, tokenizer: tok, seqLength: c.seq };
      await preprocess({ ...opts, outputDir: join(dir, `${c.type}-rec`) });
      const mr = await preprocessToMindRecord({ ...opts, outputDir: join(dir, `${c.type}.mindrecord`), headerSize: H, pageSize: P });
      const records = openRecords(join(dir, `${c.type}-rec`));
      const reader = MindRecordReader.open(join(dir, `${c.type}.mindrecord`));
      try {
        assert.equal(reader.rowCount, records.rows);
        assert.equal(mr.rows, records.rows);
        assert.equal(reader.seqLength, records.seqLength);
        assert.equal(reader.hasLabels, c.type === 'qa');
        for (let i = 0; i < records.rows; i++) {
          const want = records.row(i);
          const got = reader.readRow(i);
          assert.deepEqual(got.input_ids, want.inputIds, `${c.type} row ${i} input_ids`);
          assert.deepEqual(got.labels, want.labels, `${c.type} row ${i} labels`);
        }
      } finally {
        records.close();
        reader.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing or foreign .db, a renamed file and a damaged header are typed errors naming the file', () => {
  const dir = tmp();
  try {
    const { path } = handBuilt(dir);
    const refuses = (p: string, re: RegExp): void => {
      assert.throws(() => MindRecordReader.open(p), (e: unknown) => e instanceof FormatError && re.test(e.message));
    };
    renameSync(path, join(dir, 'renamed.mindrecord'));
    renameSync(`${path}.db`, join(dir, 'renamed.mindrecord.db'));
    refuses(join(dir, 'renamed.mindrecord'), /renamed\.mindrecord\.db: SHARD_NAME is "hand\.mindrecord"/);
    renameSync(join(dir, 'renamed.mindrecord'), path);
    refuses(path, /hand\.mindrecord\.db: missing/);
    copyFileSync(join(dir, 'renamed.mindrecord.db'), `${path}.db`);
    const good = readFileSync(path);
    writeFileSync(path, Buffer.concat([good.subarray(0, 8), Buffer.from('{"version":"9.9"'), good.subarray(8 + 16)]));
    refuses(path, /hand\.mindrecord: /);
    writeFileSync(`${path}.db`, 'not sqlite at all, just text that is long enough to be read as a header......');
    writeFileSync(path, good);
    refuses(path, /hand\.mindrecord\.db: cannot read the SQLite index/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
