// `sftkit serve` driven by the official `openai` client on the demo model: streamed and non-streamed greedy
// replies equal `sftkit predict`'s; 16 concurrent streams of different lengths each equal their solo output
// (up to near-ties); a cancelled stream frees its slot; every bad request gets its OpenAI-shaped error
// (400 naming the field, 401, 404, 405, 413, 429); the CLI refuses an exposed host without a key. LoRA
// adapters served beside the base: adapters.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { APIError } from 'openai';
import { chatPromptIds } from '../../src/data/chat-prompt.ts';
import { promptIds } from '../../src/data/prompt.ts';
import { generationTemplate } from '../../src/data/recorded-template.ts';
import { defaultEosIds, generate, generationText } from '../../src/generate/index.ts';
import { createEngine } from '../../src/serve/engine.ts';
import { type RunningServer, startServer } from '../../src/serve/server.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { loadModel } from '../../src/train/model-io.ts';
import { DEMO, NEAR_TIE, ROOT, margin, startServe } from './helpers.ts';

const tok = Tokenizer.fromDir(DEMO);
const model = loadModel(DEMO);
const eos = defaultEosIds(model, tok);
const template = generationTemplate(undefined, DEMO);
const engine = createEngine(model, tok, { modelId: 'demo', template, slots: 16, maxQueue: 16 });
let server: RunningServer;
let client: OpenAI;

