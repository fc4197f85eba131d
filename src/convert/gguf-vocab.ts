// The tokenizer as GGUF metadata, the way llama.cpp's converter writes it: a SentencePiece `tokenizer.model`
// becomes `tokenizer.ggml.model = llama` (pieces, scores, piece types); a byte-level BPE `tokenizer.json`
// becomes `gpt2` (tokens, types, merges, and the pre-tokenizer named by its split regex). Special ids,
// add_bos/add_eos and the chat template follow. The vocabulary is padded to config.json's vocab_size.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../errors.ts';
import type { GgufValue } from '../formats/gguf.ts';
import type { ModelConfig } from '../models/config.ts';
import { PieceType } from '../tokenizer/sentencepiece-model.ts';
import { SentencePieceProcessor } from '../tokenizer/sentencepiece.ts';
import { parseTokenizerConfig, readJsonFile, type TokenizerConfig } from '../tokenizer/tokenizer-config.ts';
import { Tokenizer } from '../tokenizer/tokenizer.ts';

/** llama.cpp's token types (the same numbers as SentencePiece's piece types). */
export const GGUF_TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/**
 * The split regexes of byte-level BPE tokenizers, by llama.cpp's pre-tokenizer name. llama.cpp picks its
 * own regexes by this name, so a tokenizer whose regex is not here would be split differently: refused.
 */
