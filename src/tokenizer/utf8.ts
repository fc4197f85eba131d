// UTF-8 rules exactly as SentencePiece applies them (a byte that does not start a valid character is one bad byte).

/** Length of the character whose lead byte is `b`, from the lead byte alone (SentencePiece's OneCharLen). */
export function oneCharLen(b: number): number {
  return b < 0xc0 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
}

function trail(b: number | undefined): boolean {
  return b !== undefined && (b & 0xc0) === 0x80;
}

/**
 * Length of the valid UTF-8 character at buf[pos] (ending before `end`), or 0 when the byte starts no valid
 * character: a stray continuation byte, a truncated or overlong sequence, a surrogate or a code point past U+10FFFF.
 */
export function validCharLen(buf: Uint8Array, pos: number, end: number): number {
  const b0 = buf[pos]!;
  if (b0 < 0x80) return 1;
  const len = end - pos;
  if ((b0 & 0xe0) === 0xc0) {
    if (len < 2 || !trail(buf[pos + 1])) return 0;
    const cp = ((b0 & 0x1f) << 6) | (buf[pos + 1]! & 0x3f);
    return cp >= 0x80 ? 2 : 0;
  }
  if ((b0 & 0xf0) === 0xe0) {
    if (len < 3 || !trail(buf[pos + 1]) || !trail(buf[pos + 2])) return 0;
    const cp = ((b0 & 0x0f) << 12) | ((buf[pos + 1]! & 0x3f) << 6) | (buf[pos + 2]! & 0x3f);
    return cp >= 0x800 && (cp < 0xd800 || cp >= 0xe000) ? 3 : 0;
  }
  if ((b0 & 0xf8) === 0xf0) {
    if (len < 4 || !trail(buf[pos + 1]) || !trail(buf[pos + 2]) || !trail(buf[pos + 3])) return 0;
    const cp = ((b0 & 0x07) << 18) | ((buf[pos + 1]! & 0x3f) << 12) | ((buf[pos + 2]! & 0x3f) << 6) | (buf[pos + 3]! & 0x3f);
    return cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
  }
  return 0;
}

/** U+FFFD REPLACEMENT CHARACTER, what every bad byte becomes. */
export const REPLACEMENT = new Uint8Array([0xef, 0xbf, 0xbd]);
/** U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible whitespace. */
export const SPACE_SYMBOL = new Uint8Array([0xe2, 0x96, 0x81]);

/** A growable byte buffer reused across calls, so encoding a batch does not allocate per line. */
export class ByteBuffer {
  bytes: Uint8Array;
  length = 0;
  constructor(capacity = 256) {
    this.bytes = new Uint8Array(capacity);
  }
  reserve(extra: number): void {
    const need = this.length + extra;
    if (need <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(need, this.bytes.length * 2));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
  push(b: number): void {
    if (this.length === this.bytes.length) this.reserve(1);
    this.bytes[this.length++] = b;
  }
  append(src: Uint8Array, start = 0, end = src.length): void {
    this.reserve(end - start);
    this.bytes.set(src.subarray(start, end), this.length);
    this.length += end - start;
  }
}