test.before(async () => {
  server = await startServer(engine, { host: '127.0.0.1', port: 0, apiKey: null });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
test.after(async () => {
  await server.close();
  model.release();
});

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SFTKIT_FROM_SOURCE: '1', SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function chatStream(messages: OpenAI.ChatCompletionMessageParam[], o: { max_tokens: number; stop?: string[] }): Promise<{ text: string; finish: string | null; chunks: number }> {
  const stream = await client.chat.completions.create({ model: 'demo', messages, temperature: 0, stream: true, ...o });
  let text = '';
  let finish: string | null = null;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return { text, finish, chunks };
}

const PROMPTS = ['The capital of France is', 'Tell me about the economy.', 'What did Congress do this year?'];

test('greedy chat replies, streamed and not, equal `sftkit predict` on the same prompts', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-serve-'));
  try {
    writeFileSync(join(tmp, 'prompts.txt'), PROMPTS.join('\n'));
    const r = sftkit(['run', '--run_mode', 'predict', '--load_checkpoint', DEMO, '--predict_data', join(tmp, 'prompts.txt'), '--max_new_tokens', '24', '--output_dir', join(tmp, 'out')]);
    assert.equal(r.status, 0, r.stderr);
    const predicted = readFileSync(join(tmp, 'out', 'predict_results.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { output: string }).output);
    for (const [i, p] of PROMPTS.entries()) {
      const messages = [{ role: 'user' as const, content: p }];
      const whole = await client.chat.completions.create({ model: 'demo', messages, temperature: 0, max_tokens: 24 });
      assert.equal(whole.choices[0]?.message.content, predicted[i], `prompt ${i}`);
      assert.equal(whole.usage?.prompt_tokens, chatPromptIds(tok, [], p, { template: 'vicuna', system: null }).length);
      const streamed = await chatStream(messages, { max_tokens: 24 });
      assert.equal(streamed.text, predicted[i], `prompt ${i} streamed`);
      assert.equal(streamed.finish, whole.choices[0]?.finish_reason);
      assert.ok(streamed.chunks > 3, 'the reply arrives in pieces');
    }
    // /v1/completions: raw text after BOS, as predict's `none` template.
    const ids = promptIds(tok, 'none', 'Once upon a time');
    const want = generationText(tok, generate(model, [ids], { maxNewTokens: 16, eosTokenIds: eos })[0]!);
    const c = await client.completions.create({ model: 'demo', prompt: 'Once upon a time', temperature: 0, max_tokens: 16 });
    assert.equal(c.choices[0]?.text, want);
    assert.equal(c.usage?.prompt_tokens, ids.length);
    let streamed = '';
    for await (const chunk of await client.completions.create({ model: 'demo', prompt: 'Once upon a time', temperature: 0, max_tokens: 16, stream: true })) streamed += chunk.choices[0]?.text ?? '';
    assert.equal(streamed, want);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('usage, finish_reason, stop strings and include_usage are reported as OpenAI reports them', async () => {
  const messages = [{ role: 'user' as const, content: 'Tell me about the economy.' }];
  const five = await client.chat.completions.create({ model: 'demo', messages, temperature: 0, max_tokens: 5 });
  assert.equal(five.choices[0]?.finish_reason, 'length');
  assert.equal(five.usage?.completion_tokens, 5);
  assert.equal(five.usage?.total_tokens, (five.usage?.prompt_tokens ?? 0) + 5);
  assert.equal(five.object, 'chat.completion');
  const long = (await client.chat.completions.create({ model: 'demo', messages, temperature: 0, max_tokens: 24 })).choices[0]?.message.content ?? '';
  const words = long.split(' ').filter((w) => w.length > 2);
  const stopWord = words[Math.floor(words.length / 2)] as string;
  const cut = long.slice(0, long.indexOf(stopWord));
  const stopped = await client.chat.completions.create({ model: 'demo', messages, temperature: 0, max_tokens: 24, stop: [stopWord] });
  assert.equal(stopped.choices[0]?.message.content, cut);
  assert.equal(stopped.choices[0]?.finish_reason, 'stop');
  const streamed = await chatStream(messages, { max_tokens: 24, stop: [stopWord] });
  assert.deepEqual([streamed.text, streamed.finish], [cut, 'stop']);
  const withUsage = await client.chat.completions.create({ model: 'demo', messages, temperature: 0, max_tokens: 5, stream: true, stream_options: { include_usage: true } });
  let usage: OpenAI.CompletionUsage | null | undefined = null;
  for await (const c of withUsage) if (c.usage) usage = c.usage;
  assert.equal(usage?.completion_tokens, 5);
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['demo']);
});

test('16 concurrent streams of different lengths each equal their solo output', async () => {
  const prompts = Array.from({ length: 16 }, (_, i) => `${['Tell me about', 'What is', 'Describe', 'Explain'][i % 4]} ${['the army', 'taxes', 'the railroads', 'farming', 'trade', 'the navy', 'schools', 'the mail'][i % 8]}${'.'.repeat(1 + (i % 3))}`);
  const lengths = prompts.map((_, i) => 8 + ((i * 7) % 25));
  const solo = prompts.map((p, i) => {
    const ids = chatPromptIds(tok, [], p, { template: 'vicuna', system: null });
    const g = generate(model, [ids], { maxNewTokens: lengths[i] as number, eosTokenIds: eos })[0]!;
    return { ids, tokens: g.tokens, text: generationText(tok, g) };
  });
  const before = engine.scheduler.stats;
  const got = await Promise.all(prompts.map((p, i) => chatStream([{ role: 'user', content: p }], { max_tokens: lengths[i] as number })));
  const after = engine.scheduler.stats;
  const meanBatch = (after.decodedRows - before.decodedRows) / (after.steps - before.steps);
  assert.ok(meanBatch > 4, `mean batch ${meanBatch.toFixed(1)}: the streams did not share decode steps`);
  got.forEach((g, i) => {
    const s = solo[i]!;
    if (g.text === s.text) return;
    // Only a near-tie in the solo decoding may make a batched stream part from it.
    const margins = s.tokens.map((_, j) => margin(model, [...s.ids, ...s.tokens.slice(0, j)]));
    assert.ok(Math.min(...margins) < NEAR_TIE, `stream ${i}: ${JSON.stringify(g.text)} vs alone ${JSON.stringify(s.text)} with no near-tie (smallest margin ${Math.min(...margins).toExponential(2)})`);
  });
});

test('a cancelled stream frees its slot at once', async () => {
  await engine.scheduler.idle();
  const { steps, cancelled } = engine.scheduler.stats;
  const stream = await client.completions.create({ model: 'demo', prompt: 'Once upon a time', temperature: 0.8, seed: 1, max_tokens: 200, stream: true });
  let n = 0;
  for await (const _ of stream) if (++n === 3) break; // breaking out aborts the request
  const t0 = Date.now();
  while (engine.scheduler.stats.active > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
  assert.equal(engine.scheduler.stats.active, 0);
  const health = (await (await fetch(`${server.url}/health`)).json()) as { active: number; queued: number };
  assert.deepEqual([health.active, health.queued], [0, 0]);
  assert.equal(engine.scheduler.stats.cancelled, cancelled + 1, 'the sequence ended by cancellation');
  assert.ok(engine.scheduler.stats.steps - steps < 100, `the cancelled sequence ran ${engine.scheduler.stats.steps - steps} steps`);
});

async function apiError(p: Promise<unknown>): Promise<APIError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof APIError) return e;
    throw e;
  }
  assert.fail('the request succeeded');
}

test('bad requests get OpenAI-shaped errors: 400 naming the field, 404, 405, 413', async () => {
  const messages = [{ role: 'user' as const, content: 'hi' }];
  const raw = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"model": "demo", "messages": [' });
  assert.equal(raw.status, 400);
  const body = (await raw.json()) as { error: { type: string; code: string; message: string } };
  assert.deepEqual([body.error.type, body.error.code], ['invalid_request_error', 'invalid_json']);
  const cases: [Record<string, unknown>, string][] = [
    [{ temperature: 'hot' }, 'temperature'],
    [{ max_tokens: 2.5 }, 'max_tokens'],
    [{ top_p: 0 }, 'top_p'],
    [{ stop: [1] }, 'stop[0]'],
    [{ n: 2 }, 'n'],
    [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] }, 'messages[1].role'],
    [{ messages: [] }, 'messages'],
    [{ max_tokens: 10_000 }, 'max_tokens'],
  ];
  for (const [patch, param] of cases) {
    const e = await apiError(client.chat.completions.create({ model: 'demo', messages, ...patch } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming));
    assert.ok(e instanceof OpenAI.BadRequestError, `${JSON.stringify(patch)}: ${e.status}`);
    assert.equal(e.param, param, JSON.stringify(patch));
    assert.equal(e.type, 'invalid_request_error');
  }
  const completionBad = await apiError(client.completions.create({ model: 'demo', prompt: [1, 99999] }));
  assert.deepEqual([completionBad.status, completionBad.param], [400, 'prompt[1]']);
  const unknown = await apiError(client.chat.completions.create({ model: 'gpt-4', messages }));
  assert.ok(unknown instanceof OpenAI.NotFoundError);
  assert.deepEqual([unknown.param, unknown.code], ['model', 'model_not_found']);
  const long = 'the people of the united states '.repeat(60);
  const oversize = await apiError(client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: long }] }));
  assert.deepEqual([oversize.status, oversize.code, oversize.param], [413, 'context_length_exceeded', 'messages']);
  const oversizeStream = await apiError(client.completions.create({ model: 'demo', prompt: long, stream: true }));
  assert.equal(oversizeStream.status, 413);
  const route = await fetch(`${server.url}/v1/embeddings`, { method: 'POST', body: '{}' });
  assert.equal(route.status, 404);
  assert.equal(((await route.json()) as { error: { code: string } }).error.code, 'unknown_url');
  assert.equal((await fetch(`${server.url}/v1/chat/completions`)).status, 405);
  // Nothing went wrong inside: the server still answers.
  assert.equal((await client.chat.completions.create({ model: 'demo', messages, temperature: 0, max_tokens: 2 })).choices.length, 1);
});

