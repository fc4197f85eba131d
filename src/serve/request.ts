// OpenAI request bodies (POST /v1/chat/completions and /v1/completions) checked field by field into typed
// requests; anything wrong is a 400 naming the field. Unknown fields are ignored (as vLLM does); known ones
// sftkit cannot honour (n > 1, logprobs, tools, echo) are refused rather than silently dropped. Nothing in a
// request names a file: prompts are text or token ids, and `model` is matched against the served ids.
import { MAX_DOCUMENT_DEPTH, describeValue, nestingDepth } from '../errors.ts';
import { RequestError, badField } from './errors.ts';

export const CHAT_ENDPOINT = '/v1/chat/completions';
export const COMPLETIONS_ENDPOINT = '/v1/completions';
export type Endpoint = typeof CHAT_ENDPOINT | typeof COMPLETIONS_ENDPOINT;

export type Role = 'system' | 'developer' | 'user' | 'assistant';

export interface ChatMessage {
  role: Role;
  content: string;
}

/** Generation settings common to both endpoints, OpenAI's names in camelCase; undefined = the default. */
export interface SamplingRequest {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  seed?: number;
  stop: string[];
}

export interface ChatRequest extends SamplingRequest {
  kind: 'chat';
  messages: ChatMessage[];
}

export interface CompletionRequest extends SamplingRequest {
  kind: 'completion';
  /** Text (encoded with BOS, as predict's `none` template does) or token ids (used as given). */
  prompt: string | number[];
}

const MAX_STOP = 4;
const MAX_STOP_CHARS = 256;

type Obj = Record<string, unknown>;

/** Parses a request body: JSON (400 when it is not), an object, not nested past real requests. */
export function parseJsonBody(text: string, endpoint: string): Obj {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RequestError(`the request body is not valid JSON: ${(err as Error).message}`, { status: 400, type: 'invalid_request_error', code: 'invalid_json', endpoint });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new RequestError(`the request body must be a JSON object, got ${describeValue(value)}`, { status: 400, type: 'invalid_request_error', code: 'invalid_json', endpoint });
  }
  if (nestingDepth(value, MAX_DOCUMENT_DEPTH) > MAX_DOCUMENT_DEPTH) {
    throw new RequestError(`the request body nests deeper than ${MAX_DOCUMENT_DEPTH} levels`, { status: 400, type: 'invalid_request_error', code: 'invalid_json', endpoint });
  }
  return value as Obj;
}

/** Reads the fields of one object, each through a checker that names the field when it fails. */
class Fields {
  constructor(
    private readonly o: Obj,
    readonly endpoint: string,
    private readonly prefix = '',
  ) {}

  private name(key: string): string {
    return `${this.prefix}${key}`;
  }

  bad(key: string, message: string, code?: string): RequestError {
    return badField(this.endpoint, this.name(key), message, code);
  }

  /** The value, or undefined when absent or null (OpenAI treats null as "not given"). */
  raw(key: string): unknown {
    return Object.hasOwn(this.o, key) && this.o[key] !== null ? this.o[key] : undefined;
  }

  string(key: string, required: true): string;
  string(key: string, required?: false): string | undefined;
  string(key: string, required = false): string | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (required) throw this.bad(key, 'is required', 'missing_required_parameter');
      return undefined;
    }
    if (typeof v !== 'string') throw this.bad(key, `must be a string, got ${describeValue(v)}`, 'invalid_type');
    return v;
  }

  boolean(key: string): boolean | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw this.bad(key, `must be a boolean, got ${describeValue(v)}`, 'invalid_type');
    return v;
  }

  number(key: string, range: { min: number; max: number; minExclusive?: boolean; integer?: boolean }): number | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.bad(key, `must be a number, got ${describeValue(v)}`, 'invalid_type');
    if (range.integer && !Number.isInteger(v)) throw this.bad(key, `must be an integer, got ${v}`, 'invalid_type');
    const low = range.minExclusive ? v <= range.min : v < range.min;
    if (low || v > range.max) throw this.bad(key, `must be in ${range.minExclusive ? '(' : '['}${range.min}, ${range.max}], got ${v}`);
    return v;
  }

  /** Fields OpenAI defines that sftkit does not implement: refused unless absent or at their default. */
  unsupported(key: string, allowed: readonly unknown[], why: string): void {
    const v = this.raw(key);
    if (Array.isArray(v) && v.length === 0) return;
    if (v !== undefined && !allowed.includes(v)) throw this.bad(key, `${why} (got ${describeValue(v)})`, 'unsupported_value');
  }
}

