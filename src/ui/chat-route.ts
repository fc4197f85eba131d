// POST /v1/chat/completions for the Chat page, in the OpenAI API's shape (streamed as server-sent events ending
// `data: [DONE]`, or one JSON answer): a thin adapter over sftkit's own generation (the loading, template and
// prompt code of `sftkit chat`), kept in this one file so that `sftkit serve`'s handler can replace it. The
// `model` of a request is a checkpoint folder relative to the dashboard's root; two stay loaded (base and
// fine-tuned side by side). Generation runs on the server's thread, token by token: each chunk is written to
// the socket and flushed as its token is chosen.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ChatTurn, chatPromptIds } from '../data/chat-prompt.ts';
import { generationTemplate } from '../data/recorded-template.ts';
import { confinedRealPath } from '../formats/confined-file.ts';
import { resolveCheckpointDir } from '../formats/checkpoint-dir.ts';
import { defaultEosIds, generateStream } from '../generate/index.ts';
import type { CausalLM } from '../models/model.ts';
import { Tokenizer } from '../tokenizer/index.ts';
import { loadModel } from '../train/model-io.ts';
import { HttpError, readJsonBody, sendJson } from './http.ts';
import type { UiRoot } from './root-paths.ts';

interface Loaded {
  dir: string;
  model: CausalLM;
  tok: Tokenizer;
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

/** Thrown from the token callback to stop generating for a client that has gone. */
class ClientGone extends Error {}

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
    for (const f of ['config.json', 'tokenizer.model', 'tokenizer.json', 'tokenizer_config.json']) {
      if (existsSync(join(dir, f))) confinedRealPath(join(dir, f), { root: this.root.path });
    }
    if (!['tokenizer.model', 'tokenizer.json'].some((f) => existsSync(join(dir, f)))) throw new HttpError(422, `${model}: the checkpoint has no tokenizer files`, 'model');
    const tok = Tokenizer.fromDir(dir);
    const loaded: Loaded = { dir, model: loadModel(dir), tok };
    this.loaded.push(loaded);
    while (this.loaded.length > KEEP_LOADED) this.loaded.shift()?.model.release();
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
    const p = this.prompt(body);
    const { model, tok } = p.loaded;
    const maxTokens = Math.min(MAX_TOKENS_LIMIT, body.max_completion_tokens ?? body.max_tokens ?? 128);
    if (maxTokens < 1) throw new HttpError(400, "'max_tokens' must be at least 1", 'max_tokens');
    const temperature = body.temperature ?? 0;
    const eos = defaultEosIds(model, tok);
    const eosSet = new Set(eos);
    const opts = {
      maxNewTokens: maxTokens,
      doSample: temperature > 0,
      ...(temperature > 0 ? { temperature } : {}),
      ...(body.top_p !== undefined && body.top_p > 0 && body.top_p <= 1 ? { topP: body.top_p } : {}),
      eosTokenIds: eos,
      seed: body.seed ?? 0,
    };
    const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: body.model };
    const usage = (completion: number) => ({ prompt_tokens: p.ids.length, completion_tokens: completion, total_tokens: p.ids.length + completion });
    if (body.stream !== true) {
      const ids: number[] = [];
      const g = generateStream(model, p.ids, opts, (t) => void (eosSet.has(t) || ids.push(t)));
      const text = tok.decode(ids, { skipSpecial: true });
      sendJson(res, 200, { ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: g.finishReason === 'eos' ? 'stop' : 'length' }], usage: usage(g.tokens.length) });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const send = (delta: Record<string, unknown>, finish: string | null): void => {
      res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`);
      // Node corks the socket for a response's writes until the next tick, which a generation loop never
      // yields to: uncork so that each chunk leaves now (uncorking an uncorked socket does nothing).
      res.socket?.uncork();
    };
    send({ role: 'assistant', content: '' }, null);
    // Text goes out as it becomes whole: the reply so far is decoded each token, and a trailing U+FFFD (a
    // character split across byte tokens) waits for the token that completes it.
    const ids: number[] = [];
    let sent = '';
    let g;
    try {
      g = generateStream(model, p.ids, opts, (t) => {
        // A client that went away (a failed write destroys the socket at once) stops the generation.
        if (res.destroyed || res.socket?.destroyed === true) throw new ClientGone();
        if (eosSet.has(t)) return;
        ids.push(t);
        const text = tok.decode(ids, { skipSpecial: true });
        if (text.endsWith('\uFFFD') || text.length === sent.length) return;
        send({ content: text.slice(sent.length) }, null);
        sent = text;
      });
    } catch (err) {
      if (err instanceof ClientGone) return;
      throw err;
    }
    const text = tok.decode(ids, { skipSpecial: true });
    if (text.length > sent.length) send({ content: text.slice(sent.length) }, null);
    res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: g.finishReason === 'eos' ? 'stop' : 'length' }], usage: usage(g.tokens.length) })}\n\n`);
    res.end('data: [DONE]\n\n');
  }

  close(): void {
    for (const l of this.loaded.splice(0)) l.model.release();
  }
}