export const BPE_PRE_TOKENIZERS: ReadonlyArray<{ pre: string; regex: string }> = [
  { pre: 'llama-bpe', regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
  { pre: 'qwen2', regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
];

export interface GgufVocab {
  metadata: Map<string, GgufValue>;
  /** Text of the EOS token (for ollama's stop parameter), when there is one. */
  eosText: string | null;
  kind: 'llama' | 'gpt2';
  /** Where llama.cpp will not tokenize exactly as sftkit does. */
  warnings: string[];
}

const PAD_SCORE = -1000;

function tokenizerConfigOf(dir: string): TokenizerConfig | null {
  const path = join(dir, 'tokenizer_config.json');
  return existsSync(path) ? parseTokenizerConfig(readJsonFile(path), path) : null;
}

/** The chat template: tokenizer_config.json's, else a chat_template.jinja file beside it. */
export function chatTemplateOf(dir: string): string | null {
  const fromConfig = tokenizerConfigOf(dir)?.chatTemplate ?? null;
  if (fromConfig !== null) return fromConfig;
  const jinja = join(dir, 'chat_template.jinja');
  return existsSync(jinja) ? readFileSync(jinja, 'utf8') : null;
}

function sentencePieceVocab(dir: string, vocabSize: number): { tokens: string[]; scores: number[]; types: number[]; addSpacePrefix: boolean; warnings: string[] } {
  const path = join(dir, 'tokenizer.model');
  const sp = SentencePieceProcessor.fromFile(path);
  const pieces = sp.model.pieces;
  if (pieces.length > vocabSize) {
    throw new FormatError(`${path}: ${pieces.length} pieces, more than config.json's vocab_size ${vocabSize}`, { where: path, hint: 'the tokenizer does not belong to this model' });
  }
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  for (const p of pieces) {
    tokens.push(p.piece);
    scores.push(p.score);
    // SentencePiece's piece types and llama.cpp's token types share their numbers.
    types.push(p.type === PieceType.NORMAL ? GGUF_TOKEN_TYPE.normal : p.type);
  }
  // Added tokens beyond the SentencePiece model (tokenizer_config.json's added_tokens_decoder).
  const decoder = tokenizerConfigOf(dir)?.raw['added_tokens_decoder'];
  const added = new Map<number, { content: string; special: boolean }>();
  if (decoder !== null && typeof decoder === 'object') {
    for (const [id, v] of Object.entries(decoder as Record<string, { content?: unknown; special?: unknown }>)) {
      if (/^\d+$/.test(id) && typeof v.content === 'string') added.set(Number(id), { content: v.content, special: v.special === true });
    }
  }
  for (let id = pieces.length; id < vocabSize; id++) {
    const a = added.get(id);
    tokens.push(a?.content ?? `[PAD${id}]`);
    scores.push(PAD_SCORE);
    types.push(a === undefined ? GGUF_TOKEN_TYPE.unused : a.special ? GGUF_TOKEN_TYPE.control : GGUF_TOKEN_TYPE.userDefined);
  }
  // llama.cpp's SentencePiece tokenizer applies no normalization rules (Llama's own tokenizer.model has
  // none); a model trained with them tokenizes differently there wherever they would change the text.
  const n = sp.model.normalizerSpec;
  const warnings: string[] = [];
  const rules = [n.precompiledCharsmap.byteLength > 0 ? `${n.name || 'custom'} normalization` : null, n.removeExtraWhitespaces ? 'remove_extra_whitespaces' : null].filter((x) => x !== null);
  if (rules.length > 0) {
    warnings.push(`${path} normalizes text (${rules.join(', ')}) and llama.cpp does not: text those rules change (newlines, runs of spaces, non-NFKC characters) tokenizes differently in llama.cpp`);
  }
  return { tokens, scores, types, addSpacePrefix: n.addDummyPrefix, warnings };
}

interface TokenizerJson {
  model?: { type?: unknown; vocab?: unknown; merges?: unknown };
  added_tokens?: unknown;
  pre_tokenizer?: unknown;
}

/** The split regex of a byte-level pre-tokenizer, or 'gpt-2' for ByteLevel's own (GPT-2's) regex. */
function preTokenizerName(pre: unknown, path: string): string {
  const where = `${path}: pre_tokenizer`;
  const p = pre as { type?: unknown; use_regex?: unknown; pretokenizers?: unknown; pattern?: { Regex?: unknown } } | null;
  if (p?.type === 'ByteLevel' && p.use_regex !== false) return 'gpt-2';
  const parts = p?.type === 'Sequence' && Array.isArray(p.pretokenizers) ? (p.pretokenizers as Array<typeof p>) : [p];
  const split = parts.find((x) => x?.type === 'Split');
  const regex = split?.pattern?.Regex;
  const known = BPE_PRE_TOKENIZERS.find((k) => k.regex === regex);
  if (known !== undefined && parts.some((x) => x?.type === 'ByteLevel')) return known.pre;
  throw new FormatError(`${where}: this pre-tokenizer (${JSON.stringify(regex ?? p?.type ?? null)}) has no llama.cpp name, so llama.cpp would split text differently`, {
    where,
    hint: `known: ByteLevel (gpt-2), ${BPE_PRE_TOKENIZERS.map((k) => k.pre).join(', ')}; add its regex to BPE_PRE_TOKENIZERS in src/convert/gguf-vocab.ts`,
  });
}

function bpeVocab(dir: string, vocabSize: number): { tokens: string[]; types: number[]; merges: string[]; pre: string } {
  const path = join(dir, 'tokenizer.json');
  const json = readJsonFile(path) as TokenizerJson;
  const model = json.model;
  if (model?.type !== 'BPE' || typeof model.vocab !== 'object' || model.vocab === null) {
    throw new FormatError(`${path}: model.type is ${JSON.stringify(model?.type)}; GGUF export reads byte-level BPE tokenizer.json files`, { where: `${path}: model.type` });
  }
  const tokens: Array<string | undefined> = new Array(vocabSize);
  const types: number[] = new Array(vocabSize).fill(GGUF_TOKEN_TYPE.unused);
  const place = (id: unknown, text: string, type: number): void => {
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= vocabSize) {
      throw new FormatError(`${path}: token ${JSON.stringify(text)} has id ${id}, outside config.json's vocab_size ${vocabSize}`, { where: `${path}: ${text}` });
    }
    tokens[id as number] = text;
    types[id as number] = type;
  };
  for (const [text, id] of Object.entries(model.vocab as Record<string, unknown>)) place(id, text, GGUF_TOKEN_TYPE.normal);
  for (const a of (Array.isArray(json.added_tokens) ? json.added_tokens : []) as Array<{ id?: unknown; content?: unknown; special?: unknown }>) {
    if (typeof a.content !== 'string') continue;
    place(a.id, a.content, a.special === true ? GGUF_TOKEN_TYPE.control : GGUF_TOKEN_TYPE.userDefined);
  }
  const merges = (Array.isArray(model.merges) ? model.merges : []).map((m, i) => {
    // Newer tokenizer.json files write merges as pairs; GGUF keeps the "left right" text form.
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === 'string')) return `${m[0]} ${m[1]}`;
    throw new FormatError(`${path}: model.merges[${i}] is neither "a b" nor ["a", "b"]`, { where: `${path}: model.merges[${i}]` });
  });
  return { tokens: Array.from(tokens, (t, id) => t ?? `[PAD${id}]`), types, merges, pre: preTokenizerName(json.pre_tokenizer, path) };
}

