// Multi-adapter serving, driven by the official `openai` client: two LoRA adapters of different ranks and
// targets over the demo base, served beside the base; concurrent requests to all three share decode steps
// (rows of different adapters in one forward), and each reply equals its solo decoding (the base alone, or a
// model with that adapter loaded as `run --lora.adapter` loads it), up to near-ties; `sftkit predict` with
// --lora.adapter gives what the server gives; bad adapters and bad --adapter flags are refused before the
// server listens, with errors naming the flag, file or tensor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { APIError } from 'openai';
import { activeBackend } from '../../src/backend/select.ts';
import { chatPromptIds } from '../../src/data/chat-prompt.ts';
import { generationTemplate } from '../../src/data/recorded-template.ts';
import { ConfigError, FormatError } from '../../src/errors.ts';
import { defaultEosIds, generate, generationText, resolveSampling } from '../../src/generate/index.ts';
import { type LlamaConfig, parseModelConfig } from '../../src/models/config.ts';
import { Llama } from '../../src/models/llama.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { type LoraOptions, attachLora } from '../../src/nn/lora.ts';
import { createEngine } from '../../src/serve/engine.ts';
import { ModelRegistry } from '../../src/serve/registry.ts';
import type { RowAdapter } from '../../src/nn/row-lora.ts';
import { type RunningServer, startServer } from '../../src/serve/server.ts';
import { Rng } from '../../src/tensor/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { loadAdapter, writeAdapterFiles } from '../../src/train/lora-io.ts';
import { loadModel } from '../../src/train/model-io.ts';
import { DEMO, NEAR_TIE, ROOT, judgeGreedy, margin, soloGreedy, startServe } from './helpers.ts';

const tok = Tokenizer.fromDir(DEMO);
const template = generationTemplate(undefined, DEMO);
const tmp = mkdtempSync(join(tmpdir(), 'sftkit-serve-lora-'));
const baseline = activeBackend().memStats().liveBytes;

/** Writes a PEFT adapter over `base` with seeded A and a non-zero B of amplitude `b` (PEFT would start B at 0). */
function makeAdapter(dir: string, base: CausalLM, opts: LoraOptions, seed: number, b: number): void {
  const rng = new Rng(seed);
  attachLora(base.params, opts, rng, base.config.family === 'gpt2');
  for (const name of base.params.adapterNames) {
    if (!name.endsWith('.lora_B.weight')) continue;
    base.params.load(name, rng.fillUniform(new Float32Array(base.params.read(name).length), -b, b));
  }
  mkdirSync(dir, { recursive: true });
  writeAdapterFiles(dir, base, null);
  base.release();
}

const A1 = join(tmp, 'a1');
const A2 = join(tmp, 'a2');
// a1: rank 4 on the attention's q and v; a2: rank 8 on every linear, rsLoRA scale.
makeAdapter(A1, loadModel(DEMO), { rank: 4, alpha: 8, dropout: 0, target_modules: ['q_proj', 'v_proj'], use_rslora: false }, 1, 0.5);
makeAdapter(A2, loadModel(DEMO), { rank: 8, alpha: 8, dropout: 0, target_modules: 'all-linear', use_rslora: true }, 2, 0.15);

const model = loadModel(DEMO);
const eos = defaultEosIds(model, tok);
/** The solo references: the base, and the base with each adapter loaded as `run --lora.adapter` loads it. */
const solo: Record<string, CausalLM> = { demo: model, a1: loadModel(DEMO), a2: loadModel(DEMO) };
loadAdapter(solo['a1'] as CausalLM, A1);
loadAdapter(solo['a2'] as CausalLM, A2);
const engine = createEngine(model, tok, { modelId: 'demo', template, slots: 16, maxQueue: 16, adapters: [{ name: 'a1', dir: A1 }, { name: 'a2', dir: A2 }] });
let server: RunningServer;
let client: OpenAI;

