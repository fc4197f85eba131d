// One Tokenizer over a model folder's `tokenizer.model` (SentencePiece) or `tokenizer.json`, plus `tokenizer_config.json`.
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FormatError, SftkitError } from '../errors.ts';
import { readConfined } from '../formats/confined-file.ts';
import type { TokenizerBackend } from './backend.ts';
import { SentencePieceBackend } from './sentencepiece-tokenizer.ts';
import { SentencePieceProcessor } from './sentencepiece.ts';
import { EMPTY_CONFIG, parseTokenizerConfig, readJsonFile, type TokenizerConfig } from './tokenizer-config.ts';
import { TokenizerJsonBackend } from './tokenizer-json.ts';

export interface EncodeOptions {
  /** Prepend the BOS id (default: tokenizer_config.json's add_bos_token, else false). */
  addBos?: boolean;
  /** Append the EOS id (default: tokenizer_config.json's add_eos_token, else false). */
  addEos?: boolean;
  /** Match special-token text such as `</s>` in `text` (default false: user text is only ever text). */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, other control tokens); without it they show as their text. */
  skipSpecial?: boolean;
}

export interface FromDirOptions {
  /** Which file to use when the folder has both (default: tokenizer.model unless the config needs ids beyond it). */
  prefer?: 'sentencepiece' | 'tokenizer.json';
}

export class Tokenizer {
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly padId: number | null;
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** The Jinja chat template of tokenizer_config.json, if any. */
  readonly chatTemplate: string | null;
  /**
   * sha256 over the vocabulary, normalizer and special ids (not the file bytes): the same tokenizer has the same
   * identity wherever it is loaded from. add_bos/add_eos are left out: they are only defaults of `encode`, token
   * records never rely on them (their writers pass addBos/addEos explicitly), and a bare tokenizer.model has none.
   */
  readonly identity: string;
  private earlier: readonly string[] | undefined;

  private constructor(
    private readonly backend: TokenizerBackend,
    config: TokenizerConfig,
    defaults: { bos: number | null; eos: number | null; unk: number | null; pad: number | null },
    /** The tokenizer file, named when encoding or decoding fails inside the backend. */
    private readonly source: string,
  ) {
    const idOf = (token: string | null, fallback: number | null): number | null => (token === null ? fallback : backend.pieceToId(token) ?? fallback);
    this.bosId = idOf(config.bosToken, defaults.bos);
    this.eosId = idOf(config.eosToken, defaults.eos);
    this.unkId = idOf(config.unkToken, defaults.unk);
    this.padId = idOf(config.padToken, defaults.pad);
    this.addBos = config.addBosToken ?? false;
    this.addEos = config.addEosToken ?? false;
    this.chatTemplate = config.chatTemplate;
    const hash = createHash('sha256').update('sftkit tokenizer identity v2\n');
    backend.hashInto(hash);
    hash.update(`bos=${this.bosId} eos=${this.eosId} unk=${this.unkId} pad=${this.padId}\n`);
    this.identity = hash.digest('hex');
  }

  /**
   * The identities earlier sftkit versions gave this tokenizer (v1 also hashed add_bos/add_eos, so one per
   * setting), so that records made by them stay valid. Computed on first use: it hashes the vocabulary again.
   */
  earlierIdentities(): readonly string[] {
    if (this.earlier === undefined) {
      const v1 = createHash('sha256').update('sftkit tokenizer identity v1\n');
      this.backend.hashInto(v1);
      const ids = `bos=${this.bosId} eos=${this.eosId} unk=${this.unkId} pad=${this.padId}`;
      this.earlier = [false, true].flatMap((addBos) => [false, true].map((addEos) => v1.copy().update(`${ids} add_bos=${addBos} add_eos=${addEos}\n`).digest('hex')));
    }
    return this.earlier;
  }

  /** A SentencePiece `tokenizer.model`, with an optional tokenizer_config.json. */
  static fromSentencePiece(modelPath: string, configPath?: string): Tokenizer {
    const config = configPath === undefined ? EMPTY_CONFIG : parseTokenizerConfig(readJsonFile(configPath), configPath);
    // Read here rather than by SentencePieceProcessor.fromFile, so the file is confined to its folder.
    const sp = new SentencePieceProcessor(readConfined(modelPath), modelPath);
    const orNull = (id: number): number | null => (id < 0 ? null : id);
    return new Tokenizer(new SentencePieceBackend(sp, config.specialTokens), config, {
      bos: orNull(sp.bosId),
      eos: orNull(sp.eosId),
      unk: orNull(sp.unkId),
      pad: orNull(sp.padId),
    }, modelPath);
  }