const u32 = (value: number): GgufValue => ({ type: 'uint32', value });

/** Tokenizer metadata for a model folder; SentencePiece for llama-family folders that have tokenizer.model. */
export function ggufVocab(dir: string, cfg: ModelConfig): GgufVocab {
  const hasModel = existsSync(join(dir, 'tokenizer.model'));
  const hasJson = existsSync(join(dir, 'tokenizer.json'));
  if (!hasModel && !hasJson) {
    throw new FormatError(`${dir}: no tokenizer.model or tokenizer.json; a GGUF file carries its tokenizer`, { where: dir, hint: 'copy the base model\'s tokenizer files into the checkpoint' });
  }
  const useSp = hasModel && cfg.family === 'llama' && cfg.modelType !== 'qwen2';
  const md = new Map<string, GgufValue>();
  const warnings: string[] = [];
  if (useSp) {
    const v = sentencePieceVocab(dir, cfg.vocabSize);
    md.set('tokenizer.ggml.model', { type: 'string', value: 'llama' });
    md.set('tokenizer.ggml.pre', { type: 'string', value: 'default' });
    md.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: v.tokens });
    md.set('tokenizer.ggml.scores', { type: 'array', itemType: 'float32', value: v.scores });
    md.set('tokenizer.ggml.token_type', { type: 'array', itemType: 'int32', value: v.types });
    md.set('tokenizer.ggml.add_space_prefix', { type: 'bool', value: v.addSpacePrefix });
    warnings.push(...v.warnings);
  } else {
    if (!hasJson) throw new FormatError(`${dir}: ${cfg.modelType} needs tokenizer.json for GGUF export`, { where: join(dir, 'tokenizer.json') });
    const v = bpeVocab(dir, cfg.vocabSize);
    md.set('tokenizer.ggml.model', { type: 'string', value: 'gpt2' });
    md.set('tokenizer.ggml.pre', { type: 'string', value: v.pre });
    md.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: v.tokens });
    md.set('tokenizer.ggml.token_type', { type: 'array', itemType: 'int32', value: v.types });
    md.set('tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: v.merges });
  }
  // Special ids as sftkit's own tokenizer resolves them (tokenizer_config.json, then the model's defaults),
  // falling back to config.json's ids.
  const tok = Tokenizer.fromDir(dir, { prefer: useSp ? 'sentencepiece' : 'tokenizer.json' });
  const tcfg = tokenizerConfigOf(dir);
  const ids: Array<[string, number | null]> = [
    ['bos_token_id', tok.bosId ?? cfg.bosTokenId],
    ['eos_token_id', tok.eosId ?? cfg.eosTokenIds[0] ?? null],
    ['unknown_token_id', tok.unkId],
    ['padding_token_id', tok.padId ?? cfg.padTokenId],
  ];
  for (const [key, id] of ids) if (id !== null && id < cfg.vocabSize) md.set(`tokenizer.ggml.${key}`, u32(id));
  if (tcfg?.addBosToken != null) md.set('tokenizer.ggml.add_bos_token', { type: 'bool', value: tcfg.addBosToken });
  if (tcfg?.addEosToken != null) md.set('tokenizer.ggml.add_eos_token', { type: 'bool', value: tcfg.addEosToken });
  const template = chatTemplateOf(dir);
  if (template !== null) md.set('tokenizer.chat_template', { type: 'string', value: template });
  const eosId = tok.eosId ?? cfg.eosTokenIds[0] ?? null;
  const tokens = (md.get('tokenizer.ggml.tokens') as { value: string[] }).value;
  return { metadata: md, eosText: eosId === null ? null : tokens[eosId] ?? null, kind: useSp ? 'llama' : 'gpt2', warnings };
}
