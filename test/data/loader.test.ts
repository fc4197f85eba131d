// The data loader: seeded per-epoch order, sharding by rank, drop_remainder, and a global cursor that resumes
// exactly (no sample replayed or skipped) under another world size or batch size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataLoader, emptyReport, epochOrder, openRecords, RecordsWriter, validateRowsFor, type Records, type RowBuffers, type RowStore } from '../../src/data/index.ts';
import { DataError } from '../../src/errors.ts';

const SEQ = 5;

/** Records whose row r holds ids [r, r+1, ...] so a batch tells which rows it has. */
function makeRecords(rows: number, segments = false): Records {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-loader-'));
  const w = new RecordsWriter(dir, { seqLength: SEQ, segments, rowsPerShard: 7, bufferRows: 3 });
  for (let r = 0; r < rows; r++) {
    const ids = Int32Array.from({ length: SEQ + 1 }, (_, i) => r * 100 + i);
    const labels = ids.map((x, i) => (i === 0 ? -100 : x));
    w.push(ids, labels, segments ? Int32Array.from({ length: SEQ + 1 }, (_, i) => 1 + (i >> 2)) : undefined);
  }
  w.finish({ seq_length: SEQ, dataset_type: 'text', template: null, packed: segments, pad_id: 0, ignore_id: -100, tokenizer: { identity: 'test', kind: 'sentencepiece', vocab_size: 10000, bos_id: 1, eos_id: 2 } }, emptyReport());
  return openRecords(dir);
}

/** The rows makeRecords writes, held in arrays: a second RowStore implementation, as MindRecord will be. */
class ArrayRowStore implements RowStore {
  readonly source = 'memory';
  readonly seqLength = SEQ;
  readonly rowLength = SEQ + 1;
  readonly tokenizer = { identity: 'test', vocabSize: 10000 };
  readonly maxTokenId: number;
  private closed = false;
  constructor(
    private readonly data: { inputIds: Int32Array; labels: Int32Array; segmentIds?: Int32Array }[],
    readonly hasSegments: boolean,
  ) {
    this.maxTokenId = Math.max(-1, ...data.flatMap((r) => Array.from(r.inputIds)));
  }
  get rows(): number {
    return this.data.length;
  }
  readInto(row: number, dst: RowBuffers, at = 0): void {
    if (this.closed) throw new DataError('memory: closed');
    const r = this.data[row];
    if (r === undefined) throw new DataError(`memory: no row ${row}`);
    dst.inputIds.set(r.inputIds, at);
    dst.labels.set(r.labels, at);
    if (this.hasSegments && r.segmentIds !== undefined) dst.segmentIds?.set(r.segmentIds, at);
  }
  close(): void {
    this.closed = true;
  }
}

function makeArrayStore(rows: number, segments = false): ArrayRowStore {
  const data = Array.from({ length: rows }, (_, r) => {
    const inputIds = Int32Array.from({ length: SEQ + 1 }, (_, i) => r * 100 + i);
    const labels = inputIds.map((x, i) => (i === 0 ? -100 : x));
    return segments ? { inputIds, labels, segmentIds: Int32Array.from({ length: SEQ + 1 }, (_, i) => 1 + (i >> 2)) } : { inputIds, labels };
  });
  return new ArrayRowStore(data, segments);
}

/** The row indices of one batch. */
const rowsOf = (b: { inputIds: Int32Array; rows: number }): number[] => Array.from({ length: b.rows }, (_, i) => (b.inputIds[i * (SEQ + 1)] as number) / 100);

test('records span several shards and read back row by row', () => {
  const rec = makeRecords(23, true);
  assert.equal(rec.manifest.shards.length, 4);
  rec.verify();
  for (const r of [0, 6, 7, 13, 14, 22]) {
    const row = rec.row(r);
    assert.deepEqual(Array.from(row.inputIds), [0, 1, 2, 3, 4, 5].map((i) => r * 100 + i));
    assert.equal(row.labels[0], -100);
    assert.deepEqual(Array.from(row.segmentIds as Int32Array), [1, 1, 1, 1, 2, 2]);
  }
  assert.throws(() => rec.row(23), DataError);
  rec.close();
});

test('the order is a seeded permutation per epoch; no shuffle keeps file order', () => {
  const a = Array.from(epochOrder(50, 0, 7, true));
  assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
  assert.deepEqual(Array.from(epochOrder(50, 0, 7, true)), a);
  assert.notDeepEqual(Array.from(epochOrder(50, 1, 7, true)), a);
  assert.notDeepEqual(Array.from(epochOrder(50, 0, 8, true)), a);
  assert.deepEqual(Array.from(epochOrder(5, 3, 7, false)), [0, 1, 2, 3, 4]);
  // Pinned: the algorithm is specified in docs/DATA.md, so a change must be deliberate.
  assert.deepEqual(Array.from(epochOrder(10, 0, 0, true)), PINNED);
});
// Also computed by a Python transcription of the algorithm in docs/DATA.md.
const PINNED = [7, 8, 4, 2, 0, 6, 9, 1, 3, 5];

