// The `tokenizer.model` backend of Tokenizer: SentencePiece, plus special-token matching for parseSpecial.
import type { Hash } from 'node:crypto';
import { createHash } from 'node:crypto';
import type { TokenizerBackend } from './backend.ts';
import { PieceType } from './sentencepiece-model.ts';
import type { SentencePieceProcessor } from './sentencepiece.ts';

const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
function asString(text: string | Uint8Array): string {
  return typeof text === 'string' ? text : decoder.decode(text);
}

export class SentencePieceBackend implements TokenizerBackend {
  readonly kind = 'sentencepiece' as const;
  /** Special token texts (control pieces and the config's special tokens), longest first. */
  private readonly specials: Array<[string, number]>;
  private readonly specialIds: Set<number>;

  constructor(
    readonly sp: SentencePieceProcessor,
    extraSpecial: Map<number, string>,
  ) {
    const byText = new Map<string, number>();
    sp.model.pieces.forEach((p, id) => {
      if (p.type === PieceType.CONTROL || p.type === PieceType.UNKNOWN) byText.set(p.piece, id);
    });
    for (const [id, text] of extraSpecial) if (id < sp.vocabSize && sp.idToPiece(id) === text) byText.set(text, id);
    this.specials = [...byText].sort((a, b) => b[0].length - a[0].length);
    this.specialIds = new Set(sp.model.pieces.flatMap((p, id) => (p.type === PieceType.CONTROL ? [id] : [])));
    for (const id of byText.values()) if (sp.pieceType(id) !== PieceType.UNKNOWN) this.specialIds.add(id);
  }

  get vocabSize(): number {
    return this.sp.vocabSize;
  }

  encode(text: string | Uint8Array, parseSpecial: boolean): number[] {
    if (!parseSpecial) return this.sp.encode(text);
    return this.splitSpecial(asString(text)).flatMap((part) => (typeof part === 'number' ? [part] : this.sp.encode(part)));
  }

  encodeAsPieces(text: string | Uint8Array, parseSpecial: boolean): string[] {
    if (!parseSpecial) return this.sp.encodeAsPieces(text);
    return this.splitSpecial(asString(text)).flatMap((part) => (typeof part === 'number' ? [this.sp.idToPiece(part)] : this.sp.encodeAsPieces(part)));
  }

  /**
   * Cuts text at special-token strings (longest match, left to right). Each stretch of text between them is then
   * encoded on its own, as HF's slow (SentencePiece) Llama tokenizer does.
   */
  private splitSpecial(text: string): Array<string | number> {
    const parts: Array<string | number> = [];
    let from = 0;
    for (let i = 0; i < text.length; ) {
      const hit = this.specials.find(([s]) => text.startsWith(s, i));
      if (hit === undefined) {
        i++;
        continue;
      }
      if (i > from) parts.push(text.slice(from, i));
      parts.push(hit[1]);
      i += hit[0].length;
      from = i;
    }
    if (from < text.length) parts.push(text.slice(from));
    return parts;
  }

  /** As spm_decode; control pieces are dropped with `skipSpecial` and shown as their text without it. */
  decode(ids: ArrayLike<number>, skipSpecial: boolean): string {
    return this.sp.decode(ids, skipSpecial ? null : this.specialIds);
  }

  idToPiece(id: number): string {
    return this.sp.idToPiece(id);
  }

  pieceToId(piece: string): number | null {
    const id = this.sp.pieceToId(piece);
    return this.sp.idToPiece(id) === piece ? id : null;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  hashInto(hash: Hash): void {
    const { pieces, trainerSpec: t, normalizerSpec: n } = this.sp.model;
    hash.update(`sentencepiece model_type=${t.modelType} byte_fallback=${t.byteFallback} unk_surface=${JSON.stringify(t.unkSurface)}\n`);
    const charsmap = createHash('sha256').update(n.precompiledCharsmap).digest('hex');
    hash.update(`normalizer name=${JSON.stringify(n.name)} charsmap=${charsmap} add_dummy_prefix=${n.addDummyPrefix} remove_extra_whitespaces=${n.removeExtraWhitespaces} escape_whitespaces=${n.escapeWhitespaces}\n`);
    for (const p of pieces) hash.update(`${JSON.stringify(p.piece)}\t${p.score}\t${p.type}\n`);
  }
}
