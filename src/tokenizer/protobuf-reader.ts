// A minimal protobuf wire-format reader: just enough to walk SentencePiece's ModelProto without a schema compiler.
import { FormatError } from '../errors.ts';

/** Wire types of the protobuf encoding. Groups (3, 4) are deprecated and never used by SentencePiece. */
export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_BYTES = 2;
export const WIRE_FIXED32 = 5;

export interface ProtoField {
  field: number;
  wire: number;
  /** Low 32 bits of a varint (int32 and enum fields; negative int32 values come as 10-byte varints). */
  varint: number;
  /** Payload of a length-delimited field (a view into the message buffer). */
  bytes: Uint8Array;
  /** A fixed32 payload read as a little-endian float. */
  float: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class ProtoReader {
  private pos = 0;
  private readonly view: DataView;

  /** `where` names the message for errors, e.g. "tokenizer.model: trainer_spec". */
  constructor(
    private readonly buf: Uint8Array,
    private readonly where: string,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Calls `visit` for each field of the message in order; unknown fields are skipped. */
  forEach(visit: (f: ProtoField) => void): void {
    const empty = new Uint8Array(0);
    while (this.pos < this.buf.length) {
      const key = this.readVarint();
      const field = key >>> 3;
      const wire = key & 7;
      if (field === 0) this.fail(`field number 0 at byte ${this.pos}`);
      const f: ProtoField = { field, wire, varint: 0, bytes: empty, float: 0 };
      if (wire === WIRE_VARINT) {
        f.varint = this.readVarint();
      } else if (wire === WIRE_FIXED64) {
        this.need(8);
        this.pos += 8;
      } else if (wire === WIRE_BYTES) {
        const len = this.readVarint() >>> 0;
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

  /** Decodes a string field; SentencePiece strings must be valid UTF-8. */
  static string(f: ProtoField, where: string): string {
    if (f.wire !== WIRE_BYTES) throw new FormatError(`${where}: field ${f.field} is not a string`, { where });
    try {
      return utf8.decode(f.bytes);
    } catch {
      throw new FormatError(`${where}: field ${f.field} is not valid UTF-8`, { where });
    }
  }

  /** Reads a varint and returns its low 32 bits as a signed int32 (what int32, bool and enum fields need). */
  private readVarint(): number {
    let result = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) this.fail('truncated varint');
      const b = this.buf[this.pos++]!;
      if (i < 5) result |= (b & 0x7f) << (7 * i);
      if ((b & 0x80) === 0) return result | 0;
    }
    return this.fail('varint longer than 10 bytes');
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) this.fail(`field runs past the end (${n} bytes needed at byte ${this.pos} of ${this.buf.length})`);
  }

  private fail(what: string): never {
    throw new FormatError(`${this.where}: not a valid protobuf message: ${what}`, {
      where: this.where,
      hint: 'the file is corrupt or not a SentencePiece model',
    });
  }
}
