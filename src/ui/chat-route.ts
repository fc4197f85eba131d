// POST /v1/chat/completions for the Chat page, answered by `sftkit serve`'s own engine (src/serve: request
// checks, template rendering, the continuous-batching scheduler, server-sent events ending `data: [DONE]`). The
// `model` of a request is a checkpoint folder relative to the dashboard's root; two stay loaded (base and
// fine-tuned side by side), each behind its own serve engine, so a reply streams while the other pages answer.
// A LoRA run's checkpoint answers as its base (which must lie under the root too) with its adapter.
import { existsSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ChatTurn, chatPromptIds } from '../data/chat-prompt.ts';
import { generationTemplate } from '../data/recorded-template.ts';
import { confinedRealPath } from '../formats/confined-file.ts';
import { hasTokenizerFiles, resolveCheckpointDir } from '../formats/checkpoint-dir.ts';
import type { CausalLM } from '../models/model.ts';
import { CHAT_ENDPOINT, type ServeEngine, answer, createEngine } from '../serve/index.ts';
import { Tokenizer } from '../tokenizer/index.ts';
import { loadModelFolder, modelFolderOf } from '../train/lora-io.ts';
import { HttpError, readJsonBody, sendJson } from './http.ts';
import type { UiRoot } from './root-paths.ts';

interface Loaded {
  dir: string;
  model: CausalLM;
  tok: Tokenizer;
  /** Serve engines over this model, one per chat template asked for. */
  engines: Map<string, ServeEngine>;
}

interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The request fields this adapter honours (others are accepted and ignored, as OpenAI servers do). */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  /** sftkit's own: a template name instead of the one recorded with the model's training data. */
  template?: string;
}

/** Models kept loaded: the two of a side-by-side comparison. */
const KEEP_LOADED = 2;
const MAX_TOKENS_LIMIT = 4096;

