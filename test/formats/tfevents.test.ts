// TensorBoard event files: CRC-32C against RFC 3720's test vectors, the record framing and Event protobuf laid out
// byte by byte, and files written by TfEventsWriter read back (every length and CRC checked).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { crc32c, encodeEvent, encodeRecord, maskedCrc32c, readTfEvents, TfEventsWriter } from '../../src/formats/tfevents.ts';

test('crc32c: RFC 3720 (iSCSI) B.4 test vectors and the check value of "123456789"', () => {
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

test('masked crc: rotate right by 15 and add 0xa282ead8 (mod 2^32)', () => {
  // 0xe3069283 rotated right by 15 is 0x2507c60d (worked out by hand / Python); plus the constant, mod 2^32.
  assert.equal(maskedCrc32c(new TextEncoder().encode('123456789')), 0xc78ab0e5);
});

test('record framing: length, masked CRC of the length, payload, masked CRC of the payload', () => {
  const payload = new TextEncoder().encode('abc');
  const rec = encodeRecord(payload);
  assert.equal(rec.length, 8 + 4 + 3 + 4);
  assert.deepEqual([...rec.subarray(0, 8)], [3, 0, 0, 0, 0, 0, 0, 0]);
  const view = new DataView(rec.buffer);
  assert.equal(view.getUint32(8, true), maskedCrc32c(Uint8Array.of(3, 0, 0, 0, 0, 0, 0, 0)));
  assert.deepEqual([...rec.subarray(12, 15)], [0x61, 0x62, 0x63]);
  assert.equal(view.getUint32(15, true), maskedCrc32c(payload));
});

test('Event protobuf bytes: wall_time (fixed64), step (varint), file_version / summary values', () => {
  const f64 = (x: number): number[] => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, true);
    return [...b];
  };
  const f32 = (x: number): number[] => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, x, true);
    return [...b];
  };
  const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
  assert.deepEqual([...encodeEvent({ wallTime: 1.5, step: 0, fileVersion: 'brain.Event:2' })], [0x09, ...f64(1.5), 0x1a, 13, ...ascii('brain.Event:2')]);
  // step 300 = varint ac 02; value {tag "loss", simple_value 0.25}: 0a 04 'loss' 15 <f32>; summary: 0a <len> value.
  const value = [0x0a, 4, ...ascii('loss'), 0x15, ...f32(0.25)];
  assert.deepEqual([...encodeEvent({ wallTime: 2, step: 300, scalars: [{ tag: 'loss', value: 0.25 }] })], [0x09, ...f64(2), 0x10, 0xac, 0x02, 0x2a, value.length + 2, 0x0a, value.length, ...value]);
});

test('TfEventsWriter: file_version first, scalars with steps and wall times, read back with every CRC checked', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-tfevents-'));
  try {
    let t = 1_700_000_000.25;
    const w = new TfEventsWriter(join(dir, 'tb'), () => (t += 1));
    w.scalar('train/loss', 2.5, 1);
    w.scalars({ 'train/loss': 2.25, 'train/lr': 3e-4 }, 2);
    w.scalar('eval/loss', Number.NaN, 2 ** 40);
    w.close();
    const files = readdirSync(join(dir, 'tb'));
    assert.equal(files.length, 1);
    assert.match(files[0]!, /^events\.out\.tfevents\.1700000001\./);
    const bytes = readFileSync(w.file);
    const events = readTfEvents(bytes, w.file);
    assert.equal(events.length, 4);
    assert.deepEqual(events[0], { wallTime: 1_700_000_001.25, step: 0, fileVersion: 'brain.Event:2', scalars: [] });
    assert.deepEqual(events[1], { wallTime: 1_700_000_002.25, step: 1, scalars: [{ tag: 'train/loss', value: 2.5 }] });
    assert.equal(events[2]!.step, 2);
    assert.deepEqual(events[2]!.scalars.map((s) => s.tag), ['train/loss', 'train/lr']);
    assert.equal(events[2]!.scalars[1]!.value, Math.fround(3e-4));
    assert.equal(events[3]!.step, 2 ** 40);
    assert.ok(Number.isNaN(events[3]!.scalars[0]!.value));
    // The file is exactly the records of those events, nothing else.
    const again = Buffer.concat([
      encodeRecord(encodeEvent({ wallTime: 1_700_000_001.25, step: 0, fileVersion: 'brain.Event:2' })),
      encodeRecord(encodeEvent({ wallTime: 1_700_000_002.25, step: 1, scalars: [{ tag: 'train/loss', value: 2.5 }] })),
    ]);
    assert.deepEqual(bytes.subarray(0, again.length), again);
    assert.throws(() => w.scalar('x', 1, 3), /closed/);
    assert.throws(() => new TfEventsWriter(join(dir, 'tb'), () => 1).scalar('x', 1, 1.5), RangeError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readTfEvents: a flipped byte or a torn record is a FormatError naming the offset', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-tfevents-'));
  try {
    const w = new TfEventsWriter(dir, () => 5);
    w.scalar('a', 1, 1);
    w.close();
    const bytes = readFileSync(w.file);
    const first = 12 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true) + 4;
    for (const [at, what] of [[3, /length CRC/], [first + 14, /payload CRC/], [bytes.length - 1, /payload CRC/]] as const) {
      const bad = Uint8Array.from(bytes);
      bad[at] = bad[at]! ^ 0x40;
      assert.throws(() => readTfEvents(bad, 'f'), (e: unknown) => e instanceof FormatError && what.test(e.message) && e.message.includes('f @'));
    }
    assert.throws(() => readTfEvents(bytes.subarray(0, bytes.length - 2), 'f'), new RegExp(`f @${first}: torn record`));
    assert.throws(() => readTfEvents(bytes.subarray(0, first + 5), 'f'), /torn record header/);
    assert.deepEqual(readTfEvents(new Uint8Array(0)), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
