// TensorBoard event files: our writer of the tfevents record format (TensorFlow's record_writer framing around
// `Event` protobufs of event.proto / summary.proto) and a reader that checks every length and CRC, used by tests.
//
// A file is a sequence of records: uint64 length (little-endian), uint32 masked CRC32C of those 8 bytes, `length`
// bytes of payload, uint32 masked CRC32C of the payload. The payload is an Event: wall_time (field 1, double),
// step (2, int64), and either file_version (3, string; "brain.Event:2" in the first record) or summary (5), whose
// repeated value (1) holds a tag (1, string) and a simple_value (2, float).
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../errors.ts';

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord files use. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** The masking TFRecord applies to stored CRCs (rotate right by 15, add a constant), so that CRCs of CRCs stay strong. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One record: the framing around `payload`. */
export function encodeRecord(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + payload.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(payload.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(payload, 12);
  view.setUint32(12 + payload.length, maskedCrc32c(payload), true);
  return out;
}

/** A protobuf message being written: fields in the order they are added. */
class ProtoWriter {
  private readonly parts: number[] = [];

  private varint(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    while (v >= 0x80n) {
      this.parts.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.parts.push(Number(v));
  }

  private key(field: number, wireType: number): void {
    this.varint(BigInt((field << 3) | wireType));
  }

  double(field: number, value: number): this {
    this.key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    this.parts.push(...b);
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.parts.push(...b);
    return this;
  }

  int64(field: number, value: number): this {
    this.key(field, 0);
    this.varint(BigInt(value));
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.key(field, 2);
    this.varint(BigInt(value.length));
    for (const b of value) this.parts.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

export const FILE_VERSION = 'brain.Event:2';

export interface ScalarValue {
  tag: string;
  value: number;
}

/** The Event payload: wall_time, step, then a file_version or a summary of scalar values. */
export function encodeEvent(e: { wallTime: number; step: number; fileVersion?: string; scalars?: ScalarValue[] }): Uint8Array {
  const w = new ProtoWriter().double(1, e.wallTime);
  // proto3 leaves a zero step out, as TensorFlow's writer does.
  if (e.step !== 0) w.int64(2, e.step);
  if (e.fileVersion !== undefined) w.string(3, e.fileVersion);
  if (e.scalars !== undefined) {
    const summary = new ProtoWriter();
    for (const s of e.scalars) summary.bytes(1, new ProtoWriter().string(1, s.tag).float(2, s.value).finish());
    w.bytes(5, summary.finish());
  }
  return w.finish();
}

let filesMade = 0;

/**
 * Writes scalars to `dir/events.out.tfevents.<seconds>.<host>.<pid>.<n>`, which TensorBoard reads as one run.
 * Each record goes to the file in one write call, so a crash leaves at most a torn last record (TensorBoard stops
 * reading there); `flush()` fsyncs. An event file is an append-only log: it is not written through a temp file.
 */
export class TfEventsWriter {
  readonly file: string;
  private fd: number | null;

  constructor(dir: string, private readonly clock: () => number = () => Date.now() / 1000) {
    mkdirSync(dir, { recursive: true });
    const now = this.clock();
    this.file = join(dir, `events.out.tfevents.${Math.floor(now)}.${hostname()}.${process.pid}.${filesMade++}`);
    this.fd = openSync(this.file, 'wx');
    this.write(encodeEvent({ wallTime: now, step: 0, fileVersion: FILE_VERSION }));
  }

  /** One scalar at `step` (float32, as TensorBoard stores simple values). */
  scalar(tag: string, value: number, step: number): this {
    return this.scalars({ [tag]: value }, step);
  }

  /** Several scalars of one step in one event, e.g. `{ 'train/loss': 2.1, 'train/lr': 3e-4 }`. */
  scalars(values: Record<string, number>, step: number): this {
    if (!Number.isSafeInteger(step)) throw new RangeError(`step must be an integer (got ${step})`);
    const scalars = Object.entries(values).map(([tag, value]) => ({ tag, value }));
    this.write(encodeEvent({ wallTime: this.clock(), step, scalars }));
    return this;
  }

  /** Makes what was written durable. */
  flush(): void {
    if (this.fd !== null) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === null) return;
    this.flush();
    closeSync(this.fd);
    this.fd = null;
  }

  private write(payload: Uint8Array): void {
    if (this.fd === null) throw new Error(`${this.file}: the writer is closed`);
    const record = encodeRecord(payload);
    let done = 0;
    while (done < record.length) done += writeSync(this.fd, record, done, record.length - done);
  }
}

export interface TfEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: ScalarValue[];
}

/** Reads protobuf fields of `bytes`, calling `field` with the number, wire type and (for varint/fixed) value or span. */
function eachField(bytes: Uint8Array, where: string, field: (no: number, wire: number, at: number, end: number) => void): void {
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (pos >= bytes.length || shift > 63n) throw new FormatError(`${where}: truncated or overlong varint`, { where });
      const b = bytes[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return result;
    }
  };
  while (pos < bytes.length) {
    const key = Number(varint());
    const no = key >>> 3, wire = key & 7;
    const at = pos;
    let end: number;
    if (wire === 0) {
      varint();
      end = pos;
    } else if (wire === 1) end = pos + 8;
    else if (wire === 5) end = pos + 4;
    else if (wire === 2) {
      const len = varint();
      if (len > BigInt(bytes.length - pos)) throw new FormatError(`${where}: field ${no} runs past the end`, { where });
      end = pos + Number(len);
      field(no, wire, pos, end);
      pos = end;
      continue;
    } else throw new FormatError(`${where}: unsupported wire type ${wire} (field ${no})`, { where });
    if (end > bytes.length) throw new FormatError(`${where}: field ${no} runs past the end`, { where });
    field(no, wire, at, end);
    pos = end;
  }
}

function decodeEvent(payload: Uint8Array, where: string): TfEvent {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const event: TfEvent = { wallTime: 0, step: 0, scalars: [] };
  const text = new TextDecoder('utf-8');
  eachField(payload, where, (no, wire, at, end) => {
    if (no === 1 && wire === 1) event.wallTime = view.getFloat64(at, true);
    else if (no === 2 && wire === 0) {
      let v = 0n;
      for (let i = end - 1; i >= at; i--) v = (v << 7n) | BigInt(payload[i]! & 0x7f);
      event.step = Number(BigInt.asIntN(64, v));
    } else if (no === 3 && wire === 2) event.fileVersion = text.decode(payload.subarray(at, end));
    else if (no === 5 && wire === 2) {
      eachField(payload.subarray(at, end), `${where} summary`, (vno, vwire, vat, vend) => {
        if (vno !== 1 || vwire !== 2) return;
        const value: ScalarValue = { tag: '', value: Number.NaN };
        const inner = payload.subarray(at + vat, at + vend);
        const innerView = new DataView(inner.buffer, inner.byteOffset, inner.byteLength);
        eachField(inner, `${where} summary value`, (fno, fwire, fat, fend) => {
          if (fno === 1 && fwire === 2) value.tag = text.decode(inner.subarray(fat, fend));
          else if (fno === 2 && fwire === 5) value.value = innerView.getFloat32(fat, true);
        });
        event.scalars.push(value);
      });
    }
  });
  return event;
}

/** Every event of a tfevents file's bytes; a bad length or CRC, or a torn record, is a FormatError naming its offset. */
export function readTfEvents(bytes: Uint8Array, file = 'tfevents'): TfEvent[] {
  const events: TfEvent[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos < bytes.length) {
    const where = `${file} @${pos}`;
    if (bytes.length - pos < 12) throw new FormatError(`${where}: torn record header`, { where });
    const length = view.getBigUint64(pos, true);
    if (view.getUint32(pos + 8, true) !== maskedCrc32c(bytes.subarray(pos, pos + 8))) throw new FormatError(`${where}: length CRC mismatch`, { where });
    if (length > BigInt(bytes.length - pos - 16)) throw new FormatError(`${where}: torn record (length ${length} past the end)`, { where });
    const start = pos + 12, end = start + Number(length);
    const payload = bytes.subarray(start, end);
    if (view.getUint32(end, true) !== maskedCrc32c(payload)) throw new FormatError(`${where}: payload CRC mismatch`, { where });
    events.push(decodeEvent(payload, where));
    pos = end + 4;
  }
  return events;
}