test.before(async () => {
  server = await startServer(engine, { host: '127.0.0.1', port: 0, apiKey: null });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
test.after(async () => {
  await server.close();
  for (const m of new Set(Object.values(solo))) m.release();
  assert.equal(activeBackend().memStats().liveBytes, baseline, 'the adapters and models return native memory to its baseline');
  rmSync(tmp, { recursive: true, force: true });
});

const SUBJECTS = ['the army', 'taxes', 'the railroads', 'farming', 'trade', 'the navy', 'schools', 'the mail'];
const PROMPTS = Array.from({ length: 15 }, (_, i) => `${['Tell me about', 'What is', 'Describe', 'Explain'][i % 4]} ${SUBJECTS[i % 8]}${'.'.repeat(1 + (i % 3))}`);
const MODELS = ['demo', 'a1', 'a2'] as const;

function soloReply(id: string, prompt: string, maxTokens: number): { ids: number[]; tokens: number[]; text: string } {
  const ids = chatPromptIds(tok, [], prompt, { template: 'vicuna', system: null });
  const g = generate(solo[id] as CausalLM, [ids], { maxNewTokens: maxTokens, eosTokenIds: eos })[0]!;
  return { ids, tokens: g.tokens, text: generationText(tok, g) };
}

/** A reply that parts from its solo text only where the solo decoding had a near-tie; else a message. */
function judge(id: string, got: string, s: { ids: number[]; tokens: number[]; text: string }): string | null {
  if (got === s.text) return null;
  const margins = s.tokens.map((_, j) => margin(solo[id] as CausalLM, [...s.ids, ...s.tokens.slice(0, j)]));
  return Math.min(...margins) < NEAR_TIE ? null : `${JSON.stringify(got)} vs alone ${JSON.stringify(s.text)} with no near-tie (smallest margin ${Math.min(...margins).toExponential(2)})`;
}

async function chat(model: string, prompt: string, maxTokens: number, stream: boolean): Promise<string> {
  const messages = [{ role: 'user' as const, content: prompt }];
  if (!stream) return (await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: maxTokens })).choices[0]?.message.content ?? '';
  let text = '';
  for await (const c of await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: maxTokens, stream: true })) text += c.choices[0]?.delta.content ?? '';
  return text;
}

test('/v1/models lists the base and every adapter; an unknown model is a 404', async () => {
  assert.deepEqual((await client.models.list()).data.map((m) => m.id), ['demo', 'a1', 'a2']);
  try {
    await client.chat.completions.create({ model: 'a3', messages: [{ role: 'user', content: 'hi' }] });
    assert.fail('the request succeeded');
  } catch (e) {
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    assert.deepEqual([(e as APIError).param, (e as APIError).code], ['model', 'model_not_found']);
    assert.match((e as APIError).message, /"demo", "a1", "a2"/);
  }
});

test('each adapter changes what the model says', () => {
  for (const id of ['a1', 'a2']) {
    const differ = PROMPTS.slice(0, 6).filter((p) => soloReply(id, p, 12).text !== soloReply('demo', p, 12).text).length;
    assert.ok(differ >= 4, `${id} changes ${differ} of 6 replies`);
  }
});

test('concurrent requests to the base and two adapters share forwards and each equal their solo decoding', async () => {
  const lengths = PROMPTS.map((_, i) => 8 + ((i * 7) % 23));
  const before = engine.scheduler.stats;
  const got = await Promise.all(PROMPTS.map((p, i) => chat(MODELS[i % 3] as string, p, lengths[i] as number, i % 2 === 0)));
  const after = engine.scheduler.stats;
  // Five requests per model: a mean batch above five means steps mixed rows of different adapters.
  const meanBatch = (after.decodedRows - before.decodedRows) / (after.steps - before.steps);
  assert.ok(meanBatch > 5, `mean batch ${meanBatch.toFixed(1)}: the models' requests did not share decode steps`);
  got.forEach((text, i) => {
    const id = MODELS[i % 3] as string;
    assert.equal(judge(id, text, soloReply(id, PROMPTS[i] as string, lengths[i] as number)), null, `request ${i} (${id})`);
  });
});

