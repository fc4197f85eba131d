// SentencePiece Unigram encoding: Viterbi over the lattice of vocabulary pieces (the reference's optimized encoder).
import { ByteTrie } from './byte-trie.ts';
import { PieceType } from './sentencepiece-model.ts';
import type { PieceTable, Segments } from './segments.ts';
import { oneCharLen } from './utf8.ts';

const FLT_MAX = 3.4028234663852886e38;
const FLT_MIN = 1.1754943508222875e-38;
/** Unknown characters score this much below the worst piece (kUnkPenalty). */
const UNK_PENALTY = 10;
const f32 = Math.fround;

export class UnigramModel {
  private readonly trie: ByteTrie;
  private readonly scores: Float32Array;
  private readonly types: Uint8Array;
  private readonly maxScore: number;
  private readonly unkScore: number;
  private readonly unkId: number;
  private bestScore = new Float64Array(0);
  private bestStart = new Int32Array(0);
  private bestId = new Int32Array(0);

  constructor(table: PieceTable) {
    this.scores = table.scores;
    this.types = table.types;
    this.unkId = table.unkId;
    let min = FLT_MAX;
    let max = FLT_MIN; // as in the reference, so all-negative scores leave max at FLT_MIN
    table.types.forEach((t, i) => {
      if (t !== PieceType.NORMAL) return;
      min = Math.min(min, table.scores[i]!);
      max = Math.max(max, table.scores[i]!);
    });
    if (min === FLT_MAX) min = 0;
    if (max === FLT_MIN) max = 0;
    this.maxScore = max;
    this.unkScore = f32(min - UNK_PENALTY);
    this.trie = new ByteTrie([...table.normal.values()].map((id) => [table.bytes[id]!, id] as const));
  }

  /** Segments norm[0, n) into the best-scoring pieces. Scores add in float32 as in the reference (C++ float). */
  encode(norm: Uint8Array, n: number, out: Segments): void {
    if (n === 0) return;
    if (this.bestStart.length < n + 1) {
      this.bestScore = new Float64Array(2 * n + 2);
      this.bestStart = new Int32Array(2 * n + 2);
      this.bestId = new Int32Array(2 * n + 2);
    }
    const { bestScore, bestStart, bestId, trie, scores, types } = this;
    bestStart.fill(-1, 0, n + 1);
    bestScore[0] = 0;
    let start = 0;
    while (start < n) {
      const tillHere = bestScore[start]!;
      const mblen = Math.min(oneCharLen(norm[start]!), n - start);
      let hasSingle = false;
      let node = 0;
      for (let pos = start; pos < n; ) {
        node = trie.child(node, norm[pos]!);
        pos++;
        if (node < 0) break;
        const id = trie.value(node);
        if (id < 0) continue;
        const type = types[id]!;
        if (type === PieceType.UNUSED) continue;
        const length = pos - start;
        // The reference's score expression has type double (one branch is), so the sum and comparison are in double;
        // user-defined pieces get a bonus so that they always win.
        const score = type === PieceType.USER_DEFINED ? f32(length * this.maxScore) - 0.1 : scores[id]!;
        const candidate = score + tillHere;
        if (bestStart[pos] === -1 || candidate > bestScore[pos]!) {
          bestScore[pos] = f32(candidate);
          bestStart[pos] = start;
          bestId[pos] = id;
        }
        if (length === mblen) hasSingle = true;
      }
      if (!hasSingle) {
        const end = start + mblen;
        const candidate = f32(this.unkScore + tillHere);
        if (bestStart[end] === -1 || candidate > bestScore[end]!) {
          bestScore[end] = candidate;
          bestStart[end] = start;
          bestId[end] = this.unkId;
        }
      }
      start += mblen;
    }
    // Backtrack, then reverse the pieces written to `out`.
    const first = out.count;
    for (let end = n; end > 0; ) {
      const s = bestStart[end]!;
      out.push(s, end - s, bestId[end]!);
      end = s;
    }
    for (let i = first, j = out.count - 1; i < j; i++, j--) {
      const s = out.start[i]!, l = out.len[i]!, d = out.id[i]!;
      out.start[i] = out.start[j]!;
      out.len[i] = out.len[j]!;
      out.id[i] = out.id[j]!;
      out.start[j] = s;
      out.len[j] = l;
      out.id[j] = d;
    }
  }
}
