// SentencePiece's precompiled charsmap: a darts-clone double-array trie of UTF-8 rules plus their NUL-terminated replacements.
// This is how every SentencePiece normalizer (nmt_nfkc, nfkc, nmt_nfkc_cf, nfkc_cf, user rules) is shipped in a model,
// so reading it gives the reference normalization exactly, with no Unicode tables of our own.
import { FormatError } from '../errors.ts';

/** SentencePiece looks at no more than this many matches per position (Normalizer::kMaxTrieResultsSize). */
const MAX_RESULTS = 32;

export class PrecompiledCharsmap {
  private readonly units: Uint32Array;
  private readonly normalized: Uint8Array;
  /** Replacement bytes by offset into `normalized`, cut at the NUL. */
  private readonly cache = new Map<number, Uint8Array>();
  /** Replacement found by the last successful `match`. */
  replacement: Uint8Array = new Uint8Array(0);

  constructor(blob: Uint8Array, where: string) {
    const broken = (why: string): never => {
      throw new FormatError(`${where}: the precompiled charsmap is broken: ${why}`, { where, hint: 'the model file is corrupt' });
    };
    if (blob.length <= 4) broken('shorter than its header');
    const trieSize = new DataView(blob.buffer, blob.byteOffset, 4).getUint32(0, true);
    if (trieSize + 4 > blob.length || trieSize % 4 !== 0 || trieSize === 0) broken(`trie size ${trieSize} does not fit ${blob.length} bytes`);
    // Copy the units so they are 4-byte aligned whatever the protobuf offset was.
    this.units = new Uint32Array(trieSize / 4);
    new Uint8Array(this.units.buffer).set(blob.subarray(4, 4 + trieSize));
    if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
      for (let i = 0; i < this.units.length; i++) {
        const u = this.units[i]!;
        this.units[i] = ((u & 0xff) << 24) | ((u & 0xff00) << 8) | ((u >>> 8) & 0xff00) | (u >>> 24);
      }
    }
    this.normalized = blob.slice(4 + trieSize);
  }

  /**
   * Length of the longest rule matching a prefix of buf[pos, end) (0 if none); sets `replacement`.
   * A double-array walk: node ^= offset, then ^= byte, and the unit there must carry that byte as its label.
   */
  match(buf: Uint8Array, pos: number, end: number): number {
    const units = this.units;
    let unit = units[0]!;
    let node = offsetOf(unit);
    let results = 0;
    let longest = 0;
    let value = 0;
    for (let i = pos; i < end; i++) {
      const b = buf[i]!;
      node ^= b;
      if (node >= units.length) break;
      unit = units[node]!;
      // label = bits 0-7 plus bit 31 (set on value units, which therefore never match a byte).
      if ((unit & 0x800000ff) !== b) break;
      node ^= offsetOf(unit);
      if ((unit >>> 8) & 1) {
        if (results < MAX_RESULTS && node < units.length) {
          longest = i + 1 - pos;
          value = units[node]! & 0x7fffffff;
        }
        results++;
      }
    }
    if (longest > 0) this.replacement = this.lookup(value);
    return longest;
  }

  private lookup(offset: number): Uint8Array {
    let r = this.cache.get(offset);
    if (r === undefined) {
      let end = offset;
      while (end < this.normalized.length && this.normalized[end] !== 0) end++;
      r = this.normalized.subarray(Math.min(offset, end), end);
      this.cache.set(offset, r);
    }
    return r;
  }
}

function offsetOf(unit: number): number {
  return (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
}
