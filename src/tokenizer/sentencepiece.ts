// A SentencePiece processor for `tokenizer.model` files: encode and decode exactly as `spm_encode` / `spm_decode` do.
import { readFileSync } from 'node:fs';
import { DataError, FormatError } from '../errors.ts';
import { BpeModel } from './bpe.ts';
import { ByteTrie } from './byte-trie.ts';
import { PrecompiledCharsmap } from './charsmap.ts';
import { SentencePieceNormalizer } from './normalizer.ts';
import { byteToPiece, parseSentencePieceModel, pieceToByte, PieceType, type SentencePieceModel } from './sentencepiece-model.ts';
import { latin1, pieceIdOf, Segments, type PieceTable } from './segments.ts';
import { UnigramModel } from './unigram.ts';
import { ByteBuffer, REPLACEMENT, SPACE_SYMBOL, validCharLen } from './utf8.ts';

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is text to SentencePiece, not a byte-order mark.
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

interface Model {
  encode(norm: Uint8Array, n: number, out: Segments): void;
}

export class SentencePieceProcessor {
  readonly model: SentencePieceModel;
  /** Where the model came from, for error messages. */
  readonly source: string;
  private readonly table: PieceTable;
  private readonly normalizer: SentencePieceNormalizer;
  private readonly impl: Model;
  private readonly byteFallback: boolean;
  /** Id of each `<0xNN>` piece (unk when absent, as PieceToId would say). */
  private readonly byteIds = new Int32Array(256);
  /** Byte value of each BYTE piece, -1 for other pieces. */
  private readonly byteOfId: Int16Array;
  /** Decoded surface of each piece (▁ as space), and the same with one leading ▁ consumed. */
  private readonly surfaces: Uint8Array[];
  private readonly surfacesAtStart: Array<Uint8Array | null>;
  private readonly unkSurface: Uint8Array;
  private readonly segments = new Segments();
  private input = new Uint8Array(1024);

  static fromFile(path: string): SentencePieceProcessor {
    let buf: Buffer;
    try {
      buf = readFileSync(path);
    } catch (err) {
      throw new FormatError(`${path}: cannot read the SentencePiece model: ${(err as Error).message}`, { where: path });
    }
    return new SentencePieceProcessor(buf, path);
  }

  constructor(buf: Uint8Array, source = 'tokenizer.model') {
    this.source = source;
    this.model = parseSentencePieceModel(buf, source);
    const { pieces, trainerSpec, normalizerSpec } = this.model;
    const bytes = pieces.map((p) => encoder.encode(p.piece));
    const normal = new Map<string, number>();
    const reserved = new Map<string, number>();
    let unkId = -1;
    pieces.forEach((p, i) => {
      const isNormal = p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED;
      (isNormal ? normal : reserved).set(latin1(bytes[i]!), i);
      if (p.type === PieceType.UNKNOWN) unkId = i;
    });
    this.table = {
      bytes,
      types: Uint8Array.from(pieces, (p) => p.type),
      scores: Float32Array.from(pieces, (p) => p.score),
      normal,
      reserved,
      unkId,
    };
    const userDefined = pieces.some((p) => p.type === PieceType.USER_DEFINED)
      ? new ByteTrie(pieces.flatMap((p, i) => (p.type === PieceType.USER_DEFINED ? [[bytes[i]!, i] as const] : [])))
      : null;
    const charsmap = normalizerSpec.precompiledCharsmap.length > 0
      ? new PrecompiledCharsmap(normalizerSpec.precompiledCharsmap, `${source}: normalizer_spec.precompiled_charsmap`)
      : null;
    this.normalizer = new SentencePieceNormalizer(normalizerSpec, charsmap, userDefined);
    this.impl = trainerSpec.modelType === 2 ? new BpeModel(this.table, userDefined, normalizerSpec.escapeWhitespaces ? SPACE_SYMBOL : Uint8Array.of(0x20)) : new UnigramModel(this.table);
    this.byteFallback = trainerSpec.byteFallback;
    for (let b = 0; b < 256; b++) this.byteIds[b] = this.pieceToId(byteToPiece(b));
    this.byteOfId = Int16Array.from(pieces, (p) => (p.type === PieceType.BYTE ? pieceToByte(p.piece) : -1));
    const stripAtStart = normalizerSpec.addDummyPrefix || normalizerSpec.removeExtraWhitespaces;
    this.surfaces = pieces.map((p) => encoder.encode(p.piece.replaceAll('\u2581', ' ')));
    this.surfacesAtStart = pieces.map((p) =>
      stripAtStart && p.piece.startsWith('\u2581') ? encoder.encode(p.piece.slice(1).replaceAll('\u2581', ' ')) : null,
    );
    this.unkSurface = encoder.encode(trainerSpec.unkSurface);
  }

  /** Number of pieces (the vocabulary size). */
  get vocabSize(): number {
    return this.model.pieces.length;
  }
  get unkId(): number {
    const id = this.pieceToId(this.model.trainerSpec.unkPiece);
    return this.model.pieces[id]?.type === PieceType.UNKNOWN ? id : -1;
  }
  get bosId(): number {
    return this.controlId(this.model.trainerSpec.bosPiece);
  }
  get eosId(): number {
    return this.controlId(this.model.trainerSpec.eosPiece);
  }
  get padId(): number {
    return this.controlId(this.model.trainerSpec.padPiece);
  }
  private controlId(piece: string): number {
    const id = this.pieceToId(piece);
    return this.model.pieces[id]?.type === PieceType.CONTROL ? id : -1;
  }

