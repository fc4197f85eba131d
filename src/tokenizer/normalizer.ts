// SentencePiece's normalizer: charsmap rules, user-defined symbols kept verbatim, whitespace squeezing, dummy prefix, ▁.
import type { ByteTrie } from './byte-trie.ts';
import type { PrecompiledCharsmap } from './charsmap.ts';
import type { NormalizerSpec } from './sentencepiece-model.ts';
import { ByteBuffer, REPLACEMENT, validCharLen } from './utf8.ts';

const SPACE = 0x20;

export class SentencePieceNormalizer {
  private readonly out = new ByteBuffer(1024);
  // The result of the last `prefix` call: replacement bytes rBuf[rStart, rEnd) for `consumed` input bytes.
  private rBuf: Uint8Array = REPLACEMENT;
  private rStart = 0;
  private rEnd = 0;
  private consumed = 0;

  constructor(
    private readonly spec: NormalizerSpec,
    private readonly charsmap: PrecompiledCharsmap | null,
    /** User-defined pieces: matched before any rule and copied unchanged. */
    private readonly userDefined: ByteTrie | null,
  ) {}

  /**
   * Normalizes input[0, n) and returns the normalized bytes (a view valid until the next call).
   * The output is always valid UTF-8: each byte that starts no valid character becomes U+FFFD.
   */
  normalize(input: Uint8Array, n: number): Uint8Array {
    const out = this.out;
    out.length = 0;
    const { removeExtraWhitespaces: squeeze, escapeWhitespaces: escape, addDummyPrefix } = this.spec;
    let pos = 0;
    if (squeeze) {
      while (pos < n) {
        this.prefix(input, pos, n);
        if (this.rEnd - this.rStart !== 1 || this.rBuf[this.rStart] !== SPACE) break;
        pos += this.consumed;
      }
    }
    if (pos >= n) return out.bytes.subarray(0, 0);
    out.reserve((n - pos) * 3 + 3);
    if (addDummyPrefix) this.appendSpace(escape);
    let isPrevSpace = squeeze;
    while (pos < n) {
      this.prefix(input, pos, n);
      const r = this.rBuf;
      let s = this.rStart;
      const e = this.rEnd;
      if (isPrevSpace) while (s < e && r[s] === SPACE) s++;
      if (s < e) {
        out.reserve((e - s) * 3);
        const bytes = out.bytes;
        let o = out.length;
        for (let k = s; k < e; k++) {
          const b = r[k]!;
          if (b === SPACE && escape) {
            bytes[o] = 0xe2;
            bytes[o + 1] = 0x96;
            bytes[o + 2] = 0x81;
            o += 3;
          } else {
            bytes[o++] = b;
          }
        }
        out.length = o;
        isPrevSpace = r[e - 1] === SPACE;
      }
      pos += this.consumed;
      if (!squeeze) isPrevSpace = false;
    }
    if (squeeze) {
      const b = out.bytes;
      if (escape) {
        while (out.length >= 3 && b[out.length - 3] === 0xe2 && b[out.length - 2] === 0x96 && b[out.length - 1] === 0x81) out.length -= 3;
      } else {
        while (out.length >= 1 && b[out.length - 1] === SPACE) out.length -= 1;
      }
    }
    return out.bytes.subarray(0, out.length);
  }

  private appendSpace(escape: boolean): void {
    if (escape) {
      this.out.push(0xe2);
      this.out.push(0x96);
      this.out.push(0x81);
    } else {
      this.out.push(SPACE);
    }
  }

  /** SentencePiece's NormalizePrefix: the normalized form of the longest unit at input[pos]. */
  private prefix(input: Uint8Array, pos: number, n: number): void {
    if (this.userDefined !== null) {
      const len = this.userDefined.longestPrefix(input, pos, n);
      if (len > 0) return this.set(input, pos, pos + len, len);
    }
    if (this.charsmap !== null) {
      const len = this.charsmap.match(input, pos, n);
      if (len > 0) {
        const r = this.charsmap.replacement;
        return this.set(r, 0, r.length, len);
      }
    }
    const len = validCharLen(input, pos, n);
    if (len === 0) this.set(REPLACEMENT, 0, 3, 1);
    else this.set(input, pos, pos + len, len);
  }

  private set(buf: Uint8Array, start: number, end: number, consumed: number): void {
    this.rBuf = buf;
    this.rStart = start;
    this.rEnd = end;
    this.consumed = consumed;
  }
}
