// Seeded fuzzing of what the dashboard's server parses from outside: request bodies (the New-run form, chat
// requests through the prompt route, which parses and templates like /v1/chat/completions without generating),
// query paths, and a run's files on disk (metrics.jsonl, checkpoint/meta.json, trainer_state.json). Every answer
// must be 2xx or a 4xx carrying a JSON error: never a 500, never a dropped connection, never a file from outside.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mutateBytes } from '../fuzz/mutate-bytes.ts';
import { mutateJson } from '../fuzz/mutate-json.ts';
import { caseSeed, int, pick, rng } from '../fuzz/rng.ts';
import { type UiServer, startUiServer } from '../../src/ui/server.ts';
import { makeUiRoot } from './fixture.ts';

const CASES = Math.max(50, Math.floor(Number(process.env['SFTKIT_FUZZ_CASES'] ?? 1000) / 4));
const SEED = Number(process.env['SFTKIT_FUZZ_SEED'] ?? 1);
const enc = new TextEncoder();
const dec = new TextDecoder();

let root: string;
let ui: UiServer;

before(async () => {
  root = await makeUiRoot();
  ui = await startUiServer({ root, port: 0 });
});

after(async () => {
  await ui?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

async function check(what: string, res: Response): Promise<void> {
  const text = await res.text();
  assert.ok(res.status < 500, `${what}: ${res.status} ${text.slice(0, 300)}`);
  if (res.status >= 400) assert.ok(typeof (JSON.parse(text) as { error: { message: string } }).error.message === 'string', `${what}: ${text.slice(0, 200)}`);
}

function post(path: string, body: string): Promise<Response> {
  return fetch(ui.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
}

const FORM = JSON.stringify({ name: 'fuzz-run', config: { run_mode: 'finetune', load_checkpoint: 'models/base', train_dataset: { dataset_dir: 'records' }, runner_config: { max_steps: 3, batch_size: 2 }, optimizer: { learning_rate: 0.001 }, generation: { template: 'vicuna' } } });
const CHAT = JSON.stringify({ model: 'models/base', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'Name a color.' }], max_tokens: 4, temperature: 0.5, top_p: 0.9, seed: 3, template: 'chatml' });

test(`request bodies: ${CASES} mutated form and chat requests answer 2xx or 4xx with an error`, { timeout: 300_000 }, async () => {
  let refused = 0;
  for (let i = 0; i < CASES; i++) {
    const r = rng(caseSeed('ui-bodies', SEED, i));
    const [path, seed] = pick(r, [['/api/runs/preview', FORM], ['/api/chat/prompt', CHAT]] as const);
    const body = r() < 0.7 ? mutateJson(seed, r) : dec.decode(mutateBytes(enc.encode(seed), r));
    const res = await post(path, body);
    if (res.status >= 400 || (path === '/api/runs/preview' && res.status === 200 && ((await res.clone().json().catch(() => ({}))) as { valid?: boolean }).valid === false)) refused++;
    await check(`case ${i} ${path} ${body.slice(0, 200)}`, res);
  }
  assert.ok(refused > CASES / 10, `only ${refused} of ${CASES} mutated requests were refused: the mutations miss the checks`);
});

test(`query paths: ${CASES} mutated paths stay inside the root`, { timeout: 300_000 }, async () => {
  const pieces = ['..', '.', '%2e%2e', '%2E.', '/', '\\', '%2f', '%5c', '%00', 'runs', 'done', 'records', 'models', 'base', 'checkpoint', 'demo-1_6', '~', '//', 'etc', 'passwd', '%ff', '%', ' '];
  const routes = ['/api/runs/metrics?offset=0&run=', '/api/runs/detail?run=', '/api/records/row?row=1&dir=', '/api/records/rows?dir=', '/api/file?path=', '/api/runs/log?run='];
  for (let i = 0; i < CASES; i++) {
    const r = rng(caseSeed('ui-paths', SEED, i));
    const n = 1 + int(r, 6);
    const path = Array.from({ length: n }, () => pick(r, pieces)).join(pick(r, ['/', '', '%2f']));
    const route = pick(r, routes);
    const res = await fetch(ui.url + route + path).catch((err: Error) => err);
    assert.ok(!(res instanceof Error), `case ${i} ${route}${path}: ${String(res)}`);
    const text = await res.text();
    assert.ok(res.status < 500, `case ${i} ${route}${path}: ${res.status} ${text.slice(0, 200)}`);
    assert.doesNotMatch(text, /root:x:0:0/, `case ${i} ${route}${path}`);
  }
});

test(`run files: ${CASES} mutated metrics.jsonl, meta.json, trainer_state.json, eval results and records manifests read without a 500`, { timeout: 300_000 }, async () => {
  const files = ['runs/done/metrics.jsonl', 'runs/done/checkpoint/meta.json', 'runs/done/checkpoint/demo-1_6/trainer_state.json', 'runs/done/eval_results.json', 'records/manifest.json'].map((f) => ({
    f,
    seed: readFileSync(join(root, f)),
  }));
  for (let i = 0; i < CASES; i++) {
    const r = rng(caseSeed('ui-run-files', SEED, i));
    const { f, seed } = pick(r, files);
    const bytes = r() < 0.5 ? enc.encode(mutateJson(dec.decode(seed), r)) : mutateBytes(seed, r);
    writeFileSync(join(root, f), bytes);
    try {
      for (const path of ['/api/runs', '/api/records', '/api/runs/detail?run=runs/done', '/api/runs/metrics?run=runs/done&offset=0', `/api/runs/metrics?run=runs/done&offset=${int(r, 2000)}`]) {
        const res = await fetch(ui.url + path);
        const text = await res.text();
        assert.ok(res.status < 500, `case ${i} (${f}) ${path}: ${res.status} ${text.slice(0, 200)}`);
        const json = JSON.parse(text) as { points?: unknown[] };
        if (json.points) assert.ok(json.points.every((p) => typeof p === 'object' && p !== null && !Array.isArray(p)));
      }
    } finally {
      writeFileSync(join(root, f), seed);
    }
  }
});
