// Our encoder for the two families of BPE tokenizer.json files: byte-level (GPT-2, Llama 3, Qwen2, SmolLM: the NFC
// normalizer, a split regex, GPT-2's byte-to-character map) and SentencePiece-style (Llama 2, Mistral: `▁` prepended
// and for spaces, characters with byte fallback to <0xNN> pieces). Both: added tokens, merges by rank, a cache of
// words' ids. Files that use anything else are left to @huggingface/tokenizers (fromJson returns null).

import { GPT2_SPLIT_PATTERN, translateSplitPattern } from './split-regex.ts';

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
}

/** GPT-2's map from bytes to printable characters: printable Latin-1 stays, the other 68 bytes move to U+0100 on. */
export function byteToChar(): string[] {
  const chars: string[] = [];
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars.push(String.fromCharCode(printable ? b : 256 + shifted++));
  }
  return chars;
}

/** A regex matching any of `tokens` (leftmost, then longest, as aho-corasick's LeftmostLongest), or null for none. */
function alternation(tokens: string[]): RegExp | null {
  if (tokens.length === 0) return null;
  const sorted = [...tokens].sort((a, b) => b.length - a.length);
  // Only syntax characters may be escaped in a unicode regex (`\-` outside a class is an error there).
  return new RegExp(sorted.map((t) => t.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')).join('|'), 'gu');
}

const isNullish = (v: unknown): boolean => v === null || v === undefined;
const isOff = (v: unknown): boolean => v === false || v === undefined || v === null;
const isEmptyAffix = (v: unknown): boolean => v === null || v === undefined || v === '';

/** The split regex of a supported pre-tokenizer, `null` for none (the whole text is one word), or undefined if unsupported. */
function splitRegexOf(pre: unknown): RegExp | null | undefined {
  const p = pre as Record<string, unknown> | null;
  if (p === null || typeof p !== 'object') return undefined;
  const byteLevelOk = (b: Record<string, unknown>): boolean => b['type'] === 'ByteLevel' && isOff(b['add_prefix_space']);
  if (byteLevelOk(p)) return p['use_regex'] === false ? null : translateSplitPattern(GPT2_SPLIT_PATTERN) ?? undefined;
  if (p['type'] !== 'Sequence' || !Array.isArray(p['pretokenizers']) || p['pretokenizers'].length !== 2) return undefined;
  const [split, byteLevel] = p['pretokenizers'] as Array<Record<string, unknown>>;
  if (typeof split !== 'object' || split === null || typeof byteLevel !== 'object' || byteLevel === null) return undefined;
  if (!byteLevelOk(byteLevel) || byteLevel['use_regex'] !== false) return undefined;
  const pattern = (split['pattern'] as Record<string, unknown> | undefined)?.['Regex'];
  if (split['type'] !== 'Split' || split['behavior'] !== 'Isolated' || !isOff(split['invert']) || typeof pattern !== 'string') return undefined;
  return translateSplitPattern(pattern) ?? undefined;
}

/** The SentencePiece-style normalizer: Prepend `▁`, then Replace " " by `▁` (Llama 2's and Mistral's files). */
function isMetaspaceNormalizer(n: unknown): boolean {
  const seq = n as { type?: unknown; normalizers?: Array<Record<string, unknown>> } | null;
  if (seq?.type !== 'Sequence' || !Array.isArray(seq.normalizers) || seq.normalizers.length !== 2) return false;
  const [prepend, replace] = seq.normalizers;
  return prepend?.['type'] === 'Prepend' && prepend['prepend'] === SPACE_MARK
    && replace?.['type'] === 'Replace' && (replace['pattern'] as Record<string, unknown> | undefined)?.['String'] === ' ' && replace['content'] === SPACE_MARK
    && Object.keys(replace['pattern'] as object).length === 1;
}

/** Which family `json` belongs to, with its settings, or null for a file our encoder does not implement. */
function familyOf(json: Record<string, unknown>, vocab: Map<string, number>): Family | null {
  const model = json['model'] as Record<string, unknown>;
  const normalizer = json['normalizer'];
  if (isMetaspaceNormalizer(normalizer) && isNullish(json['pre_tokenizer'])) {
    const byteFallback = model['byte_fallback'] === true;
    const unk = model['unk_token'];
    const unkId = typeof unk === 'string' ? vocab.get(unk) ?? null : null;
    // Without an unk piece an unknown character has no id (the Rust library fails); leave such files to the library.
    if (unkId === null) return null;
    // A piece with `▁` after another character could be merged across the start of a `▁` run.
    const cutAtSpaces = ![...vocab.keys()].some((piece) => /[^\u2581]\u2581/u.test(piece));
    return { kind: 'sentencepiece', byteFallback, unkId, fuseUnk: model['fuse_unk'] === true, cutAtSpaces };
  }
  if (!isOff(model['byte_fallback'])) return null;
  if (!isNullish(normalizer) && (normalizer as Record<string, unknown>)['type'] !== 'NFC') return null;
  const split = splitRegexOf(json['pre_tokenizer']);
  if (split === undefined) return null;
  if (!byteToChar().every((c) => vocab.has(c))) return null;
  return { kind: 'byte-level', nfc: !isNullish(normalizer), split };
}

/** Words longer than this (UTF-16 units) are not cached, as in the Rust library: it bounds the cache's memory. */
const CACHE_MAX_WORD = 256;
const CACHE_LIMIT = 1 << 18;
const POS_SCALE = 2 ** 32;

const SPACE_MARK = '\u2581';

/** How a file turns text into the words that BPE merges. */
type Family =
  | { kind: 'byte-level'; nfc: boolean; split: RegExp | null }
  /** Prepend `▁` and replace spaces by it; cut before each `▁` run when no vocabulary entry spans such a cut. */
  | { kind: 'sentencepiece'; byteFallback: boolean; unkId: number | null; fuseUnk: boolean; cutAtSpaces: boolean };

export class MergesBpe {
  private readonly vocab: Map<string, number>;
  /** Byte-level: the id of each byte's character; SentencePiece-style: the id of its <0xNN> piece (-1: none). */
  private readonly byteId = new Int32Array(256).fill(-1);
  private readonly byteChars = byteToChar();
  private readonly ignoreMerges: boolean;
  private readonly family: Family;
  /** Added tokens matched in the raw text (normalized: false) and in normalized text, with and without the special ones. */
  private readonly rawAll: RegExp | null;
  private readonly rawPlain: RegExp | null;
  private readonly normAll: RegExp | null;
  private readonly normPlain: RegExp | null;
  private readonly addedIds = new Map<string, number>();
  // Merge table (open addressing): (left id, right id) -> rank and merged id.
  private readonly pairLeft: Int32Array;
  private readonly pairRight: Int32Array;
  private readonly pairRank: Int32Array;
  private readonly pairId: Int32Array;
  private readonly pairMask: number;
  private readonly cache = new Map<string, number | number[]>();
  // Work arrays of one word, grown as needed.
  private sym = new Int32Array(64);
  private next = new Int32Array(64);
  private prev = new Int32Array(64);
  private heap = new Float64Array(64);
  private heapSize = 0;

  private constructor(o: {
    vocab: Map<string, number>;
    merges: Array<[string, string]>;
    ignoreMerges: boolean;
    family: Family;
    added: AddedTokenJson[];
  }) {
    this.vocab = o.vocab;
    this.ignoreMerges = o.ignoreMerges;
    this.family = o.family;
    for (let b = 0; b < 256; b++) {
      const piece = o.family.kind === 'byte-level' ? this.byteChars[b]! : `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
      this.byteId[b] = o.vocab.get(piece) ?? -1;
    }
    const nfc = o.family.kind === 'byte-level' && o.family.nfc;
    const norm = (s: string): string => (nfc ? s.normalize('NFC') : s);
    const contents = (normalized: boolean, special: boolean): string[] =>
      o.added.filter((t) => (t.normalized === true) === normalized && (special || t.special !== true) && t.content !== '').map((t) => (normalized ? norm(t.content) : t.content));
    for (const t of o.added) this.addedIds.set(t.normalized === true ? norm(t.content) : t.content, t.id);
    this.rawAll = alternation(contents(false, true));
    this.rawPlain = alternation(contents(false, false));
    this.normAll = alternation(contents(true, true));
    this.normPlain = alternation(contents(true, false));

    let cap = 16;
    while (cap < o.merges.length * 2) cap *= 2;
    this.pairMask = cap - 1;
    this.pairLeft = new Int32Array(cap).fill(-1);
    this.pairRight = new Int32Array(cap);
    this.pairRank = new Int32Array(cap);
    this.pairId = new Int32Array(cap);
    o.merges.forEach(([a, b], rank) => {
      const l = o.vocab.get(a)!, r = o.vocab.get(b)!;
      let h = pairHash(l, r) & this.pairMask;
      while (this.pairLeft[h] !== -1 && !(this.pairLeft[h] === l && this.pairRight[h] === r)) h = (h + 1) & this.pairMask;
      // A pair listed twice keeps its last rank, as the Rust library's map does.
      this.pairLeft[h] = l;
      this.pairRight[h] = r;
      this.pairRank[h] = rank;
      this.pairId[h] = o.vocab.get(a + b)!;
    });
  }

  /** Our encoder for `json`, or null when the file uses a feature it does not implement. */
  static fromJson(json: Record<string, unknown>): MergesBpe | null {
    const model = json['model'] as Record<string, unknown>;
    if (model['type'] !== 'BPE' || !isNullish(model['dropout']) || !isEmptyAffix(model['continuing_subword_prefix'])
      || !isEmptyAffix(model['end_of_word_suffix'])) return null;
    const rawVocab = model['vocab'];
    if (typeof rawVocab !== 'object' || rawVocab === null || Array.isArray(rawVocab)) return null;
    const vocab = new Map<string, number>(Object.entries(rawVocab as Record<string, number>));
    const family = familyOf(json, vocab);
    if (family === null) return null;
    const rawMerges = model['merges'];
    if (!Array.isArray(rawMerges)) return null;
    const merges: Array<[string, string]> = [];
    for (const m of rawMerges) {
      const pair = typeof m === 'string' ? m.split(' ') : m;
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return null;
      if (!vocab.has(pair[0]) || !vocab.has(pair[1]) || !vocab.has(pair[0] + pair[1])) return null;
      merges.push([pair[0], pair[1]]);
    }
    const added = (json['added_tokens'] ?? []) as AddedTokenJson[];
    // lstrip / rstrip / single_word change how added tokens are matched; normalized tokens are matched after
    // normalization, which we do only for byte-level files (NFC or no normalizer).
    if (!added.every((t) => isOff(t.single_word) && isOff(t.lstrip) && isOff(t.rstrip))) return null;
    if (family.kind === 'sentencepiece' && added.some((t) => t.normalized === true)) return null;
    return new MergesBpe({ vocab, merges, ignoreMerges: model['ignore_merges'] === true, family, added });
  }

  /** Ids of `text`; added tokens are matched (special ones only when `parseSpecial`), BOS/EOS are not added. */
  encode(text: string, parseSpecial: boolean): number[] {
    const out: number[] = [];
    const raw = parseSpecial ? this.rawAll : this.rawPlain;
    const norm = parseSpecial ? this.normAll : this.normPlain;
    const family = this.family;
    this.eachSegment(text, raw, (segment) => {
      const normalized = family.kind === 'sentencepiece' ? SPACE_MARK + segment.replaceAll(' ', SPACE_MARK) : family.nfc ? normalizeNfc(segment) : segment;
      this.eachSegment(normalized, norm, (piece) => this.encodeSegment(piece, out), out);
    }, out);
    return out;
  }

  /** Calls `plain` for each stretch of `text` between matches of `tokens`, and pushes the matched tokens' ids. */
  private eachSegment(text: string, tokens: RegExp | null, plain: (s: string) => void, out: number[]): void {
    if (tokens === null) {
      if (text !== '') plain(text);
      return;
    }
    tokens.lastIndex = 0;
    let from = 0;
    for (let m = tokens.exec(text); m !== null; m = tokens.exec(text)) {
      if (m.index > from) plain(text.slice(from, m.index));
      out.push(this.addedIds.get(m[0])!);
      from = m.index + m[0].length;
    }
    if (from < text.length) plain(from === 0 ? text : text.slice(from));
  }

  private encodeSegment(segment: string, out: number[]): void {
    if (this.family.kind === 'sentencepiece') {
      if (!this.family.cutAtSpaces) {
        this.encodeWord(segment, out);
        return;
      }
      // No merge can span the start of a `▁` run: each stretch from one such start to the next is merged alone.
      let from = 0;
      for (let i = segment.indexOf(SPACE_MARK, 1); i >= 0; i = segment.indexOf(SPACE_MARK, i + 1)) {
        if (segment.charCodeAt(i - 1) === 0x2581) continue;
        this.encodeWord(segment.slice(from, i), out);
        from = i;
      }
      this.encodeWord(from === 0 ? segment : segment.slice(from), out);
      return;
    }
    const re = this.family.split;
    if (re === null) {
      this.encodeWord(segment, out);
      return;
    }
    re.lastIndex = 0;
    let from = 0;
    for (let m = re.exec(segment); m !== null; m = re.exec(segment)) {
      // Isolated: text between matches is a word of its own (none of the supported patterns leaves any).
      if (m.index > from) this.encodeWord(segment.slice(from, m.index), out);
      const word = m[0];
      if (word === '') {
        re.lastIndex++;
        continue;
      }
      this.encodeWord(word, out);
      from = m.index + word.length;
    }
    if (from < segment.length) this.encodeWord(segment.slice(from), out);
  }

  private encodeWord(word: string, out: number[]): void {
    const hit = this.cache.get(word);
    if (hit !== undefined) {
      if (typeof hit === 'number') out.push(hit);
      else for (let i = 0; i < hit.length; i++) out.push(hit[i]!);
      return;
    }
    const ids = this.bpe(word);
    if (word.length <= CACHE_MAX_WORD) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids.length === 1 ? ids[0]! : ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
  }

  /** The initial symbols of a word: its bytes' characters (byte-level), or its characters with byte fallback. */
  private symbols(word: string): number {
    if (this.family.kind === 'byte-level') {
      const bytes = Buffer.from(word, 'utf8');
      this.ensure(bytes.length);
      for (let i = 0; i < bytes.length; i++) this.sym[i] = this.byteId[bytes[i]!]!;
      return bytes.length;
    }
    const { byteFallback, unkId, fuseUnk } = this.family;
    this.ensure(4 * word.length);
    let n = 0;
    let lastWasUnk = false;
    for (const c of word) {
      const id = this.vocab.get(c);
      if (id !== undefined) {
        this.sym[n++] = id;
        lastWasUnk = false;
        continue;
      }
      const bytes = byteFallback ? Buffer.from(c, 'utf8') : null;
      if (bytes !== null && bytes.every((b) => this.byteId[b]! >= 0)) {
        for (const b of bytes) this.sym[n++] = this.byteId[b]!;
        lastWasUnk = false;
        continue;
      }
      // An unknown character (fromJson made sure there is an unk piece): a run of them is one unk with fuse_unk.
      if (!(fuseUnk && lastWasUnk)) this.sym[n++] = unkId!;
      lastWasUnk = true;
    }
    return n;
  }

  /** The merges of one word, from its initial symbols up. */
  private bpe(word: string): number[] {
    if (this.ignoreMerges) {
      let key = word;
      if (this.family.kind === 'byte-level') {
        const bytes = Buffer.from(word, 'utf8');
        key = '';
        for (let i = 0; i < bytes.length; i++) key += this.byteChars[bytes[i]!]!;
      }
      const id = this.vocab.get(key);
      if (id !== undefined) return [id];
    }
    const n = this.symbols(word);
    const sym = this.sym, next = this.next, prev = this.prev;
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    this.heapSize = 0;
    for (let i = 0; i + 1 < n; i++) {
      const h = this.lookupPair(sym[i]!, sym[i + 1]!);
      if (h >= 0) this.push(this.pairRank[h]! * POS_SCALE + i);
    }
    // Lowest rank first, leftmost among equals; entries made stale by an earlier merge are skipped.
    while (this.heapSize > 0) {
      const top = this.pop();
      const rank = Math.floor(top / POS_SCALE);
      const pos = top - rank * POS_SCALE;
      const right = next[pos]!;
      if (sym[pos]! < 0 || right < 0) continue;
      const h = this.lookupPair(sym[pos]!, sym[right]!);
      if (h < 0 || this.pairRank[h] !== rank) continue;
      sym[pos] = this.pairId[h]!;
      sym[right] = -1;
      const after = next[right]!;
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos]!;
      if (before >= 0) {
        const hb = this.lookupPair(sym[before]!, sym[pos]!);
        if (hb >= 0) this.push(this.pairRank[hb]! * POS_SCALE + before);
      }
      if (after >= 0) {
        const ha = this.lookupPair(sym[pos]!, sym[after]!);
        if (ha >= 0) this.push(this.pairRank[ha]! * POS_SCALE + pos);
      }
    }
    const ids: number[] = [];
    if (n === 0) return ids;
    for (let i = 0; i >= 0; i = next[i]!) ids.push(sym[i]!);
    return ids;
  }

  private lookupPair(l: number, r: number): number {
    let h = pairHash(l, r) & this.pairMask;
    for (;;) {
      const pl = this.pairLeft[h]!;
      if (pl === -1) return -1;
      if (pl === l && this.pairRight[h] === r) return h;
      h = (h + 1) & this.pairMask;
    }
  }

  private ensure(n: number): void {
    if (this.sym.length >= n) return;
    const cap = Math.max(n, this.sym.length * 2);
    this.sym = new Int32Array(cap);
    this.next = new Int32Array(cap);
    this.prev = new Int32Array(cap);
    this.heap = new Float64Array(cap);
  }

  private push(key: number): void {
    if (this.heapSize === this.heap.length) {
      const grown = new Float64Array(this.heap.length * 2);
      grown.set(this.heap);
      this.heap = grown;
    }
    const heap = this.heap;
    let i = this.heapSize++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p]! <= key) break;
      heap[i] = heap[p]!;
      i = p;
    }
    heap[i] = key;
  }

  private pop(): number {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap[--this.heapSize]!;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= this.heapSize) break;
      if (c + 1 < this.heapSize && heap[c + 1]! < heap[c]!) c++;
      if (heap[c]! >= last) break;
      heap[i] = heap[c]!;
      i = c;
    }
    heap[i] = last;
    return top;
  }
}

function pairHash(l: number, r: number): number {
  return (Math.imul(l, 0x9e3779b1) ^ Math.imul(r + 0x7f4a7c15, 0x85ebca77)) >>> 3;
}

/** Characters below U+0300 are unchanged by NFC unless a combining mark (U+0300 and up) follows. */
const MAY_CHANGE_UNDER_NFC = /[\u0300-\uffff]/;
function normalizeNfc(s: string): string {
  return MAY_CHANGE_UNDER_NFC.test(s) ? s.normalize('NFC') : s;
}