  /** SentencePiece's PieceToId: control/unknown/byte pieces first, then the others, else the unk id. */
  pieceToId(piece: string): number {
    return pieceIdOf(this.table, latin1(encoder.encode(piece)));
  }

  idToPiece(id: number): string {
    return this.pieceAt(id).piece;
  }

  pieceType(id: number): number {
    return this.pieceAt(id).type;
  }

  private pieceAt(id: number) {
    const p = this.model.pieces[id];
    if (p === undefined || !Number.isInteger(id)) {
      throw new DataError(`token id ${id} is out of range [0, ${this.vocabSize}) of ${this.source}`, { where: this.source });
    }
    return p;
  }

  /**
   * Token ids of `text`, as `spm_encode --output_format=id`. Strings are read as UTF-8 (a lone surrogate is U+FFFD,
   * like TextEncoder); raw bytes are taken as they are, each byte that starts no valid character becoming U+FFFD.
   */
  encode(text: string | Uint8Array): number[] {
    const ids: number[] = [];
    this.run(text, (id) => ids.push(id), null);
    return ids;
  }

  /** Pieces of `text`, as `spm_encode --output_format=piece` (an unknown run is one piece, its normalized text). */
  encodeAsPieces(text: string | Uint8Array): string[] {
    const pieces: string[] = [];
    this.run(text, null, (piece, merge) => {
      if (merge) pieces[pieces.length - 1] += piece;
      else pieces.push(piece);
    });
    return pieces;
  }

  private run(text: string | Uint8Array, onId: ((id: number) => void) | null, onPiece: ((piece: string, merge: boolean) => void) | null): void {
    let bytes: Uint8Array;
    let n: number;
    if (typeof text === 'string') {
      if (this.input.length < text.length * 3) this.input = new Uint8Array(text.length * 3 + 16);
      n = encoder.encodeInto(text, this.input).written;
      bytes = this.input;
    } else {
      bytes = text;
      n = text.length;
    }
    const norm = this.normalizer.normalize(bytes, n);
    const seg = this.segments;
    seg.clear();
    this.impl.encode(norm, norm.length, seg);
    const types = this.table.types;
    let prevUnk = false;
    for (let i = 0; i < seg.count; i++) {
      const id = seg.id[i]!;
      const type = types[id]!;
      const isUnk = type === PieceType.UNKNOWN;
      const start = seg.start[i]!;
      const len = seg.len[i]!;
      if (isUnk && this.byteFallback) {
        for (let k = start; k < start + len; k++) {
          const b = norm[k]!;
          onId?.(this.byteIds[b]!);
          onPiece?.(byteToPiece(b), false);
        }
      } else if (isUnk && prevUnk) {
        // The reference merges a run of unknown pieces into one; the merged piece keeps the unk id.
        onPiece?.(decoder.decode(norm.subarray(start, start + len)), true);
      } else {
        onId?.(id);
        onPiece?.(decoder.decode(norm.subarray(start, start + len)), false);
      }
      prevUnk = isUnk;
    }
  }

  /**
   * Text of `ids`, as `spm_decode --input_format=id`. Control pieces decode to nothing, except those in
   * `controlAsText`, which show as their piece text. Throws a DataError for an id outside the vocabulary.
   */
  decode(ids: ArrayLike<number>, controlAsText: ReadonlySet<number> | null = null): string {
    const out = new ByteBuffer(ids.length * 4 + 16);
    const types = this.table.types;
    let isBosWs = true;
    let bosWsSeen = false;
    const bytes: number[] = [];
    const flushBytes = (): void => {
      const run = Uint8Array.from(bytes);
      for (let k = 0; k < run.length; ) {
        const len = validCharLen(run, k, run.length);
        if (len === 0) {
          out.append(REPLACEMENT);
          k += 1;
        } else {
          out.append(run, k, k + len);
          k += len;
        }
      }
      bytes.length = 0;
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const type = this.pieceAt(id).type;
      if (type === PieceType.BYTE) {
        bytes.push(this.byteOfId[id]!);
        continue;
      }
      if (bytes.length > 0) flushBytes();
      if (bosWsSeen || out.length > 0) isBosWs = false;
      bosWsSeen = false;
      if (type === PieceType.CONTROL) {
        if (controlAsText?.has(id)) out.append(encoder.encode(this.model.pieces[id]!.piece));
        continue;
      }
      if (type === PieceType.UNKNOWN) {
        out.append(this.unkSurface);
        continue;
      }
      const atStart = isBosWs ? this.surfacesAtStart[id]! : null;
      if (atStart !== null) {
        out.append(atStart);
        // With remove_extra_whitespaces every leading ▁ piece is dropped, not only the first.
        bosWsSeen = !this.model.normalizerSpec.removeExtraWhitespaces;
      } else {
        out.append(this.surfaces[id]!);
      }
    }
    if (bytes.length > 0) flushBytes();
    return decoder.decode(out.bytes.subarray(0, out.length));
  }

  /** The type of each piece, for callers that need to know which ids are control, byte or user-defined pieces. */
  get types(): Uint8Array {
    return this.table.types;
  }
}
