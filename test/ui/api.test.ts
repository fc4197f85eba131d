// The dashboard's HTTP API with plain requests: runs and metrics read from an offset, token records and their
// trained-token counts against the labels file, the New-run form's validation, chat in OpenAI's shape (streamed
// and not), and the security rules: paths confined to the root, loopback only without a key, Host and Origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chatPromptIds } from '../../src/data/chat-prompt.ts';
import { ConfigError } from '../../src/errors.ts';
import { defaultEosIds, generate, generationText } from '../../src/generate/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { loadModel } from '../../src/train/model-io.ts';
import { type UiServer, startUiServer } from '../../src/ui/server.ts';
import { DEMO, makeUiRoot, trainedCountsFromFile } from './fixture.ts';

let root: string;
let outside: string;
let ui: UiServer;

before(async () => {
  root = await makeUiRoot();
  // Things outside the root that links inside it point at.
  outside = mkdtempSync(join(tmpdir(), 'sftkit-ui-outside-'));
  writeFileSync(join(outside, 'metrics.jsonl'), '{"type":"train","step":1,"loss":9}\n');
  writeFileSync(join(outside, 'secret.png'), 'not for you');
  symlinkSync(outside, join(root, 'runs', 'escape'));
  mkdirSync(join(root, 'runs', 'linked'));
  symlinkSync(join(outside, 'metrics.jsonl'), join(root, 'runs', 'linked', 'metrics.jsonl'));
  symlinkSync(join(outside, 'secret.png'), join(root, 'runs', 'done', 'link.png'));
  ui = await startUiServer({ root, port: 0 });
});

after(async () => {
  await ui?.close();
  if (root) rmSync(root, { recursive: true, force: true });
  if (outside) rmSync(outside, { recursive: true, force: true });
});

async function get(path: string): Promise<{ status: number; json: any }> {
  const r = await fetch(ui.url + path);
  return { status: r.status, json: await r.json().catch(() => null) };
}

async function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(ui.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json().catch(() => null) };
}