  /**
   * A `tokenizer.model` named on its own (`--model_file M/tokenizer.model`), with the tokenizer_config.json
   * beside it when there is one: its special tokens are part of the tokenizer, so the file loads as the same
   * tokenizer (same ids, same identity) as `fromDir(M)` gives.
   */
  static fromModelFile(modelPath: string): Tokenizer {
    const configPath = join(dirname(modelPath), 'tokenizer_config.json');
    return Tokenizer.fromSentencePiece(modelPath, existsSync(configPath) ? configPath : undefined);
  }

  /** An HF `tokenizer.json`, with an optional tokenizer_config.json. */
  static fromTokenizerJson(jsonPath: string, configPath?: string): Tokenizer {
    const config = configPath === undefined ? EMPTY_CONFIG : parseTokenizerConfig(readJsonFile(configPath), configPath);
    const json = readJsonFile(jsonPath);
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FormatError(`${jsonPath}: expected a JSON object`, { where: jsonPath });
    const backend = new TokenizerJsonBackend(json as Record<string, unknown>, config.raw, jsonPath);
    return new Tokenizer(backend, config, { bos: null, eos: null, unk: null, pad: null }, jsonPath);
  }

  /** The tokenizer of a model folder: tokenizer.model or tokenizer.json, and tokenizer_config.json when present. */
  static fromDir(dir: string, options: FromDirOptions = {}): Tokenizer {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new FormatError(`${dir}: not a directory`, { where: dir });
    const modelPath = join(dir, 'tokenizer.model');
    const jsonPath = join(dir, 'tokenizer.json');
    const configPath = join(dir, 'tokenizer_config.json');
    const config = existsSync(configPath) ? configPath : undefined;
    const hasModel = existsSync(modelPath);
    const hasJson = existsSync(jsonPath);
    if (!hasModel && !hasJson) {
      throw new FormatError(`${dir}: no tokenizer.model or tokenizer.json`, { where: dir, hint: 'point at a model folder that ships its tokenizer files' });
    }
    if (hasModel && (!hasJson || options.prefer !== 'tokenizer.json')) {
      const tok = Tokenizer.fromSentencePiece(modelPath, config);
      // Added tokens beyond the SentencePiece vocabulary live only in tokenizer.json.
      const needsJson = hasJson && options.prefer === undefined && config !== undefined
        && [...parseTokenizerConfig(readJsonFile(config), config).specialTokens.keys()].some((id) => id >= tok.vocabSize);
      if (!needsJson) return tok;
    }
    return Tokenizer.fromTokenizerJson(jsonPath, config);
  }

  /** 'sentencepiece' or 'tokenizer.json'. */
  get kind(): TokenizerBackend['kind'] {
    return this.backend.kind;
  }

  /** One past the largest token id. */
  get vocabSize(): number {
    return this.backend.vocabSize;
  }

  /** Raw bytes are taken as SentencePiece takes them (a bad UTF-8 byte is U+FFFD), so a file's lines can be passed as read. */
  /**
   * Runs a backend call; an untyped error from inside it (the tokenizers library throws TypeErrors on some
   * malformed tokenizer.json sections only when they are first used) becomes a FormatError naming the file.
   */
  private guarded<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof SftkitError) throw err;
      const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      throw new FormatError(`${this.source}: the tokenizer failed while ${what} (${why})`, {
        where: this.source,
        hint: 'the tokenizer file is malformed or uses a feature sftkit does not support',
      });
    }
  }

  encode(text: string | Uint8Array, options: EncodeOptions = {}): number[] {
    const ids = this.guarded('encoding', () => this.backend.encode(text, options.parseSpecial ?? false));
    if ((options.addBos ?? this.addBos) && this.bosId !== null) ids.unshift(this.bosId);
    if ((options.addEos ?? this.addEos) && this.eosId !== null) ids.push(this.eosId);
    return ids;
  }

  /** The pieces `encode` would give (without BOS/EOS), e.g. `▁Hello` or `<0x0A>`. */
  encodeAsPieces(text: string | Uint8Array, options: Pick<EncodeOptions, 'parseSpecial'> = {}): string[] {
    return this.guarded('encoding', () => this.backend.encodeAsPieces(text, options.parseSpecial ?? false));
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    return this.guarded('decoding', () => this.backend.decode(ids, options.skipSpecial ?? false));
  }

  idToPiece(id: number): string {
    return this.backend.idToPiece(id);
  }

  /** The id of `piece`, or null when it is not in the vocabulary. */
  pieceToId(piece: string): number | null {
    return this.backend.pieceToId(piece);
  }

  isSpecial(id: number): boolean {
    return this.backend.isSpecial(id);
  }
}
