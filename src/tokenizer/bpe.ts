// SentencePiece BPE encoding: repeatedly merge the adjacent pair whose concatenation is the best-scoring piece
// (ties: leftmost), starting from characters and frozen user-defined symbols. Pairs are looked up by symbol ids,
// precomputed from the vocabulary, instead of by building strings.
import { ByteTrie } from './byte-trie.ts';
import { PieceType } from './sentencepiece-model.ts';
import { latin1, pieceIdOf, type PieceTable, type Segments } from './segments.ts';
import { oneCharLen } from './utf8.ts';

export class BpeModel {
  /** Symbol keys: ids of `pieces_` entries, plus "extra" keys >= vocab size for single characters that are not pieces. */
  private readonly keys: ByteTrie;
  private readonly asciiKey = new Int32Array(128);
  /** Output id of each key (PieceToId of its string). */
  private readonly keyOutId: Int32Array;
  private readonly keyBytes: Uint8Array[];
  private readonly scores: Float32Array;
  private readonly types: Uint8Array;
  private readonly unkId: number;
  private readonly hasUnused: boolean;
  // Pair table (open addressing): (left key, right key) -> merged piece id.
  private readonly pairLeft: Int32Array;
  private readonly pairRight: Int32Array;
  private readonly pairId: Int32Array;
  private readonly pairMask: number;
  // Per-call work arrays, grown as needed.
  private symStart = new Int32Array(0);
  private symLen = new Int32Array(0);
  private symKey = new Int32Array(0);
  private symPrev = new Int32Array(0);
  private symNext = new Int32Array(0);
  private symFrozen = new Uint8Array(0);
  private heap = new PairHeap();

  /** Whether text can be cut before each whitespace run (see `encode`), and the cache of cut pieces' results. */
  private readonly cuttable: boolean;
  private readonly cache = new Map<string, Int32Array>();
  private readonly cacheLimit = 1 << 16;
  /** Longer stretches (text without spaces, such as CJK) are not cached, which bounds the cache's memory. */
  private readonly cacheMaxBytes = 256;

  constructor(
    table: PieceTable,
    private readonly userDefined: ByteTrie | null,
    /** The normalized whitespace (▁, or a space when whitespace is not escaped). */
    private readonly space: Uint8Array,
  ) {
    this.scores = table.scores;
    this.types = table.types;
    this.unkId = table.unkId;
    const keyOf = new Map<string, number>(table.normal);
    const keyBytes: Uint8Array[] = [...table.bytes];
    const keyOutId: number[] = table.bytes.map((b) => pieceIdOf(table, latin1(b)));
    const isSingleChar = (b: Uint8Array): boolean => b.length > 0 && oneCharLen(b[0]!) === b.length;
    const keyFor = (b: Uint8Array): number => {
      const s = latin1(b);
      let k = keyOf.get(s);
      if (k === undefined) {
        if (!isSingleChar(b)) return -1;
        k = keyBytes.length;
        keyOf.set(s, k);
        keyBytes.push(b);
        keyOutId.push(pieceIdOf(table, s));
      }
      return k;
    };
    // Single-character reserved pieces (rare) need a key of their own so that their id comes out right.
    for (const [s, id] of table.reserved) if (isSingleChar(table.bytes[id]!)) keyFor(Buffer.from(s, 'latin1'));
    const pairs: Array<[number, number, number]> = [];
    let hasUnused = false;
    for (const id of table.normal.values()) {
      if (table.types[id] === PieceType.UNUSED) hasUnused = true;
      const b = table.bytes[id]!;
      for (let k = oneCharLen(b[0]!); k < b.length; k += oneCharLen(b[k]!)) {
        const l = keyFor(b.subarray(0, k));
        const r = keyFor(b.subarray(k));
        if (l >= 0 && r >= 0) pairs.push([l, r, id]);
      }
    }
    this.hasUnused = hasUnused;
    this.cuttable = !hasUnused && [...table.normal.values()].every((id) => !hasSpaceAfterOther(table.bytes[id]!, space));
    this.keyBytes = keyBytes;
    this.keyOutId = Int32Array.from(keyOutId);
    this.keys = new ByteTrie([...keyOf].map(([s, k]) => [Buffer.from(s, 'latin1'), k] as const));
    for (let c = 0; c < 128; c++) this.asciiKey[c] = this.keys.get(Uint8Array.of(c), 0, 1);
    let cap = 16;
    while (cap < pairs.length * 2) cap *= 2;
    this.pairMask = cap - 1;
    this.pairLeft = new Int32Array(cap).fill(-1);
    this.pairRight = new Int32Array(cap);
    this.pairId = new Int32Array(cap);
    for (const [l, r, id] of pairs) {
      let h = pairHash(l, r) & this.pairMask;
      while (this.pairLeft[h] !== -1 && !(this.pairLeft[h] === l && this.pairRight[h] === r)) h = (h + 1) & this.pairMask;
      this.pairLeft[h] = l;
      this.pairRight[h] = r;
      this.pairId[h] = id;
    }
  }