test('an API key is required when set (401), a full queue answers 429, an oversize body 413', async () => {
  const small = createEngine(model, tok, { modelId: 'demo', template, slots: 1, maxQueue: 0 });
  const guarded = await startServer(small, { host: '127.0.0.1', port: 0, apiKey: 'sk-test-key', maxBodyBytes: 4096 });
  try {
    const base = `${guarded.url}/v1`;
    const none = await fetch(`${base}/models`);
    assert.equal(none.status, 401);
    assert.equal(((await none.json()) as { error: { code: string } }).error.code, 'invalid_api_key');
    const wrong = await apiError(new OpenAI({ baseURL: base, apiKey: 'sk-wrong', maxRetries: 0 }).models.list());
    assert.ok(wrong instanceof OpenAI.AuthenticationError);
    assert.equal((await fetch(`${guarded.url}/health`)).status, 200, '/health needs no key');
    const ok = new OpenAI({ baseURL: base, apiKey: 'sk-test-key', maxRetries: 0 });
    const first = await ok.completions.create({ model: 'demo', prompt: 'Once upon a time', max_tokens: 200, temperature: 0.8, seed: 3, stream: true });
    const it = first[Symbol.asyncIterator]();
    await it.next();
    const busy = await apiError(ok.completions.create({ model: 'demo', prompt: 'Hello', max_tokens: 2 }));
    assert.ok(busy instanceof OpenAI.RateLimitError);
    assert.equal(busy.code, 'rate_limit_exceeded');
    await it.return?.();
    const big = await fetch(`${base}/completions`, { method: 'POST', headers: { Authorization: 'Bearer sk-test-key' }, body: JSON.stringify({ model: 'demo', prompt: 'x'.repeat(5000) }) });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { error: { code: string } }).error.code, 'request_too_large');
  } finally {
    await guarded.close();
  }
});

test('sftkit serve: loopback by default, another host needs --api_key, a malformed --adapter is refused', async () => {
  const exposed = sftkit(['serve', '--load_checkpoint', DEMO, '--host', '0.0.0.0', '--port', '0']);
  assert.notEqual(exposed.status, 0);
  assert.match(exposed.stderr, /--api_key/);
  const adapter = sftkit(['serve', '--load_checkpoint', DEMO, '--adapter', '/tmp/adapter']);
  assert.notEqual(adapter.status, 0);
  assert.match(adapter.stderr, /expected NAME=DIR/);
  const server = await startServe(['--load_checkpoint', DEMO, '--served_model_name', 'tiny']);
  const url = server.url;
  let code: number | null = null;
  try {
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    assert.deepEqual((await c.models.list()).data.map((m) => m.id), ['tiny']);
    const r = await c.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'The capital of France is' }], temperature: 0, max_tokens: 4 });
    assert.equal(r.usage?.completion_tokens, 4);
  } finally {
    code = await server.stop();
  }
  assert.equal(code, 0);
});
