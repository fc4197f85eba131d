// What each tokenizer implementation (SentencePiece `tokenizer.model`, HF `tokenizer.json`) provides to `Tokenizer`.
import type { Hash } from 'node:crypto';

export interface TokenizerBackend {
  readonly kind: 'sentencepiece' | 'tokenizer.json';
  /** One past the largest token id. */
  readonly vocabSize: number;
  /** Ids of `text`; special-token text is matched only when `parseSpecial` is true. No BOS/EOS are added. */
  encode(text: string | Uint8Array, parseSpecial: boolean): number[];
  encodeAsPieces(text: string | Uint8Array, parseSpecial: boolean): string[];
  decode(ids: ArrayLike<number>, skipSpecial: boolean): string;
  /** Throws a DataError for an id outside the vocabulary. */
  idToPiece(id: number): string;
  pieceToId(piece: string): number | null;
  isSpecial(id: number): boolean;
  /** Feeds the vocabulary and every setting that changes encoding into the identity hash. */
  hashInto(hash: Hash): void;
}