/** A request with the path sent exactly as given (fetch would normalise dot segments) and chosen headers. */
function raw(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: string }> {
  const url = new URL(ui.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('runs: listed with their checkpoints; detail has eval results and report; metrics read on from an offset', async () => {
  const { json } = await get('/api/runs');
  const ids = json.runs.map((r: { id: string }) => r.id);
  assert.ok(ids.includes('runs/done'), ids.join(', '));
  // A symlinked folder is not walked into; a metrics.jsonl linking out is listed but never read.
  assert.ok(!ids.includes('runs/escape'));
  const done = json.runs.find((r: { id: string }) => r.id === 'runs/done');
  assert.equal(done.checkpoints, 1);
  const d = (await get('/api/runs/detail?run=runs/done')).json;
  assert.deepEqual(d.checkpoints, [{ name: 'demo-1_6', path: 'runs/done/checkpoint/demo-1_6', step: 6, latest: true }]);
  assert.deepEqual(d.evalResults, { loss: 1.9, perplexity: 6.69, tokens: 100 });
  assert.match(d.report, /loss went down/);

  const first = (await get('/api/runs/metrics?run=runs/done&offset=0')).json;
  assert.equal(first.points.length, 8);
  assert.deepEqual(first.points.filter((p: { type: string }) => p.type === 'eval').map((p: { step: number }) => p.step), [3, 6]);
  assert.equal(first.offset, first.size);
  // A line being written (no newline yet) waits; once complete, only it comes back.
  appendFileSync(join(root, 'runs', 'done', 'metrics.jsonl'), '{"type":"train","step":7,"total_steps":8,"loss":1.2');
  const partial = (await get(`/api/runs/metrics?run=runs/done&offset=${first.offset}`)).json;
  assert.deepEqual([partial.points, partial.offset], [[], first.offset]);
  appendFileSync(join(root, 'runs', 'done', 'metrics.jsonl'), ',"lr":0.0001}\n');
  const next = (await get(`/api/runs/metrics?run=runs/done&offset=${first.offset}`)).json;
  assert.deepEqual(next.points, [{ type: 'train', step: 7, total_steps: 8, loss: 1.2, lr: 0.0001 }]);
  // An offset past the end (the file was replaced) starts over.
  const reset = (await get(`/api/runs/metrics?run=runs/done&offset=${next.offset + 100}`)).json;
  assert.equal(reset.reset, true);
  assert.equal(reset.points.length, 9);
});

test('records: per-row trained-token counts equal the labels file; a row drawn token by token; search by text', async () => {
  const counts = trainedCountsFromFile(join(root, 'records'));
  const list = (await get(`/api/records/rows?dir=records&from=0&count=200`)).json;
  assert.equal(list.rows, counts.length);
  assert.equal(list.tokenizer, true);
  assert.deepEqual(list.list.map((r: { trained: number }) => r.trained), counts);
  assert.equal(counts.reduce((a, b) => a + b, 0), list.manifest.report.trained_tokens);
  assert.ok(list.manifest.report.truncated.count > 0, 'seq_length 128 truncates some samples');

  const tok = Tokenizer.fromDir(DEMO);
  const row = (await get('/api/records/row?dir=records&row=1')).json;
  assert.equal(row.trained, counts[1]);
  assert.equal(row.tokens.length, 129);
  assert.equal(row.tokens[0].kind, 'bos');
  assert.equal(row.tokens[0].piece, tok.idToPiece(tok.bosId!));
  assert.equal(row.tokens.filter((t: { trained: boolean }) => t.trained).length, counts[1]);
  // The masked prompt comes before the trained reply, and what is trained is exactly labels != -100 past position 0.
  assert.ok(row.tokens.every((t: { trained: boolean; label: number }, j: number) => t.trained === (j >= 1 && t.label !== -100)));
  assert.equal(row.tokens[1].trained, false);

  const word = row.text.split(/\s+/).find((w: string) => /^[A-Za-z]{5,}$/.test(w));
  assert.ok(word, row.text);
  const found = (await get(`/api/records/search?dir=records&q=${encodeURIComponent(word)}`)).json;
  assert.ok(found.matches.some((m: { row: number }) => m.row === 1));
  assert.ok(found.matches.every((m: { snippet: string }) => m.snippet.toLowerCase().includes(word.toLowerCase())));
  assert.equal((await get('/api/records/row?dir=records&row=100000')).status, 404);
  assert.equal((await get('/api/records/row?dir=runs/done&row=0')).status, 404);
});

test('a conversation file tokenized with a tokenizer and template views like its records', async () => {
  const r = await post('/api/records/tokenize', { file: 'conversations.json', tokenizer: 'models/base', template: 'vicuna', seq_length: 128 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.match(r.json.id, /^@tokenized\/\d+$/);
  // The fixture's records are the same file passed over 4 times: the first pass is these rows.
  const counts = trainedCountsFromFile(join(root, 'records'));
  const list = (await get(`/api/records/rows?dir=${encodeURIComponent(r.json.id)}&from=0&count=200`)).json;
  assert.equal(list.rows * 4, counts.length);
  assert.deepEqual(list.list.map((x: { trained: number }) => x.trained), counts.slice(0, list.rows));
  const full = (await get('/api/records/rows?dir=records&count=1')).json;
  assert.equal(r.json.report.trained_tokens * 4, full.manifest.report.trained_tokens);
  assert.deepEqual(list.manifest.report, r.json.report);
  const row = (await get(`/api/records/row?dir=${encodeURIComponent(r.json.id)}&row=0`)).json;
  assert.equal(row.trained, counts[0]);
  for (const [body, status] of [
    [{ file: '../conversations.json', tokenizer: 'models/base', template: 'vicuna', seq_length: 128 }, 403],
    [{ file: 'conversations.json', tokenizer: '/etc', template: 'vicuna', seq_length: 128 }, 403],
    [{ file: 'conversations.json', tokenizer: 'models/base', template: 'jinja-of-doom', seq_length: 128 }, 400],
    [{ file: 'conversations.json', tokenizer: 'models/base', template: 'vicuna', seq_length: 1 }, 400],
    [{ file: 'models/base/config.json', tokenizer: 'models/base', template: 'vicuna', seq_length: 128 }, 400],
    [{ file: 'models', tokenizer: 'models/base', template: 'vicuna', seq_length: 128 }, 400],
  ] as const) {
    const e = await post('/api/records/tokenize', body);
    assert.equal(e.status, status, `${JSON.stringify(body)}: ${JSON.stringify(e.json)}`);
  }
  assert.equal((await get('/api/records/row?dir=@tokenized/999&row=0')).status, 404);
});

test('paths: .., absolute, encoded, and symlinks out of the root are refused with 4xx', async () => {
  const tries = [
    '/api/runs/metrics?run=..&offset=0',
    '/api/runs/metrics?run=../..&offset=0',
    '/api/runs/metrics?run=runs/../../x&offset=0',
    '/api/runs/metrics?run=%2e%2e%2f%2e%2e&offset=0',
    '/api/runs/metrics?run=%2E%2E&offset=0',
    `/api/runs/metrics?run=${encodeURIComponent(outside)}&offset=0`,
    '/api/runs/detail?run=/etc',
    '/api/runs/detail?run=runs/escape',
    '/api/records/rows?dir=..%5c..',
    '/api/records/row?dir=%2e%2e/records&row=0',
    '/api/file?path=../outside.png',
    '/api/file?path=runs/done/link.png',
    '/api/file?path=models/base/config.json',
    '/api/runs/metrics?run=runs%00&offset=0',
  ];
  for (const path of tries) {
    const r = await raw(path);
    assert.ok(r.status >= 400 && r.status < 500, `${path}: ${r.status} ${r.body}`);
    assert.doesNotMatch(r.body, /not for you|"step":1,"loss":9/, path);
  }
  // metrics.jsonl that is itself a link out of the root reads as no metrics at all.
  const linked = (await get('/api/runs/metrics?run=runs/linked&offset=0')).json;
  assert.deepEqual(linked.points, []);
  // Static files come from a fixed table: dot segments, encoded or not, find nothing.
  for (const path of ['/static/../package.json', '/static/%2e%2e/package.json', '/static/%2e%2e%2fpackage.json', '/vendor/../../package.json', '/static/..%2f..%2fetc%2fpasswd']) {
    const r = await raw(path);
    assert.equal(r.status, 404, `${path}: ${r.status}`);
  }
  const png = await fetch(`${ui.url}/api/file?path=runs/done/../done/x.png`);
  assert.equal(png.status, 403);
  // A run named through a link out of the root is refused before any folder is made.
  const started = await post('/api/runs', { name: 'runs/escape/sneaky', config: { load_checkpoint: 'models/base', train_dataset: { dataset_dir: 'records' } } });
  assert.equal(started.status, 403, JSON.stringify(started.json));
  assert.ok(!existsSync(join(outside, 'sneaky')));
});

test('Host and Origin: another host name (DNS rebinding) and another site are refused; non-loopback needs a key', async () => {
  const port = new URL(ui.url).port;
  assert.equal((await raw('/api/runs', { host: `evil.example:${port}` })).status, 421);
  assert.equal((await raw('/api/runs', { host: `localhost:${port}` })).status, 200);
  assert.equal((await raw('/api/runs', { host: `127.0.0.1:${port}`, origin: 'http://evil.example' })).status, 403);
  const preflight = await raw('/api/runs', { host: `127.0.0.1:${port}`, origin: 'http://evil.example', 'content-type': 'application/json' }, 'POST');
  assert.equal(preflight.status, 403);
  const form = await raw('/api/runs/preview', { host: `127.0.0.1:${port}`, 'content-type': 'application/x-www-form-urlencoded' }, 'POST');
  assert.equal(form.status, 415);
  await assert.rejects(startUiServer({ root, host: '0.0.0.0', port: 0 }), ConfigError);
  const keyed = await startUiServer({ root, host: '127.0.0.1', port: 0, apiKey: 'k3y' });
  try {
    assert.equal((await fetch(`${keyed.url}/api/runs`)).status, 401);
    assert.equal((await fetch(`${keyed.url}/api/runs`, { headers: { authorization: 'Bearer nope' } })).status, 401);
    assert.equal((await fetch(`${keyed.url}/api/runs`, { headers: { authorization: 'Bearer k3y' } })).status, 200);
    assert.equal((await fetch(`${keyed.url}/`)).status, 200);
  } finally {
    await keyed.close();
  }
});

test('new-run form: schema defaults, YAML and command from the values, errors naming the field', async () => {
  const schema = (await get('/api/config-schema')).json;
  assert.equal(schema.properties.optimizer.properties.learning_rate.default, 1e-5);
  assert.deepEqual(schema.properties.run_mode.enum, ['train', 'finetune', 'eval', 'predict']);
  const ok = await post('/api/runs/preview', { name: 'exp/one', config: { run_mode: 'finetune', load_checkpoint: 'models/base', train_dataset: { dataset_dir: 'records' }, optimizer: { learning_rate: 0.001 }, runner_config: { max_steps: 5 } } });
  assert.equal(ok.json.valid, true, JSON.stringify(ok.json));
  assert.equal(ok.json.yaml, 'output_dir: exp/one\nload_checkpoint: models/base\ntrain_dataset:\n  dataset_dir: records\nrunner_config:\n  max_steps: 5\noptimizer:\n  learning_rate: 0.001\n');
  assert.equal(ok.json.command, 'sftkit run --config exp/one/sftkit-ui-config.yaml');
  assert.equal(ok.json.overrides_command, 'sftkit run --output_dir exp/one --load_checkpoint models/base --train_dataset.dataset_dir records --runner_config.max_steps 5 --optimizer.learning_rate 0.001');
  const bad = [
    [{ name: 'x', config: { optimizer: { learning_rate: -1 } } }, 'optimizer.learning_rate'],
    [{ name: 'x', config: { runner_config: { batch_size: 0 } } }, 'runner_config.batch_size'],
    [{ name: 'x', config: { optimizer: { lerning_rate: 1 } } }, 'optimizer.lerning_rate'],
    [{ name: 'x', config: { run_mode: 'predict' } }, 'run_mode'],
    [{ name: '../x', config: {} }, 'name'],
    [{ name: '/tmp/x', config: {} }, 'name'],
    [{ name: 'x', config: { load_checkpoint: '../../etc' } }, 'load_checkpoint'],
    [{ name: 'x', config: { load_checkpoint: '/etc' } }, 'load_checkpoint'],
    [{ name: 'x', config: { train_dataset: { dataset_dir: 'nope' } } }, 'train_dataset.dataset_dir'],
  ] as const;
  for (const [body, where] of bad) {
    const r = await post('/api/runs/preview', body);
    assert.deepEqual([r.status, r.json.valid], [200, false], `${JSON.stringify(body)}: ${r.status}`);
    assert.equal(r.json.error.where, where, JSON.stringify(r.json));
    // Starting it is refused the same way, with a 4xx, and nothing is started.
    const start = await post('/api/runs', body);
    assert.ok(start.status >= 400 && start.status < 500, `${JSON.stringify(body)}: ${start.status}`);
    assert.equal(start.json.error.where, where);
  }
  const unknown = await post('/api/runs/preview', { name: 'x', config: { optimizer: { lerning_rate: 1 } } });
  assert.match(unknown.json.error.message, /did you mean 'optimizer.learning_rate'/);
});

test('chat: /v1/chat/completions streams chunks ending [DONE] whose text is generate()\'s reply; show-prompt renders the template', async () => {
  const messages = [{ role: 'user', content: 'Name a color.' }];
  const tok = Tokenizer.fromDir(DEMO);
  const model = loadModel(DEMO);
  let want: string;
  const ids = chatPromptIds(tok, [], 'Name a color.', { template: 'vicuna', system: null });
  try {
    want = generationText(tok, generate(model, [ids], { maxNewTokens: 12, eosTokenIds: defaultEosIds(model, tok) })[0]!);
  } finally {
    model.release();
  }
  const prompt = await post('/api/chat/prompt', { model: 'models/base', messages });
  assert.deepEqual(prompt.json.ids, ids);
  assert.equal(prompt.json.template, 'vicuna');
  assert.match(prompt.json.text, /USER: Name a color\. ASSISTANT:$/);

  const plain = await post('/v1/chat/completions', { model: 'models/base', messages, max_tokens: 12 });
  assert.equal(plain.status, 200);
  assert.equal(plain.json.object, 'chat.completion');
  assert.equal(plain.json.choices[0].message.content, want);
  assert.equal(plain.json.usage.prompt_tokens, ids.length);

  const r = await fetch(`${ui.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'models/base', messages, max_tokens: 12, stream: true }) });
  assert.equal(r.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const events = (await r.text()).split('\n\n').filter((e) => e !== '');
  assert.equal(events.at(-1), 'data: [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, '')) as { object: string; choices: { delta: { content?: string }; finish_reason: string | null }[] });
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  assert.ok(chunks.filter((c) => c.choices[0]!.delta.content).length > 1, 'the reply comes in several chunks');
  assert.equal(chunks.map((c) => c.choices[0]!.delta.content ?? '').join(''), want);
  assert.ok(['stop', 'length'].includes(chunks.at(-1)!.choices[0]!.finish_reason!));

  // Each chunk leaves as its token is chosen: a client in another process (this one's event loop is busy
  // generating) reads the reply over several reads, the first long before the last.
  const client = `const r = await fetch(process.argv[1], { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'models/base', messages: [{ role: 'user', content: 'Tell me about the Congress.' }], max_tokens: 48, stream: true }) });
    const reader = r.body.getReader(); let reads = 0; for (;;) { const { done } = await reader.read(); if (done) break; reads++; } console.log(reads);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', client, `${ui.url}/v1/chat/completions`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((resolve) => child.on('exit', resolve));
  assert.ok(Number(out.trim()) > 1, `the streamed reply came in ${out.trim()} read(s)`);

  const models = (await get('/v1/models')).json;
  assert.ok(models.data.some((m: { id: string }) => m.id === 'models/tuned'));
  for (const [body, status] of [
    [{ model: '../models/base', messages }, 403],
    [{ model: 'models/base', messages: [] }, 400],
    [{ model: 'models/base', messages: [{ role: 'assistant', content: 'hi' }] }, 400],
    [{ model: 'records', messages }, 400],
  ] as const) {
    const e = await post('/v1/chat/completions', body);
    assert.equal(e.status, status, JSON.stringify(e.json));
  }
});
