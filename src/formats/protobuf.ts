// A minimal protobuf wire-format reader and writer, enough for SentencePiece's ModelProto and MindSpore's
// checkpoint.proto without a schema compiler (https://protobuf.dev/programming-guides/encoding/).
import { FormatError } from '../errors.ts';

/** Wire types of the protobuf encoding. Groups (3, 4) are deprecated and used by neither format. */
export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_BYTES = 2;
export const WIRE_FIXED32 = 5;

export interface ProtoField {
  field: number;
  wire: number;
  /** Low 32 bits of a varint (int32 and enum fields; negative int32 values come as 10-byte varints). */
  varint: number;
  /** The whole varint as a number (int64/uint64 fields): exact up to 2^53, not a safe integer beyond. */
  long: number;
  /** Payload of a length-delimited field (a view into the message buffer). */
  bytes: Uint8Array;
  /** A fixed32 payload read as a little-endian float. */
  float: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export interface VarintRead {
  /** Low 32 bits, signed. */
  low: number;
  /** The whole value as a number (not a safe integer when it passes 2^53). */
  value: number;
  /** Bytes the varint took. */
  length: number;
}

/**
 * Decodes one varint from `buf` at `pos`; null when the buffer ends before its last byte, 'long' when it runs
 * past 10 bytes. Shared by the in-memory reader and by readers that walk a file in windows.
 */
export function decodeVarint(buf: Uint8Array, pos: number): VarintRead | null | 'long' {
  let low = 0;
  let value = 0;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= buf.length) return null;
    const b = buf[pos + i]!;
    if (i < 5) low |= (b & 0x7f) << (7 * i);
    value += (b & 0x7f) * 2 ** (7 * i);
    if ((b & 0x80) === 0) return { low: low | 0, value, length: i + 1 };
  }
  return 'long';
}

export class ProtoReader {
  private pos = 0;
  private readonly view: DataView;

  /**
   * `where` names the message for errors, e.g. "tokenizer.model: trainer_spec"; `hint` says what a malformed
   * message most likely means for this kind of file.
   */
  constructor(
    private readonly buf: Uint8Array,
    private readonly where: string,
    private readonly hint = 'the file is corrupt or not of the expected kind',
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Calls `visit` for each field of the message in order; unknown fields are skipped. */
  forEach(visit: (f: ProtoField) => void): void {
    const empty = new Uint8Array(0);
    while (this.pos < this.buf.length) {
      const key = this.readVarint();
      const field = key.value / 8 >= 2 ** 29 ? 0 : Math.floor(key.value / 8);
      const wire = key.low & 7;
      if (field === 0) this.fail(`field number 0 or out of range at byte ${this.pos}`);
      const f: ProtoField = { field, wire, varint: 0, long: 0, bytes: empty, float: 0 };
      if (wire === WIRE_VARINT) {
        const v = this.readVarint();
        f.varint = v.low;
        f.long = v.value;
      } else if (wire === WIRE_FIXED64) {
        this.need(8);
        this.pos += 8;
      } else if (wire === WIRE_BYTES) {
        const len = this.readVarint().value;
        this.need(len);
        f.bytes = this.buf.subarray(this.pos, this.pos + len);
        this.pos += len;
      } else if (wire === WIRE_FIXED32) {
        this.need(4);
        f.float = this.view.getFloat32(this.pos, true);
        this.pos += 4;
      } else {
        this.fail(`unsupported wire type ${wire} for field ${field} at byte ${this.pos}`);
      }
      visit(f);
    }
  }

  /** Decodes a string field; both formats' strings must be valid UTF-8. */
  static string(f: ProtoField, where: string): string {
    if (f.wire !== WIRE_BYTES) throw new FormatError(`${where}: field ${f.field} is not a string`, { where });
    try {
      return utf8.decode(f.bytes);
    } catch {
      throw new FormatError(`${where}: field ${f.field} is not valid UTF-8`, { where });
    }
  }

  /** The values of a repeated integer field: one varint (unpacked, proto2's default) or a packed run of them. */
  static varints(f: ProtoField, where: string): number[] {
    if (f.wire === WIRE_VARINT) return [f.long];
    if (f.wire !== WIRE_BYTES) throw new FormatError(`${where}: field ${f.field} has wire type ${f.wire}, not an integer`, { where });
    const out: number[] = [];
    for (let pos = 0; pos < f.bytes.length; ) {
      const v = decodeVarint(f.bytes, pos);
      if (v === null || v === 'long') throw new FormatError(`${where}: field ${f.field} holds a malformed packed varint`, { where });
      out.push(v.value);
      pos += v.length;
    }
    return out;
  }

  private readVarint(): VarintRead {
    const v = decodeVarint(this.buf, this.pos);
    if (v === null) return this.fail('truncated varint');
    if (v === 'long') return this.fail('varint longer than 10 bytes');
    this.pos += v.length;
    return v;
  }

  private need(n: number): void {
    if (!Number.isSafeInteger(n) || this.pos + n > this.buf.length) this.fail(`field runs past the end (${n} bytes needed at byte ${this.pos} of ${this.buf.length})`);
  }

  private fail(what: string): never {
    throw new FormatError(`${this.where}: not a valid protobuf message: ${what}`, { where: this.where, hint: this.hint });
  }
}

/** The bytes of a varint holding a non-negative safe integer. */
export function encodeVarint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new FormatError(`protobuf: cannot encode ${value} as a varint`);
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/** Builds a message field by field (in the order written, as protoc's serializers write field-number order). */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  get byteLength(): number {
    return this.size;
  }

  private put(b: Uint8Array): this {
    this.parts.push(b);
    this.size += b.byteLength;
    return this;
  }

  private key(field: number, wire: number): this {
    return this.put(encodeVarint(field * 8 + wire));
  }

  varint(field: number, value: number): this {
    return this.key(field, WIRE_VARINT).put(encodeVarint(value));
  }

  bytes(field: number, data: Uint8Array): this {
    return this.key(field, WIRE_BYTES).put(encodeVarint(data.byteLength)).put(data);
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: ProtoWriter): this {
    return this.bytes(field, m.finish());
  }

  /**
   * The key and length of a bytes field whose `length` payload bytes the caller writes itself, right after this
   * message's bytes (so a large tensor never has to be copied into the message).
   */
  bytesHeader(field: number, length: number): this {
    return this.key(field, WIRE_BYTES).put(encodeVarint(length));
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }
}
