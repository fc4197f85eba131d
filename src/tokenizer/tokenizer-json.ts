// The `tokenizer.json` backend of Tokenizer, over @huggingface/tokenizers (pure JS; see docs/TOKENIZERS.md for why).
import type { Hash } from 'node:crypto';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { DataError, FormatError } from '../errors.ts';
import type { TokenizerBackend } from './backend.ts';

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
function asString(text: string | Uint8Array): string {
  return typeof text === 'string' ? text : decoder.decode(text);
}

/** JSON with object keys sorted, so the identity does not depend on how the file was written. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export class TokenizerJsonBackend implements TokenizerBackend {
  readonly kind = 'tokenizer.json' as const;
  readonly vocabSize: number;
  /** Knows every added token: used with parseSpecial, for decoding and for id <-> piece. */
  private readonly full: HfTokenizer;
  /** The same tokenizer without its special added tokens, so that their text in user input is ordinary text. */
  private readonly plain: HfTokenizer;
  private readonly specialIds: Set<number>;

  constructor(
    private readonly json: Record<string, unknown>,
    config: Record<string, unknown>,
    private readonly file: string,
  ) {
    const model = json['model'] as { type?: unknown; vocab?: unknown } | undefined;
    if (typeof model !== 'object' || model === null || typeof model.type !== 'string') {
      throw new FormatError(`${file}: model.type: not a tokenizer.json (no model section with a type)`, { where: `${file}: model.type` });
    }
    const added = (Array.isArray(json['added_tokens']) ? json['added_tokens'] : []) as AddedTokenJson[];
    this.specialIds = new Set(added.filter((t) => t.special === true).map((t) => t.id));
    try {
      this.full = new HfTokenizer(json, config);
      this.plain = new HfTokenizer({ ...json, added_tokens: added.filter((t) => t.special !== true) }, config);
    } catch (err) {
      throw new FormatError(`${file}: cannot build the tokenizer: ${(err as Error).message}`, { where: file });
    }
    let maxId = -1;
    for (const id of this.full.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
  }

  encode(text: string | Uint8Array, parseSpecial: boolean): number[] {
    return (parseSpecial ? this.full : this.plain).encode(asString(text), { add_special_tokens: false }).ids;
  }

  encodeAsPieces(text: string | Uint8Array, parseSpecial: boolean): string[] {
    return (parseSpecial ? this.full : this.plain).encode(asString(text), { add_special_tokens: false }).tokens;
  }

  /** No clean-up of spaces before punctuation: decoding stays a faithful inverse, as in the Rust library. */
  decode(ids: ArrayLike<number>, skipSpecial: boolean): string {
    const list = Array.from(ids);
    for (const id of list) this.idToPiece(id);
    if (list.length === 0) return '';
    return this.full.decode(list, { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: false });
  }

  idToPiece(id: number): string {
    const piece = Number.isInteger(id) ? this.full.id_to_token(id) : undefined;
    if (piece === undefined) throw new DataError(`token id ${id} is not in the vocabulary of ${this.file}`, { where: this.file });
    return piece;
  }

  pieceToId(piece: string): number | null {
    return this.full.token_to_id(piece) ?? null;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  hashInto(hash: Hash): void {
    hash.update('tokenizer.json\n');
    for (const key of ['model', 'added_tokens', 'normalizer', 'pre_tokenizer', 'decoder']) {
      hash.update(`${key}=${canonical(this.json[key] ?? null)}\n`);
    }
  }
}
