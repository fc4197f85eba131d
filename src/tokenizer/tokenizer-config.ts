// Reads the parts of HF `tokenizer_config.json` a tokenizer needs: special tokens, add_bos/add_eos, chat_template.
import { FormatError, MAX_DOCUMENT_DEPTH, nestingDepth } from '../errors.ts';
import { readConfinedText } from '../formats/confined-file.ts';

export interface TokenizerConfig {
  bosToken: string | null;
  eosToken: string | null;
  unkToken: string | null;
  padToken: string | null;
  addBosToken: boolean | null;
  addEosToken: boolean | null;
  /** The default chat template (a string, or the entry named "default" of a list), or null. */
  chatTemplate: string | null;
  /** Tokens of `added_tokens_decoder` marked special, by id. */
  specialTokens: Map<number, string>;
  /** The whole file, for what this reader does not interpret. */
  raw: Record<string, unknown>;
}

export const EMPTY_CONFIG: TokenizerConfig = {
  bosToken: null,
  eosToken: null,
  unkToken: null,
  padToken: null,
  addBosToken: null,
  addEosToken: null,
  chatTemplate: null,
  specialTokens: new Map(),
  raw: {},
};

/** A special token is written either as a string or as an AddedToken object with `content`. */
function tokenText(value: unknown, field: string, file: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content;
  throw new FormatError(`${file}: ${field} must be a string or an object with "content"`, { where: `${file}: ${field}` });
}

function optionalBool(value: unknown, field: string, file: string): boolean | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'boolean') return value;
  throw new FormatError(`${file}: ${field} must be true or false`, { where: `${file}: ${field}` });
}

export function parseTokenizerConfig(json: unknown, file: string): TokenizerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FormatError(`${file}: expected a JSON object`, { where: file });
  const raw = json as Record<string, unknown>;
  let chatTemplate: string | null = null;
  const t = raw['chat_template'];
  if (typeof t === 'string') chatTemplate = t;
  else if (Array.isArray(t)) {
    const entry = t.find((e) => (e as { name?: unknown } | null)?.name === 'default') ?? t[0];
    const template = (entry as { template?: unknown } | null | undefined)?.template;
    if (typeof template === 'string') chatTemplate = template;
  } else if (t !== undefined && t !== null) {
    throw new FormatError(`${file}: chat_template must be a string or a list of {name, template}`, { where: `${file}: chat_template` });
  }
  const specialTokens = new Map<number, string>();
  const decoder = raw['added_tokens_decoder'];
  if (decoder !== undefined && decoder !== null) {
    if (typeof decoder !== 'object') throw new FormatError(`${file}: added_tokens_decoder must be an object`, { where: `${file}: added_tokens_decoder` });
    for (const [id, tok] of Object.entries(decoder as Record<string, unknown>)) {
      const t = tok as { content?: unknown; special?: unknown } | null;
      if (typeof t !== 'object' || t === null) throw new FormatError(`${file}: added_tokens_decoder.${id.slice(0, 20)} must be an object`, { where: `${file}: added_tokens_decoder` });
      if (t.special === true && typeof t.content === 'string' && /^\d+$/.test(id)) specialTokens.set(Number(id), t.content);
    }
  }
  return {
    bosToken: tokenText(raw['bos_token'], 'bos_token', file),
    eosToken: tokenText(raw['eos_token'], 'eos_token', file),
    unkToken: tokenText(raw['unk_token'], 'unk_token', file),
    padToken: tokenText(raw['pad_token'], 'pad_token', file),
    addBosToken: optionalBool(raw['add_bos_token'], 'add_bos_token', file),
    addEosToken: optionalBool(raw['add_eos_token'], 'add_eos_token', file),
    chatTemplate,
    specialTokens,
    raw,
  };
}

/** A JSON file of a tokenizer folder, read without following a link out of the folder. */
export function readJsonFile(path: string): unknown {
  const text = readConfinedText(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${path}: not valid JSON: ${(err as Error).message}`, { where: path });
  }
  // The tokenizers library and the identity hash walk these documents recursively.
  if (nestingDepth(json, MAX_DOCUMENT_DEPTH) > MAX_DOCUMENT_DEPTH) throw new FormatError(`${path}: nested more than ${MAX_DOCUMENT_DEPTH} levels deep`, { where: path });
  return json;
}
