// The OpenAI-compatible HTTP layer on Node's own `http`: GET /health and /v1/models, POST /v1/chat/completions
// and /v1/completions, streamed as server-sent events (`data: {chunk}` ... `data: [DONE]`) or answered whole.
// Every failure is an OpenAI-shaped JSON error with its status; a client that goes away cancels its sequence.
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GenerationTemplate } from '../data/recorded-template.ts';
import { SftkitError } from '../errors.ts';
import { resolveSampling } from '../generate/index.ts';
import type { CausalLM } from '../models/model.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { RequestError, badField } from './errors.ts';
import { chatRequestIds, completionRequestIds } from './prompt.ts';
import type { ModelRegistry, ServedModel } from './registry.ts';
import { CHAT_ENDPOINT, COMPLETIONS_ENDPOINT, type ChatRequest, type CompletionRequest, type Endpoint, parseRequest } from './request.ts';
import type { BatchScheduler, FinishReason, Sequence } from './scheduler.ts';
import { TextStream } from './text-stream.ts';

/** What requests are answered with: the loaded model, its tokenizer and template, and the batch scheduler. */
export interface ServeEngine {
  model: CausalLM;
  tokenizer: Tokenizer;
  template: GenerationTemplate;
  registry: ModelRegistry;
  scheduler: BatchScheduler;
  eosIds: readonly number[];
}

export interface ServerOptions {
  host: string;
  port: number;
  /** Bearer key every /v1 request must carry; null: none needed (loopback only, checked by the CLI). */
  apiKey: string | null;
  /** Largest request body accepted (413 past it). */
  maxBodyBytes?: number;
  /** One line per request and per notable event. */
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 4 * 1024 * 1024;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, err: RequestError): void {
  if (res.headersSent) {
    // Mid-stream: an error event, then the end (the OpenAI client raises it).
    if (!res.writableEnded) res.end(`data: ${JSON.stringify(err.body())}\n\n`);
    return;
  }
  sendJson(res, err.status, err.body());
}

/** Any error as a RequestError: typed ones keep their status; anything else is a 500 that names no internals. */
function asRequestError(err: unknown): RequestError {
  if (err instanceof RequestError) return err;
  if (err instanceof SftkitError) return new RequestError(err.message, { status: 400, type: 'invalid_request_error', param: err.where ?? null, code: 'invalid_value' });
  return new RequestError('the server failed to generate a response', { status: 500, type: 'server_error', code: 'internal_error' });
}

/** Reads the body up to `limit` bytes; past it, a 413 (the rest is drained, not kept). */
function readBody(req: IncomingMessage, limit: number, endpoint: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > limit) {
        over = true;
        reject(new RequestError(`the request body exceeds ${limit} bytes`, { status: 413, type: 'invalid_request_error', code: 'request_too_large', endpoint }));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
    // A client that goes away mid-upload: nothing is left to answer.
    req.on('close', () => {
      if (!req.complete) reject(new RequestError('the client closed the connection before sending the whole body', { status: 400, type: 'invalid_request_error', code: 'incomplete_body', endpoint }));
    });
  });
}

function keyMatches(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!m) return false;
  const a = Buffer.from((m[1] as string).trim());
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

interface Prepared {
  entry: ServedModel;
  promptIds: number[];
  maxTokens: number;
}

/** Prompt ids and token budget of a checked request: 413 when the prompt leaves no room in the context. */
function prepare(engine: ServeEngine, req: ChatRequest | CompletionRequest, endpoint: Endpoint): Prepared {
  const entry = engine.registry.resolve(req.model, endpoint);
  const ids = req.kind === 'chat' ? chatRequestIds(engine.tokenizer, engine.template, req.messages) : completionRequestIds(engine.tokenizer, engine.model.config.vocabSize, req.prompt);
  const context = engine.scheduler.opts.context;
  if (ids.length === 0) throw badField(endpoint, req.kind === 'chat' ? 'messages' : 'prompt', 'the prompt encodes to no tokens');
  if (ids.length >= context) {
    throw new RequestError(`the prompt is ${ids.length} tokens; this model's context is ${context} tokens, leaving no room to generate`, {
      status: 413,
      type: 'invalid_request_error',
      param: req.kind === 'chat' ? 'messages' : 'prompt',
      code: 'context_length_exceeded',
      endpoint,
    });
  }
  const room = context - ids.length;
  if (req.maxTokens !== undefined && req.maxTokens > room) {
    throw badField(endpoint, 'max_tokens', `the prompt (${ids.length} tokens) plus max_tokens ${req.maxTokens} exceed the context of ${context} tokens`, 'context_length_exceeded');
  }
  return { entry, promptIds: ids, maxTokens: req.maxTokens ?? room };
}

function finishReason(r: FinishReason): 'stop' | 'length' {
  return r === 'length' ? 'length' : 'stop';
}