function samplingFields(f: Fields): SamplingRequest {
  const model = f.string('model', true);
  const stream = f.boolean('stream') ?? false;
  let includeUsage = false;
  const so = f.raw('stream_options');
  if (so !== undefined) {
    if (typeof so !== 'object' || Array.isArray(so)) throw f.bad('stream_options', `must be an object, got ${describeValue(so)}`, 'invalid_type');
    includeUsage = new Fields(so as Obj, f.endpoint, 'stream_options.').boolean('include_usage') ?? false;
  }
  const max = f.number('max_tokens', { min: 1, max: 2 ** 31 - 1, integer: true });
  const maxCompletion = f.number('max_completion_tokens', { min: 1, max: 2 ** 31 - 1, integer: true });
  const seed = f.number('seed', { min: -(2 ** 53), max: 2 ** 53, integer: true });
  const topK = f.number('top_k', { min: -1, max: 2 ** 31 - 1, integer: true });
  const req: SamplingRequest = {
    model,
    stream,
    includeUsage,
    stop: stopStrings(f),
    ...defined('maxTokens', max ?? maxCompletion),
    ...defined('temperature', f.number('temperature', { min: 0, max: 2 })),
    ...defined('topP', f.number('top_p', { min: 0, max: 1, minExclusive: true })),
    ...defined('topK', topK === -1 ? 0 : topK),
    ...defined('repetitionPenalty', f.number('repetition_penalty', { min: 0, max: 100, minExclusive: true })),
    ...defined('frequencyPenalty', f.number('frequency_penalty', { min: -2, max: 2 })),
    ...defined('presencePenalty', f.number('presence_penalty', { min: -2, max: 2 })),
    ...defined('seed', seed),
  };
  f.unsupported('n', [1], 'only n = 1 is supported');
  f.unsupported('best_of', [1], 'only best_of = 1 is supported');
  f.unsupported('logprobs', [false, 0], 'logprobs are not supported');
  f.unsupported('top_logprobs', [0], 'logprobs are not supported');
  f.unsupported('echo', [false], 'echo is not supported');
  f.unsupported('suffix', [''], 'suffix is not supported');
  f.unsupported('tools', [], 'tools are not supported');
  f.unsupported('tool_choice', ['none'], 'tools are not supported');
  f.unsupported('functions', [], 'functions are not supported');
  f.unsupported('logit_bias', [], 'logit_bias is not supported');
  const rf = f.raw('response_format');
  if (rf !== undefined && (typeof rf !== 'object' || Array.isArray(rf) || (rf as Obj)['type'] !== 'text')) {
    throw f.bad('response_format', `only {"type": "text"} is supported (got ${describeValue(rf)})`, 'unsupported_value');
  }
  return req;
}

function defined<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };
}

function stopStrings(f: Fields): string[] {
  const v = f.raw('stop');
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list)) throw f.bad('stop', `must be a string or an array of strings, got ${describeValue(v)}`, 'invalid_type');
  if (list.length > MAX_STOP) throw f.bad('stop', `at most ${MAX_STOP} stop sequences, got ${list.length}`);
  list.forEach((s: unknown, i) => {
    if (typeof s !== 'string') throw f.bad(`stop[${i}]`, `must be a string, got ${describeValue(s)}`, 'invalid_type');
    if (s === '' || s.length > MAX_STOP_CHARS) throw f.bad(`stop[${i}]`, `must be 1 to ${MAX_STOP_CHARS} characters long`);
  });
  return list as string[];
}