test('ranks split each global batch; together they equal one rank with the global batch size', () => {
  const rec = makeRecords(23);
  const one = new DataLoader(rec, { batchSize: 6, seed: 3, dropRemainder: false });
  const ranks = [0, 1, 2].map((rank) => new DataLoader(rec, { batchSize: 2, seed: 3, dropRemainder: false, rank, worldSize: 3 }));
  assert.equal(one.stepsPerEpoch, 4);
  for (let step = 0; step < 4; step++) {
    const whole = one.next();
    assert.ok(whole);
    const parts = ranks.map((l) => l.next());
    assert.deepEqual(parts.flatMap((p) => rowsOf(p!)), rowsOf(whole), `step ${step}`);
    if (step === 3) assert.deepEqual(parts.map((p) => p!.rows), [1, 2, 2]);
  }
  assert.equal(one.next(), null);
  assert.deepEqual(one.cursor(), { epoch: 1, position: 0, rows: 23, seed: 3, shuffle: true });
  assert.equal(one.next()?.epoch, 1);
  rec.close();
});

test('drop_remainder skips the last partial global batch; too few rows is an error', () => {
  const rec = makeRecords(23);
  const l = new DataLoader(rec, { batchSize: 5, worldSize: 2, rank: 1, seed: 0 });
  assert.equal(l.stepsPerEpoch, 2);
  assert.ok(l.next());
  assert.ok(l.next());
  assert.equal(l.next(), null);
  assert.equal(l.epoch, 1);
  assert.throws(() => new DataLoader(rec, { batchSize: 12, worldSize: 2 }), (e: unknown) => e instanceof DataError && /do not fill one global batch/.test(e.message));
  rec.close();
});

test('a saved cursor resumes exactly under other world sizes: nothing replayed, nothing skipped', () => {
  const rec = makeRecords(23);
  const seen: number[] = [];
  const take = (loaders: DataLoader[]): boolean => {
    const bs = loaders.map((l) => l.next());
    if (bs[0] === null) return false;
    for (const b of bs) seen.push(...rowsOf(b!));
    return true;
  };
  // Two ranks for 2 steps, then stop and save rank 1's cursor.
  let loaders = [0, 1].map((rank) => new DataLoader(rec, { batchSize: 2, seed: 11, dropRemainder: false, rank, worldSize: 2 }));
  take(loaders);
  take(loaders);
  const saved = JSON.parse(JSON.stringify(loaders[1]!.cursor()));
  assert.deepEqual(saved, loaders[0]!.cursor());
  // Resume on three ranks with batch 3, for one step, then on one rank for the rest of the epoch.
  loaders = [0, 1, 2].map((rank) => new DataLoader(rec, { batchSize: 3, seed: 11, dropRemainder: false, rank, worldSize: 3 }));
  for (const l of loaders) l.restore(saved);
  take(loaders);
  const again = new DataLoader(rec, { batchSize: 4, seed: 11, dropRemainder: false });
  again.restore(loaders[2]!.cursor());
  while (take([again]));
  assert.deepEqual(seen, Array.from(epochOrder(23, 0, 11, true)));
  assert.equal(again.epoch, 1);
  assert.throws(() => new DataLoader(rec, { batchSize: 1, seed: 12 }).restore(saved), (e: unknown) => e instanceof DataError && /seed 11/.test(e.message));
  rec.close();
});

test('the loader reads any RowStore: an in-memory store gives the same batches, cursors and checks as the records', () => {
  for (const segments of [false, true]) {
    const rec = makeRecords(23, segments);
    const mem = makeArrayStore(23, segments);
    const opts = [
      { batchSize: 4, seed: 5 },
      { batchSize: 2, seed: 9, dropRemainder: false, rank: 1, worldSize: 3 },
      { batchSize: 3, shuffle: false, dropRemainder: false },
    ];
    for (const o of opts) {
      const a = new DataLoader(rec, o);
      const b = new DataLoader(mem, o);
      assert.equal(b.stepsPerEpoch, a.stepsPerEpoch);
      for (let step = 0; step < 2 * a.stepsPerEpoch + 2; step++) {
        const x = a.next();
        const y = b.next();
        assert.deepEqual(y, x, `step ${step}`);
        assert.deepEqual(b.cursor(), a.cursor());
      }
    }
    // The same identity and vocabulary checks apply to both.
    for (const store of [rec, mem]) {
      validateRowsFor(store, { tokenizerIdentity: 'test', seqLength: SEQ, vocabSize: 10000 });
      assert.throws(() => validateRowsFor(store, { tokenizerIdentity: 'other', seqLength: SEQ, vocabSize: 10000 }), (e: unknown) => e instanceof DataError && /another tokenizer/.test(e.message));
      assert.throws(() => validateRowsFor(store, { tokenizerIdentity: 'test', seqLength: SEQ + 1, vocabSize: 10000 }), (e: unknown) => e instanceof DataError && /seq_length 5, training uses 6/.test(e.message));
    }
    assert.throws(() => new DataLoader(mem, { batchSize: 24 }), (e: unknown) => e instanceof DataError && /^memory: 23 rows do not fill/.test(e.message));
    rec.close();
    mem.close();
  }
});