/** Serves one generation request: queues the sequence and answers it streamed or whole. */
function generateResponse(engine: ServeEngine, req: ChatRequest | CompletionRequest, endpoint: Endpoint, res: ServerResponse): void {
  const p = prepare(engine, req, endpoint);
  const chat = req.kind === 'chat';
  const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
  const created = Math.floor(Date.now() / 1000);
  const temperature = req.temperature ?? 1;
  const sampling = resolveSampling({
    doSample: temperature > 0,
    temperature: temperature > 0 ? temperature : 1,
    topK: req.topK ?? 0,
    topP: req.topP ?? 1,
    repetitionPenalty: req.repetitionPenalty ?? 1,
    frequencyPenalty: req.frequencyPenalty ?? 0,
    presencePenalty: req.presencePenalty ?? 0,
  });
  const eos = new Set(engine.eosIds);
  const text = new TextStream(engine.tokenizer, req.stop);
  const usage = (seq: Sequence): { prompt_tokens: number; completion_tokens: number; total_tokens: number } => ({
    prompt_tokens: p.promptIds.length,
    completion_tokens: seq.tokens.length,
    total_tokens: p.promptIds.length + seq.tokens.length,
  });
  const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}): string =>
    `data: ${JSON.stringify({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model: p.entry.id, choices: [{ index: 0, ...choice }], ...extra })}\n\n`;
  const piece = (delta: string, finish: string | null): Record<string, unknown> =>
    chat ? { delta: finish === null && delta === '' ? { role: 'assistant', content: '' } : delta === '' ? {} : { content: delta }, logprobs: null, finish_reason: finish } : { text: delta, logprobs: null, finish_reason: finish };

  let seq: Sequence | null = null;
  const onToken = (tokenId: number): boolean => {
    if (eos.has(tokenId)) return false;
    const delta = text.push(tokenId);
    if (req.stream && delta !== '' && !res.writableEnded) res.write(chunk(piece(delta, null)));
    return text.hitStop;
  };
  const onFinish = (reason: FinishReason, error?: Error): void => {
    if (reason === 'cancelled' || res.writableEnded) return;
    if (reason === 'error') {
      sendError(res, asRequestError(error));
      return;
    }
    const tail = text.finish();
    const finish = finishReason(reason);
    const s = seq as Sequence;
    if (req.stream) {
      if (tail !== '') res.write(chunk(piece(tail, null)));
      res.write(chunk(piece('', finish)));
      if (req.includeUsage) res.write(`data: ${JSON.stringify({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model: p.entry.id, choices: [], usage: usage(s) })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    const choice = chat
      ? { index: 0, message: { role: 'assistant', content: text.text }, logprobs: null, finish_reason: finish }
      : { index: 0, text: text.text, logprobs: null, finish_reason: finish };
    sendJson(res, 200, { id, object: chat ? 'chat.completion' : 'text_completion', created, model: p.entry.id, choices: [choice], usage: usage(s) });
  };
  seq = engine.scheduler.submit({
    model: p.entry,
    promptIds: p.promptIds,
    maxTokens: p.maxTokens,
    sampling,
    seed: req.seed ?? randomInt(2 ** 31),
    eosIds: eos,
    onToken,
    onFinish,
  });
  if (req.stream) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    // Chat streams open with the assistant's role, as OpenAI's do.
    if (chat) res.write(chunk(piece('', null)));
  }
  const submitted = seq;
  // The client went away before the answer ended: free its row.
  res.on('close', () => {
    if (!res.writableFinished) engine.scheduler.cancel(submitted);
  });
}

/**
 * Answers one request body already read, on `endpoint`, with `engine`: what the HTTP layer below does after its
 * routing, key and body checks, for a server that routes itself (`sftkit ui` mounts its chat on this). Errors
 * are answered as OpenAI-shaped JSON, never thrown.
 */
export function answer(engine: ServeEngine, endpoint: Endpoint, body: string, res: ServerResponse): void {
  try {
    generateResponse(engine, parseRequest(endpoint, body), endpoint, res);
  } catch (err) {
    sendError(res, asRequestError(err));
  }
}

async function handle(engine: ServeEngine, opts: ServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0] as string;
  const method = req.method ?? 'GET';
  if (path === '/health') {
    if (method !== 'GET') throw new RequestError(`${method} ${path}: use GET`, { status: 405, type: 'invalid_request_error', code: 'method_not_allowed' });
    sendJson(res, 200, { status: 'ok', ...engine.scheduler.stats });
    return;
  }
  const routes: Record<string, string> = { '/v1/models': 'GET', [CHAT_ENDPOINT]: 'POST', [COMPLETIONS_ENDPOINT]: 'POST' };
  const want = routes[path];
  if (want === undefined) throw new RequestError(`no route ${method} ${path}`, { status: 404, type: 'invalid_request_error', code: 'unknown_url' });
  if (opts.apiKey !== null && !keyMatches(req.headers.authorization, opts.apiKey)) {
    throw new RequestError('missing or incorrect API key: send "Authorization: Bearer <key>"', { status: 401, type: 'authentication_error', code: 'invalid_api_key' });
  }
  if (method !== want) throw new RequestError(`${method} ${path}: use ${want}`, { status: 405, type: 'invalid_request_error', code: 'method_not_allowed' });
  if (path === '/v1/models') {
    sendJson(res, 200, { object: 'list', data: engine.registry.list().map((m) => ({ id: m.id, object: 'model', created: m.created, owned_by: 'sftkit' })) });
    return;
  }
  const endpoint = path as Endpoint;
  const body = await readBody(req, opts.maxBodyBytes ?? DEFAULT_MAX_BODY, endpoint);
  generateResponse(engine, parseRequest(endpoint, body), endpoint, res);
}

/** Starts listening; resolves once bound (port 0 picks a free one). */
export function startServer(engine: ServeEngine, opts: ServerOptions): Promise<RunningServer> {
  const server = createServer((req, res) => {
    const t0 = Date.now();
    handle(engine, opts, req, res).catch((err: unknown) => {
      const e = asRequestError(err);
      if (e.status === 500) opts.log?.(`error: ${(err as Error)?.stack ?? String(err)}`);
      sendError(res, e);
      // A refused upload is not read to its end: close the connection rather than drain it.
      if (e.status === 413) res.on('finish', () => req.destroy());
    });
    res.on('finish', () => opts.log?.(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - t0} ms`));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      const port = (server.address() as AddressInfo).port;
      const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
      resolve({
        url: `http://${host}:${port}`,
        port,
        server,
        close: async () => {
          await new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          });
          await engine.scheduler.close();
          engine.registry.release();
        },
      });
    });
  });
}