function checkRequest(body: unknown): ChatRequest {
  if (typeof body !== 'object' || body === null) throw new HttpError(400, 'expected a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b['model'] !== 'string' || b['model'] === '') throw new HttpError(400, "'model' must name a checkpoint folder under the root", 'model');
  if (!Array.isArray(b['messages']) || b['messages'].length === 0) throw new HttpError(400, "'messages' must be a non-empty array", 'messages');
  b['messages'].forEach((m: unknown, i) => {
    const msg = m as Record<string, unknown> | null;
    if (typeof msg !== 'object' || msg === null || !['system', 'user', 'assistant'].includes(msg['role'] as string) || typeof msg['content'] !== 'string') {
      throw new HttpError(400, `messages[${i}] must be {role: system | user | assistant, content: string}`, `messages[${i}]`);
    }
  });
  for (const k of ['max_tokens', 'max_completion_tokens', 'seed']) {
    const v = b[k];
    if (v !== undefined && v !== null && (!Number.isInteger(v) || (v as number) < 0)) throw new HttpError(400, `'${k}' must be a non-negative integer`, k);
  }
  for (const k of ['temperature', 'top_p']) {
    const v = b[k];
    if (v !== undefined && v !== null && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) throw new HttpError(400, `'${k}' must be a non-negative number`, k);
  }
  if (b['template'] !== undefined && b['template'] !== null && typeof b['template'] !== 'string') throw new HttpError(400, "'template' must be a string", 'template');
  return b as unknown as ChatRequest;
}

/** The conversation as sftkit's chat prompt takes it: system, earlier turns, the new user message. */
function turnsOf(messages: readonly ChatMessage[]): { system: string | null; history: ChatTurn[]; message: string } {
  let system: string | null = null;
  const history: ChatTurn[] = [];
  let pending: string | null = null;
  messages.forEach((m, i) => {
    if (m.role === 'system') {
      if (i !== 0) throw new HttpError(400, 'a system message may only come first', `messages[${i}]`);
      system = m.content;
    } else if (m.role === 'user') {
      if (pending !== null) throw new HttpError(400, 'two user messages in a row: user and assistant messages alternate', `messages[${i}]`);
      pending = m.content;
    } else {
      if (pending === null) throw new HttpError(400, 'an assistant message must follow a user message', `messages[${i}]`);
      history.push({ user: pending, assistant: m.content });
      pending = null;
    }
  });
  if (pending === null) throw new HttpError(400, 'the last message must be the user\'s', 'messages');
  return { system, history, message: pending };
}

export class ChatRoute {
  private readonly loaded: Loaded[] = [];

  constructor(private readonly root: UiRoot) {}

  /** The checkpoint folder of `model` (a checkpoint, a training checkpoint, or a checkpoint/ root), loaded once. */
  private load(model: string): Loaded {
    const path = this.root.resolve(model);
    let dir = existsSync(join(path, 'config.json')) ? path : resolveCheckpointDir(path);
    dir = this.root.resolve(this.root.relative(dir));
    const hit = this.loaded.find((l) => l.dir === dir);
    if (hit) return hit;
    // A LoRA run's adapter-only checkpoint chats as its recorded base with its adapter; the base too must lie under the root.
    const folder = modelFolderOf(dir);
    const within = relative(this.root.path, realpathSync(folder.weightsDir));
    if (within.startsWith('..') || isAbsolute(within)) {
      throw new HttpError(422, `${model}: a LoRA checkpoint whose base model ${folder.weightsDir} lies outside the dashboard's root; start the dashboard with a --root that holds both`, 'model');
    }
    for (const at of new Set([folder.weightsDir, folder.tokenizerDir])) {
      for (const f of ['config.json', 'tokenizer.model', 'tokenizer.json', 'tokenizer_config.json']) {
        if (existsSync(join(at, f))) confinedRealPath(join(at, f), { root: this.root.path });
      }
    }
    if (!hasTokenizerFiles(folder.tokenizerDir)) throw new HttpError(422, `${model}: the checkpoint has no tokenizer files`, 'model');
    const tok = Tokenizer.fromDir(folder.tokenizerDir);
    const loaded: Loaded = { dir, model: loadModelFolder(folder), tok, engines: new Map() };
    this.loaded.push(loaded);
    while (this.loaded.length > KEEP_LOADED) void release(this.loaded.shift() as Loaded);
    return loaded;
  }

  /** The prompt a request turns into: template, rendered text and ids (the page's "show prompt"). */
  prompt(req: ChatRequest): { loaded: Loaded; ids: number[]; template: string; templateSource: string; text: string } {
    const loaded = this.load(req.model);
    const tpl = generationTemplate(req.template ?? undefined, loaded.dir);
    const { system, history, message } = turnsOf(req.messages);
    const ids = chatPromptIds(loaded.tok, history, message, { template: tpl.template, system, alpacaPrompts: tpl.alpacaPrompts });
    return { loaded, ids, template: tpl.template, templateSource: tpl.source, text: loaded.tok.decode(ids, { skipSpecial: false }) };
  }

  async handlePrompt(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = checkRequest(await readJsonBody(req));
    const p = this.prompt(body);
    sendJson(res, 200, { model: body.model, template: p.template, template_source: p.templateSource, text: p.text, ids: p.ids, pieces: p.ids.map((id) => p.loaded.tok.idToPiece(id)) });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = checkRequest(await readJsonBody(req));
    const loaded = this.load(body.model);
    // The template is fixed per engine: one engine per template a request names (the recorded one by default).
    const tpl = generationTemplate(body.template ?? undefined, loaded.dir);
    const key = `${tpl.template}\0${tpl.alpacaPrompts}`;
    let engine = loaded.engines.get(key);
    if (!engine) {
      engine = createEngine(loaded.model, loaded.tok, { modelId: this.root.relative(loaded.dir) || '.', template: tpl, slots: 4, maxQueue: 16 });
      loaded.engines.set(key, engine);
    }
    const maxTokens = Math.min(MAX_TOKENS_LIMIT, body.max_completion_tokens ?? body.max_tokens ?? 128);
    if (maxTokens < 1) throw new HttpError(400, "'max_tokens' must be at least 1", 'max_tokens');
    // The page's defaults: greedy (temperature 0) and 128 tokens; the rest as the request says.
    const forwarded: Record<string, unknown> = { ...(body as unknown as Record<string, unknown>), model: engine.registry.list()[0]!.id, temperature: body.temperature ?? 0, max_tokens: maxTokens };
    delete forwarded['template'];
    delete forwarded['max_completion_tokens'];
    answer(engine, CHAT_ENDPOINT, JSON.stringify(forwarded), res);
  }

  close(): void {
    for (const l of this.loaded.splice(0)) void release(l);
  }
}

/** Stops a model's engines (their KV caches freed), then the model. */
async function release(l: Loaded): Promise<void> {
  for (const e of l.engines.values()) await e.scheduler.close();
  l.model.release();
}