  private lookupPair(l: number, r: number): number {
    let h = pairHash(l, r) & this.pairMask;
    for (;;) {
      const pl = this.pairLeft[h]!;
      if (pl === -1) return -1;
      if (pl === l && this.pairRight[h] === r) return this.pairId[h]!;
      h = (h + 1) & this.pairMask;
    }
  }

  private ensure(n: number): void {
    if (this.symKey.length >= n) return;
    const cap = Math.max(n, this.symKey.length * 2, 64);
    this.symStart = new Int32Array(cap);
    this.symLen = new Int32Array(cap);
    this.symKey = new Int32Array(cap);
    this.symPrev = new Int32Array(cap);
    this.symNext = new Int32Array(cap);
    this.symFrozen = new Uint8Array(cap);
  }

  /**
   * Segments norm[0, n). When no piece has whitespace after another character (true of SentencePiece-trained and Llama
   * vocabularies), no merge can cross the start of a whitespace run, so each stretch from one run to the next is
   * merged on its own, with the same result, and repeated words come from a cache.
   */
  encode(norm: Uint8Array, n: number, out: Segments): void {
    if (!this.cuttable) return this.encodeRange(norm, 0, n, out);
    const [w0, w1, w2] = [this.space[0]!, this.space[1], this.space[2]];
    const wl = this.space.length;
    let from = 0;
    for (let i = 1; i + wl <= n; i++) {
      if (norm[i] !== w0 || (wl === 3 && (norm[i + 1] !== w1 || norm[i + 2] !== w2))) continue;
      const prevIsSpace = i >= wl && norm[i - wl] === w0 && (wl === 1 || (norm[i - 2] === w1 && norm[i - 1] === w2));
      if (prevIsSpace) continue;
      this.encodeCached(norm, from, i, out);
      from = i;
    }
    this.encodeCached(norm, from, n, out);
  }

  private encodeCached(norm: Uint8Array, from: number, to: number, out: Segments): void {
    if (to - from > this.cacheMaxBytes) return this.encodeRange(norm, from, to, out);
    const key = Buffer.from(norm.buffer, norm.byteOffset + from, to - from).toString('latin1');
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      for (let k = 0; k < hit.length; k += 3) out.push(from + hit[k]!, hit[k + 1]!, hit[k + 2]!);
      return;
    }
    const first = out.count;
    this.encodeRange(norm, from, to, out);
    const rec = new Int32Array((out.count - first) * 3);
    for (let k = first, j = 0; k < out.count; k++, j += 3) {
      rec[j] = out.start[k]! - from;
      rec[j + 1] = out.len[k]!;
      rec[j + 2] = out.id[k]!;
    }
    if (this.cache.size >= this.cacheLimit) this.cache.clear();
    this.cache.set(key, rec);
  }

  private encodeRange(norm: Uint8Array, from: number, n: number, out: Segments): void {
    if (n <= from) return;
    this.ensure(n - from);
    const { symStart, symLen, symKey, symPrev, symNext, symFrozen, heap, keys, asciiKey } = this;
    // Split into characters; user-defined symbols (longest match) become single frozen symbols.
    let count = 0;
    for (let pos = from; pos < n; ) {
      const b = norm[pos]!;
      let len = 0;
      let frozen = 0;
      if (this.userDefined !== null) {
        len = this.userDefined.longestPrefix(norm, pos, n);
        if (len > 0) frozen = 1;
      }
      if (len === 0) len = Math.min(oneCharLen(b), n - pos);
      symStart[count] = pos;
      symLen[count] = len;
      symKey[count] = len === 1 && b < 128 ? asciiKey[b]! : keys.get(norm, pos, pos + len);
      symFrozen[count] = frozen;
      symPrev[count] = count - 1;
      symNext[count] = count + 1;
      count++;
      pos += len;
    }
    symNext[count - 1] = -1;
    heap.clear();
    if (this.hasUnused) this.revMerge.clear();
    for (let i = 1; i < count; i++) this.addPair(i - 1, i);
    while (heap.size > 0) {
      const left = heap.topLeft();
      const right = heap.topRight();
      const size = heap.topSize();
      const merged = heap.topId();
      heap.pop();
      // Skip pairs made stale by an earlier merge.
      if (symLen[left] === 0 || symLen[right] === 0 || symLen[left]! + symLen[right]! !== size) continue;
      symLen[left] = size;
      symKey[left] = merged;
      const next = symNext[right]!;
      symNext[left] = next;
      if (next >= 0) symPrev[next] = left;
      symLen[right] = 0;
      this.addPair(symPrev[left]!, left);
      this.addPair(left, next);
    }
    for (let i = 0; i >= 0; i = symNext[i]!) {
      const key = symKey[i]!;
      if (this.hasUnused && key >= 0 && key < this.types.length && this.types[key] === PieceType.UNUSED) {
        this.resegment(key, symStart[i]!, out);
      } else {
        out.push(symStart[i]!, symLen[i]!, key >= 0 ? this.keyOutId[key]! : this.unkId);
      }
    }
  }

  private addPair(left: number, right: number): void {
    if (left < 0 || right < 0 || this.symFrozen[left] || this.symFrozen[right]) return;
    const l = this.symKey[left]!;
    const r = this.symKey[right]!;
    if (l < 0 || r < 0) return;
    const id = this.lookupPair(l, r);
    if (id < 0) return;
    this.heap.push(this.scores[id]!, left, right, this.symLen[left]! + this.symLen[right]!, id);
    if (this.hasUnused && this.types[id] === PieceType.UNUSED) this.revMerge.set(id, [l, r]);
  }

  /** Last pair seen for each UNUSED piece; the reference splits unused pieces back by this record. */
  private readonly revMerge = new Map<number, [number, number]>();

  private resegment(key: number, start: number, out: Segments): void {
    const rev = key < this.types.length && this.types[key] === PieceType.UNUSED ? this.revMerge.get(key) : undefined;
    if (rev === undefined) {
      out.push(start, this.keyBytes[key]!.length, this.keyOutId[key]!);
      return;
    }
    this.resegment(rev[0], start, out);
    this.resegment(rev[1], start + this.keyBytes[rev[0]]!.length, out);
  }
}

