// HF config.json -> typed model configs. `llama` covers Llama 2/3 (rope_scaling), Mistral and Qwen2 (qkv bias);
// `gpt2` covers GPT-2. Keys keep their HF meaning; defaults are transformers' defaults for each model_type.
import { readFileSync } from 'node:fs';
import { ConfigError, MAX_DOCUMENT_DEPTH, describeValue, nestingDepth } from '../errors.ts';

export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'gpt2'] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];
/** The model file that implements a model_type (DESIGN.md: one file per architecture). */
export type ModelFamily = 'llama' | 'gpt2';

export interface RopeScaling {
  /** `linear` and `dynamic` (NTK) scale positions; `llama3` rescales frequencies by band. */
  type: 'linear' | 'dynamic' | 'llama3';
  factor: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

interface CommonConfig {
  modelType: ModelType;
  vocabSize: number;
  numHiddenLayers: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  /** Llama 3 instruct models list several. */
  eosTokenIds: number[];
  padTokenId: number | null;
  /** `torch_dtype` as written, e.g. "bfloat16"; null when absent. */
  torchDtype: string | null;
  /** The config.json object as read, for writing it back unchanged. */
  raw: Record<string, unknown>;
}

export interface LlamaConfig extends CommonConfig {
  family: 'llama';
  hiddenSize: number;
  intermediateSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** Bias on q/k/v projections (Qwen2 always; Llama with attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (Llama's attention_bias only). */
  oBias: boolean;
  mlpBias: boolean;
  hiddenAct: string;
  /** Mistral/Qwen2 sliding-window attention size, null when no layer uses one. */
  slidingWindow: number | null;
  /** Per layer: whether its attention is windowed by `slidingWindow` (all false when it is null). */
  windowedLayers: boolean[];
}

export interface Gpt2Config extends CommonConfig {
  family: 'gpt2';
  nEmbd: number;
  nHead: number;
  nPositions: number;
  /** MLP width (n_inner, default 4 * n_embd). */
  nInner: number;
  layerNormEpsilon: number;
  activationFunction: string;
}

export type ModelConfig = LlamaConfig | Gpt2Config;

export function modelFamily(modelType: ModelType): ModelFamily {
  return modelType === 'gpt2' ? 'gpt2' : 'llama';
}

/**
 * Upper bounds on sizes, far above every released model (Llama 3 405B: 126 layers, hidden 16384, vocab 128256;
 * Gemma: vocab 256000), so that a corrupt or hostile config.json fails here instead of making `convert` or
 * `run` build billions of tensor names or allocate terabytes.
 */
const LIMITS: Record<string, number> = {
  vocab_size: 1 << 24,
  num_hidden_layers: 1024,
  n_layer: 1024,
  hidden_size: 1 << 17,
  n_embd: 1 << 17,
  intermediate_size: 1 << 20,
  n_inner: 1 << 20,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  n_head: 1024,
  head_dim: 1 << 13,
  max_position_embeddings: 1 << 24,
  n_positions: 1 << 24,
  original_max_position_embeddings: 1 << 24,
  sliding_window: 1 << 24,
};

class Fields {
  constructor(readonly raw: Record<string, unknown>, readonly file: string) {}
  private fail(key: string, what: string): never {
    throw new ConfigError(`${this.file}: ${key} ${what} (got ${describeValue(this.raw[key])})`, { where: `${this.file}: ${key}` });
  }
  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }
  int(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (v === undefined) this.fail(key, 'is required');
    if (!Number.isSafeInteger(v) || (v as number) <= 0) this.fail(key, 'must be a positive integer');
    const max = LIMITS[key];
    if (max !== undefined && (v as number) > max) this.fail(key, `is larger than any model sftkit can hold (at most ${max})`);
    return v as number;
  }
  num(key: string, fallback: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, 'must be a positive number');
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'boolean') this.fail(key, 'must be true or false');
    return v;
  }
  str(key: string, fallback: string): string {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'string') this.fail(key, 'must be a string');
    return v;
  }
  tokenId(key: string): number | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (!Number.isSafeInteger(v) || (v as number) < 0) this.fail(key, 'must be a token id');
    return v as number;
  }
  tokenIds(key: string): number[] {
    const v = this.raw[key];
    if (v === undefined || v === null) return [];
    const ids = Array.isArray(v) ? v : [v];
    if (!ids.every((x) => Number.isSafeInteger(x) && (x as number) >= 0)) this.fail(key, 'must be a token id or a list of them');
    return ids as number[];
  }
}