test('one prefill and the decode steps after it mix rows of the base and both adapters, token for token', async () => {
  const prompts = PROMPTS.slice(0, 9).map((p) => tok.encode(p, { addBos: true, addEos: false }));
  const before = engine.scheduler.stats;
  const runs = prompts.map(
    (ids, i) =>
      new Promise<number[]>((resolve) => {
        const seq = engine.scheduler.submit({
          model: engine.registry.resolve(MODELS[i % 3] as string, 'test'),
          promptIds: ids,
          maxTokens: 10 + i,
          sampling: resolveSampling({}),
          seed: 0,
          eosIds: new Set(eos),
          onToken: () => false,
          onFinish: () => resolve([...seq.tokens]),
        });
      }),
  );
  const got = await Promise.all(runs);
  assert.equal(engine.scheduler.stats.prefills - before.prefills, 1, 'the nine prompts (of different lengths) are prefilled in one forward');
  got.forEach((tokens, i) => {
    const m = solo[MODELS[i % 3] as string] as CausalLM;
    const alone = soloGreedy(m, prompts[i] as number[], 10 + i, eos);
    assert.equal(judgeGreedy(m, prompts[i] as number[], tokens, alone), null, `sequence ${i} (${MODELS[i % 3]})`);
  });
});

function sftkit(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SFTKIT_FROM_SOURCE: '1', SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function sftkitAsync(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), ...args], { cwd: ROOT, env: { ...process.env, SFTKIT_FROM_SOURCE: '1', SFTKIT_THREADS: '2' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

test('`sftkit run --run_mode predict --lora.adapter` says what the server says for that adapter', async () => {
  const prompts = PROMPTS.slice(0, 2);
  writeFileSync(join(tmp, 'prompts.txt'), prompts.join('\n'));
  // Run without blocking this process's event loop: the server here keeps its idle connections alive meanwhile.
  const r = await sftkitAsync(['run', '--run_mode', 'predict', '--load_checkpoint', DEMO, '--lora.adapter', A2, '--predict_data', join(tmp, 'prompts.txt'), '--max_new_tokens', '16', '--output_dir', join(tmp, 'out')]);
  assert.equal(r.status, 0, r.stderr);
  const predicted = readFileSync(join(tmp, 'out', 'predict_results.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { output: string }).output);
  for (const [i, p] of prompts.entries()) assert.equal(await chat('a2', p, 16, false), predicted[i], `prompt ${i}`);
});

test('bad --adapter flags are refused before anything loads', () => {
  const refused = (specs: string[], pattern: RegExp): void =>
    assert.throws(() => ModelRegistry.parseAdapterSpecs(specs, 'demo'), (e: unknown) => e instanceof ConfigError && e.where === '--adapter' && pattern.test(e.message), specs.join(' '));
  refused(['a1'], /expected NAME=DIR/);
  refused(['=dir'], /expected NAME=DIR/);
  refused(['a1='], /expected NAME=DIR/);
  refused(['a b=dir'], /may hold only/);
  refused(['a1=x', 'a1=y'], /given twice/);
  refused(['demo=x'], /base model's id/);
  assert.deepEqual(ModelRegistry.parseAdapterSpecs(['a1=x=y', 'org/a2=z'], 'demo'), [{ name: 'a1', dir: 'x=y' }, { name: 'org/a2', dir: 'z' }]);
});

test('the registry lists the base, then adapters as added, unless another served model is made primary', () => {
  const fake = (name: string): RowAdapter => ({ name, modules: new Map() }) as unknown as RowAdapter;
  const r = new ModelRegistry('base', 1);
  r.addAdapter(fake('a1'));
  r.addAdapter(fake('a2'));
  assert.deepEqual(r.list().map((m) => m.id), ['base', 'a1', 'a2']);
  r.setPrimary('a2');
  assert.deepEqual(r.list().map((m) => m.id), ['a2', 'base', 'a1']);
  assert.equal(r.resolve('base', 'chat').adapter, null);
  assert.throws(() => r.setPrimary('nope'), (e: unknown) => e instanceof ConfigError && /"nope" is not served/.test(e.message));
  assert.deepEqual(r.list().map((m) => m.id), ['a2', 'base', 'a1']);
});

test('an adapter that does not fit the base is refused naming its file and tensor, and nothing leaks', () => {
  const before = activeBackend().memStats().liveBytes;
  const refused = (dir: string, pattern: RegExp): void =>
    assert.throws(() => createEngine(model, tok, { modelId: 'demo', template, adapters: [{ name: 'ok', dir: A1 }, { name: 'bad', dir }] }), (e: unknown) => e instanceof FormatError && pattern.test(e.message), dir);
  // Made for a base of another width: every shape differs.
  const narrow = new Llama(parseModelConfig({ model_type: 'llama', vocab_size: 4096, hidden_size: 128, intermediate_size: 344, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 4 }, 'narrow') as LlamaConfig, { seed: 0 });
  const other = join(tmp, 'other-base');
  makeAdapter(other, narrow, { rank: 4, alpha: 8, dropout: 0, target_modules: ['q_proj'], use_rslora: false }, 3, 0.1);
  refused(other, /adapter_model\.safetensors: tensor base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight has shape \[4, 128\], the model needs \[4, 256\]/);
  // Targets this base does not have (GPT-2's module names).
  const gpt2 = join(tmp, 'gpt2-targets');
  cpSync(A1, gpt2, { recursive: true });
  const cfgPath = join(gpt2, 'adapter_config.json');
  writeFileSync(cfgPath, JSON.stringify({ ...(JSON.parse(readFileSync(cfgPath, 'utf8')) as object), target_modules: ['c_attn'] }));
  refused(gpt2, /adapter_config\.json: .*"c_attn" matches no linear module/);
  // A rank its tensors do not have.
  const rank = join(tmp, 'rank');
  cpSync(A1, rank, { recursive: true });
  writeFileSync(join(rank, 'adapter_config.json'), JSON.stringify({ ...(JSON.parse(readFileSync(join(A1, 'adapter_config.json'), 'utf8')) as object), r: 8 }));
  refused(rank, /lora_A\.weight has shape \[4, 256\], the model needs \[8, 256\]/);
  refused(join(tmp, 'missing'), /no adapter_config\.json/);
  assert.equal(activeBackend().memStats().liveBytes, before, 'the adapter loaded before the bad one is released');
});

test('sftkit serve --adapter: refuses bad adapters before listening, serves good ones', async () => {
  const dup = sftkit(['serve', '--load_checkpoint', DEMO, '--adapter', `x=${A1}`, '--adapter', `x=${A2}`]);
  assert.notEqual(dup.status, 0);
  assert.match(dup.stderr, /"x" is given twice/);
  const missing = sftkit(['serve', '--load_checkpoint', DEMO, '--port', '0', '--adapter', `x=${join(tmp, 'missing')}`]);
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /no adapter_config\.json/);
  assert.doesNotMatch(missing.stdout, /listening/);
  const server = await startServe(['--load_checkpoint', DEMO, '--served_model_name', 'tiny', '--adapter', `one=${A1}`, '--adapter', `two=${A2}`]);
  const url = server.url;
  let code: number | null = null;
  try {
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    assert.deepEqual((await c.models.list()).data.map((m) => m.id), ['tiny', 'one', 'two']);
    const p = PROMPTS[0] as string;
    const r = await c.chat.completions.create({ model: 'two', messages: [{ role: 'user', content: p }], temperature: 0, max_tokens: 10 });
    assert.equal(judge('a2', r.choices[0]?.message.content ?? '', soloReply('a2', p, 10)), null);
  } finally {
    code = await server.stop();
  }
  assert.equal(code, 0);
});