/** True when `piece` has the whitespace symbol right after some other character. */
function hasSpaceAfterOther(piece: Uint8Array, space: Uint8Array): boolean {
  const wl = space.length;
  let prevIsSpace = true;
  for (let i = 0; i < piece.length; ) {
    const isSpace = i + wl <= piece.length && space.every((b, k) => piece[i + k] === b);
    if (isSpace && !prevIsSpace) return true;
    prevIsSpace = isSpace;
    i += isSpace ? wl : oneCharLen(piece[i]!);
  }
  return false;
}

function pairHash(l: number, r: number): number {
  return (Math.imul(l, 0x9e3779b1) ^ Math.imul(r + 0x7f4a7c15, 0x85ebca77)) >>> 3;
}

/** Max-heap of candidate merges ordered by score, then by leftmost position (the reference's comparator). */
class PairHeap {
  private score = new Float64Array(256);
  private left: Int32Array = new Int32Array(256);
  private right: Int32Array = new Int32Array(256);
  private sizes: Int32Array = new Int32Array(256);
  private ids: Int32Array = new Int32Array(256);
  size = 0;

  clear(): void {
    this.size = 0;
  }
  topLeft(): number {
    return this.left[0]!;
  }
  topRight(): number {
    return this.right[0]!;
  }
  topSize(): number {
    return this.sizes[0]!;
  }
  topId(): number {
    return this.ids[0]!;
  }

  /** True when entry i should be popped before entry j. */
  private before(i: number, j: number): boolean {
    const a = this.score[i]!, b = this.score[j]!;
    return a > b || (a === b && this.left[i]! < this.left[j]!);
  }

  private swap(i: number, j: number): void {
    const s = this.score[i]!; this.score[i] = this.score[j]!; this.score[j] = s;
    const l = this.left[i]!; this.left[i] = this.left[j]!; this.left[j] = l;
    const r = this.right[i]!; this.right[i] = this.right[j]!; this.right[j] = r;
    const z = this.sizes[i]!; this.sizes[i] = this.sizes[j]!; this.sizes[j] = z;
    const d = this.ids[i]!; this.ids[i] = this.ids[j]!; this.ids[j] = d;
  }

  push(score: number, left: number, right: number, size: number, id: number): void {
    if (this.size === this.ids.length) this.grow();
    let i = this.size++;
    this.score[i] = score;
    this.left[i] = left;
    this.right[i] = right;
    this.sizes[i] = size;
    this.ids[i] = id;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  pop(): void {
    const last = --this.size;
    if (last === 0) return;
    this.swap(0, last);
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const r = l + 1;
      const c = r < last && this.before(r, l) ? r : l;
      if (!this.before(c, i)) break;
      this.swap(i, c);
      i = c;
    }
  }

  private grow(): void {
    const cap = this.ids.length * 2;
    const f = new Float64Array(cap); f.set(this.score); this.score = f;
    const grow32 = (a: Int32Array): Int32Array => { const b = new Int32Array(cap); b.set(a); return b; };
    this.left = grow32(this.left);
    this.right = grow32(this.right);
    this.sizes = grow32(this.sizes);
    this.ids = grow32(this.ids);
  }
}