function parseRopeScaling(f: Fields): RopeScaling | null {
  const v = f.raw['rope_scaling'];
  if (v === undefined || v === null) return null;
  const where = `${f.file}: rope_scaling`;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${where} must be an object or null`, { where });
  const r = new Fields(v as Record<string, unknown>, where);
  const type = r.str('rope_type', r.has('type') ? r.str('type', '') : '');
  if (type === 'default') return null;
  if (type !== 'linear' && type !== 'dynamic' && type !== 'llama3') {
    throw new ConfigError(`${where}: rope type ${describeValue(type)} is not supported (supported: linear, dynamic, llama3)`, { where });
  }
  const out: RopeScaling = { type, factor: r.num('factor', NaN) };
  if (type === 'llama3') {
    out.lowFreqFactor = r.num('low_freq_factor', NaN);
    out.highFreqFactor = r.num('high_freq_factor', NaN);
    out.originalMaxPositionEmbeddings = r.int('original_max_position_embeddings');
  }
  return out;
}

function common(f: Fields, modelType: ModelType, tieDefault: boolean, raw: Record<string, unknown>): CommonConfig {
  return {
    modelType,
    vocabSize: f.int('vocab_size'),
    numHiddenLayers: f.int(modelType === 'gpt2' ? 'n_layer' : 'num_hidden_layers'),
    tieWordEmbeddings: f.bool('tie_word_embeddings', tieDefault),
    bosTokenId: f.tokenId('bos_token_id'),
    eosTokenIds: f.tokenIds('eos_token_id'),
    padTokenId: f.tokenId('pad_token_id'),
    torchDtype: typeof raw['torch_dtype'] === 'string' ? raw['torch_dtype'] : null,
    raw,
  };
}

function parseLlama(f: Fields, modelType: ModelType): LlamaConfig {
  const hiddenSize = f.int('hidden_size');
  const numAttentionHeads = f.int('num_attention_heads');
  const numKeyValueHeads = f.int('num_key_value_heads', numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw new ConfigError(`${f.file}: num_attention_heads (${numAttentionHeads}) must be a multiple of num_key_value_heads (${numKeyValueHeads})`, { where: `${f.file}: num_key_value_heads` });
  }
  if (!f.has('head_dim') && hiddenSize % numAttentionHeads !== 0) {
    throw new ConfigError(`${f.file}: hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numAttentionHeads})`, { where: `${f.file}: hidden_size` });
  }
  const attentionBias = f.bool('attention_bias', false);
  const isQwen2 = modelType === 'qwen2';
  const numHiddenLayers = f.int('num_hidden_layers');
  const { slidingWindow, windowedLayers } = parseSlidingWindow(f, modelType, numHiddenLayers);
  return {
    ...common(f, modelType, false, f.raw),
    family: 'llama',
    hiddenSize,
    intermediateSize: f.int('intermediate_size'),
    numAttentionHeads,
    numKeyValueHeads,
    headDim: f.int('head_dim', hiddenSize / numAttentionHeads),
    maxPositionEmbeddings: f.int('max_position_embeddings', 2048),
    rmsNormEps: f.num('rms_norm_eps', 1e-6),
    ropeTheta: f.num('rope_theta', 10000),
    ropeScaling: parseRopeScaling(f),
    qkvBias: isQwen2 || attentionBias,
    oBias: !isQwen2 && attentionBias,
    mlpBias: f.bool('mlp_bias', false),
    hiddenAct: f.str('hidden_act', 'silu'),
    slidingWindow,
    windowedLayers,
  };
}

/**
 * transformers' semantics: Mistral windows every layer when `sliding_window` is set (absent: MistralConfig's
 * default 4096; null: no window). Llama has none. Qwen2 windows only with `use_sliding_window: true`, and then
 * only the layers from `max_window_layers` on (default 28), or those `layer_types` names "sliding_attention".
 */
function parseSlidingWindow(f: Fields, modelType: ModelType, layers: number): { slidingWindow: number | null; windowedLayers: boolean[] } {
  const none = { slidingWindow: null, windowedLayers: new Array<boolean>(layers).fill(false) };
  if (modelType === 'mistral') {
    if (f.raw['sliding_window'] === null) return none;
    return { slidingWindow: f.int('sliding_window', 4096), windowedLayers: new Array<boolean>(layers).fill(true) };
  }
  if (modelType !== 'qwen2' || !f.bool('use_sliding_window', false) || f.raw['sliding_window'] === null) return none;
  const slidingWindow = f.int('sliding_window', 4096);
  const types = f.raw['layer_types'];
  if (types !== undefined && types !== null) {
    const where = `${f.file}: layer_types`;
    if (!Array.isArray(types) || types.length !== layers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
      throw new ConfigError(`${where} must list "sliding_attention" or "full_attention" for each of the ${layers} layers`, { where });
    }
    return { slidingWindow, windowedLayers: types.map((t) => t === 'sliding_attention') };
  }
  const from = f.raw['max_window_layers'] === 0 ? 0 : f.int('max_window_layers', 28);
  return { slidingWindow, windowedLayers: Array.from({ length: layers }, (_, i) => i >= from) };
}

function parseGpt2(f: Fields): Gpt2Config {
  const nEmbd = f.int('n_embd', 768);
  const nHead = f.int('n_head', 12);
  if (nEmbd % nHead !== 0) throw new ConfigError(`${f.file}: n_embd (${nEmbd}) is not a multiple of n_head (${nHead})`, { where: `${f.file}: n_embd` });
  return {
    ...common(f, 'gpt2', true, f.raw),
    family: 'gpt2',
    nEmbd,
    nHead,
    nPositions: f.int('n_positions', 1024),
    nInner: f.has('n_inner') ? f.int('n_inner') : 4 * nEmbd,
    layerNormEpsilon: f.num('layer_norm_epsilon', 1e-5),
    activationFunction: f.str('activation_function', 'gelu_new'),
  };
}

/** Parses a config.json object; `file` names it in errors. */
export function parseModelConfig(json: unknown, file: string): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${file}: not a JSON object`, { where: file });
  // The object is written back into converted checkpoints, so a nesting no printer can handle is refused here.
  if (nestingDepth(json, MAX_DOCUMENT_DEPTH) > MAX_DOCUMENT_DEPTH) throw new ConfigError(`${file}: nested more than ${MAX_DOCUMENT_DEPTH} levels deep`, { where: file });
  const raw = json as Record<string, unknown>;
  const type = raw['model_type'];
  if (typeof type !== 'string' || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(type)) {
    throw new ConfigError(`${file}: model_type ${describeValue(type)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`, {
      where: `${file}: model_type`,
    });
  }
  const f = new Fields(raw, file);
  // gpt2 configs spell the layer count n_layer; give transformers' default when it is absent.
  if (type === 'gpt2' && raw['n_layer'] === undefined) return parseGpt2(new Fields({ ...raw, n_layer: 12 }, file));
  return type === 'gpt2' ? parseGpt2(f) : parseLlama(f, type as ModelType);
}

export function readModelConfig(path: string): ModelConfig {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${path}: cannot read config (${(err as Error).message})`, { where: path });
  }
  return parseModelConfig(json, path);
}
