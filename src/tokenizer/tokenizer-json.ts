// The `tokenizer.json` backend of Tokenizer: our byte-level BPE encoder where the file is one (GPT-2, Llama 3, Qwen2),
// @huggingface/tokenizers (pure JS) for other files and for decoding (see docs/TOKENIZERS.md).
import type { Hash } from 'node:crypto';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { DataError, FormatError, describeValue } from '../errors.ts';
import type { TokenizerBackend } from './backend.ts';
import { MergesBpe } from './merges-bpe.ts';

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

/** Text for the load-time check: letters, digits, punctuation, whitespace runs, accents, CJK, an emoji. */
const PROBE_TEXT = 'Hi there!  42 times,\tcafé\n日本 \u{1F600} end.';

/**
 * Checks every id of model.vocab and added_tokens, and returns the added tokens. The library sizes arrays by
 * the largest id (one id of 332,000,000 in a 6 KB file took 52 s to load), so each id must lie below the
 * number of tokens the file defines.
 */
function checkIds(json: Record<string, unknown>, file: string): AddedTokenJson[] {
  const rawAdded = json['added_tokens'] ?? [];
  if (!Array.isArray(rawAdded)) throw new FormatError(`${file}: added_tokens must be a list`, { where: `${file}: added_tokens` });
  const model = json['model'] as { type: string; vocab?: unknown };
  const vocab = model.vocab;
  // Unigram lists [piece, score] pairs (the id is the index); the other models map piece -> id. The library
  // takes either shape for any model, and a list given to BPE made its ids the list's numbers (a hang).
  if (model.type === 'Unigram') {
    if (!Array.isArray(vocab) || !vocab.every((e) => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'number')) {
      throw new FormatError(`${file}: model.vocab of a Unigram model must be a list of [piece, score] pairs`, { where: `${file}: model.vocab` });
    }
  } else if (vocab !== undefined && (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab))) {
    throw new FormatError(`${file}: model.vocab of a ${describeValue(model.type, 40)} model must be an object mapping pieces to ids`, { where: `${file}: model.vocab` });
  }
  const vocabEntries = Array.isArray(vocab) ? vocab.length : typeof vocab === 'object' && vocab !== null ? Object.keys(vocab).length : 0;
  // Ids may leave gaps (a vocabulary trimmed of pieces, added tokens placed past a padded vocab), but a table
  // indexed by id must stay in proportion to the file: at most twice its tokens plus 1,024.
  const tokens = vocabEntries + rawAdded.length;
  const limit = 2 * tokens + 1024;
  const checkId = (id: unknown, field: string): void => {
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= limit) {
      throw new FormatError(`${file}: ${field}: id ${describeValue(id)} is not an integer in [0, ${limit}) (the file defines ${tokens} tokens; ids may leave gaps, up to twice that plus 1,024)`, { where: `${file}: ${field}` });
    }
  };
  if (typeof vocab === 'object' && vocab !== null && !Array.isArray(vocab)) {
    for (const [piece, id] of Object.entries(vocab)) checkId(id, `model.vocab[${describeValue(piece, 40)}]`);
  }
  rawAdded.forEach((t: unknown, i) => {
    if (typeof t !== 'object' || t === null || typeof (t as AddedTokenJson).content !== 'string') {
      throw new FormatError(`${file}: added_tokens[${i}] must be an object with a string "content"`, { where: `${file}: added_tokens[${i}]` });
    }
    checkId((t as AddedTokenJson).id, `added_tokens[${i}].id`);
  });
  return rawAdded as AddedTokenJson[];
}

/**
 * `fast`, if it gives the library's ids on the probe text (a last guard: otherwise the library encodes). The probe
 * holds no added token's text, so both settings of parseSpecial must give the same ids.
 */
function agreesOnProbe(fast: MergesBpe | null, full: HfTokenizer): MergesBpe | null {
  if (fast === null) return null;
  const lib = full.encode(PROBE_TEXT, { add_special_tokens: false }).ids.join(' ');
  return [false, true].every((parseSpecial) => fast.encode(PROBE_TEXT, parseSpecial).join(' ') === lib) ? fast : null;
}

export class TokenizerJsonBackend implements TokenizerBackend {
  readonly kind = 'tokenizer.json' as const;
  readonly vocabSize: number;
  /** Knows every added token: used with parseSpecial, for decoding and for id <-> piece. */
  private readonly full: HfTokenizer;
  /**
   * The same tokenizer without its special added tokens, so that their text in user input is ordinary text; built
   * only when our encoder does not serve the file.
   */
  private readonly plain: HfTokenizer | null;
  private readonly specialIds: Set<number>;
  /** Our encoder, when the file is a byte-level BPE it implements (null: the library encodes). */
  private readonly fast: MergesBpe | null;

  constructor(
    private readonly json: Record<string, unknown>,
    config: Record<string, unknown>,
    private readonly file: string,
  ) {
    const model = json['model'] as { type?: unknown; vocab?: unknown } | undefined;
    if (typeof model !== 'object' || model === null || typeof model.type !== 'string') {
      throw new FormatError(`${file}: model.type: not a tokenizer.json (no model section with a type)`, { where: `${file}: model.type` });
    }
    const added = checkIds(json, file);
    this.specialIds = new Set(added.filter((t) => t.special === true).map((t) => t.id));
    try {
      this.full = new HfTokenizer(json, config);
      // The library checks the sections only when it uses them: a malformed normalizer, pre-tokenizer,
      // post-processor or decoder shows on a first encode and decode, so it is refused here, naming the file.
      const probe = (tok: HfTokenizer): void => void tok.decode(tok.encode(PROBE_TEXT, { add_special_tokens: true }).ids, { skip_special_tokens: false });
      probe(this.full);
      this.fast = agreesOnProbe(MergesBpe.fromJson(json), this.full);
      this.plain = this.fast === null ? new HfTokenizer({ ...json, added_tokens: added.filter((t) => t.special !== true) }, config) : null;
      if (this.plain !== null) probe(this.plain);
    } catch (err) {
      throw new FormatError(`${file}: cannot build the tokenizer: ${(err as Error)?.message ?? String(err)}`, { where: file });
    }
    let maxId = -1;
    for (const id of this.full.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
  }

  encode(text: string | Uint8Array, parseSpecial: boolean): number[] {
    if (this.fast !== null) return this.fast.encode(asString(text), parseSpecial);
    return (parseSpecial ? this.full : this.plain!).encode(asString(text), { add_special_tokens: false }).ids;
  }

  encodeAsPieces(text: string | Uint8Array, parseSpecial: boolean): string[] {
    if (this.fast !== null) return this.fast.encode(asString(text), parseSpecial).map((id) => this.idToPiece(id));
    return (parseSpecial ? this.full : this.plain!).encode(asString(text), { add_special_tokens: false }).tokens;
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