const ROLES: readonly Role[] = ['system', 'developer', 'user', 'assistant'];

/** A message's text: a string, or an array of {type: "text", text} parts (joined); null only for assistant. */
function messageContent(m: Fields, role: Role): string {
  const v = m.raw('content');
  if (v === undefined) {
    if (role === 'assistant') return '';
    throw m.bad('content', 'is required', 'missing_required_parameter');
  }
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) throw m.bad('content', `must be a string or an array of text parts, got ${describeValue(v)}`, 'invalid_type');
  return v
    .map((part: unknown, i) => {
      if (typeof part !== 'object' || part === null || Array.isArray(part)) throw m.bad(`content[${i}]`, `must be an object, got ${describeValue(part)}`, 'invalid_type');
      const p = new Fields(part as Obj, m.endpoint);
      const type = p.raw('type');
      if (type !== 'text') throw m.bad(`content[${i}].type`, `only "text" parts are supported, got ${describeValue(type)}`, 'unsupported_value');
      const text = (part as Obj)['text'];
      if (typeof text !== 'string') throw m.bad(`content[${i}].text`, `must be a string, got ${describeValue(text)}`, 'invalid_type');
      return text;
    })
    .join('');
}

/** A chat completion request, checked. */
export function parseChatRequest(body: Obj): ChatRequest {
  const f = new Fields(body, CHAT_ENDPOINT);
  const raw = f.raw('messages');
  if (raw === undefined) throw f.bad('messages', 'is required', 'missing_required_parameter');
  if (!Array.isArray(raw)) throw f.bad('messages', `must be an array, got ${describeValue(raw)}`, 'invalid_type');
  if (raw.length === 0) throw f.bad('messages', 'must hold at least one message');
  const messages = raw.map((m: unknown, i): ChatMessage => {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw f.bad(`messages[${i}]`, `must be an object, got ${describeValue(m)}`, 'invalid_type');
    const mf = new Fields(m as Obj, CHAT_ENDPOINT, `messages[${i}].`);
    const role = mf.string('role', true);
    if (!(ROLES as readonly string[]).includes(role)) throw mf.bad('role', `must be one of ${ROLES.join(', ')}, got ${describeValue(role)}`);
    if (mf.raw('tool_calls') !== undefined) throw mf.bad('tool_calls', 'tools are not supported', 'unsupported_value');
    return { role: role as Role, content: messageContent(mf, role as Role) };
  });
  return { kind: 'chat', ...samplingFields(f), messages };
}

/** A (legacy) completion request, checked. */
export function parseCompletionRequest(body: Obj): CompletionRequest {
  const f = new Fields(body, COMPLETIONS_ENDPOINT);
  const v = f.raw('prompt');
  if (v === undefined) throw f.bad('prompt', 'is required', 'missing_required_parameter');
  let prompt: string | number[];
  if (typeof v === 'string') prompt = v;
  else if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'string') prompt = v[0];
  else if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number')) {
    const bad = v.findIndex((x) => !Number.isInteger(x) || x < 0);
    if (bad >= 0) throw f.bad(`prompt[${bad}]`, `token ids must be integers >= 0, got ${describeValue(v[bad])}`);
    prompt = v as number[];
  } else if (Array.isArray(v) && v.length > 1) throw f.bad('prompt', 'only one prompt per request is supported', 'unsupported_value');
  else throw f.bad('prompt', `must be a string, [string] or an array of token ids, got ${describeValue(v)}`, 'invalid_type');
  return { kind: 'completion', ...samplingFields(f), prompt };
}

/** Parses and checks the body of `endpoint`. */
export function parseRequest(endpoint: Endpoint, text: string): ChatRequest | CompletionRequest {
  const body = parseJsonBody(text, endpoint);
  return endpoint === CHAT_ENDPOINT ? parseChatRequest(body) : parseCompletionRequest(body);
}
