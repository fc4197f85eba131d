// A LoRA run's adapter-only checkpoint used as the model, as it comes out of a short real run on the demo base:
// `sftkit chat` replies as `run --run_mode predict --load_checkpoint <checkpoint>` predicts; `sftkit serve`
// serves its adapter over its base (the base under its own name, an --adapter beside it) with the same replies;
// the dashboard's chat answers the same; GGUF and MindSpore export write exactly the tensors they write for the
// `convert --reversed --merge_lora` folder. With the base gone, each refuses, naming the checkpoint and the base;
// --base_model names another copy of it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { openGguf } from '../../src/formats/gguf.ts';
import { modelFolderOf } from '../../src/train/lora-io.ts';
import { startUiServer } from '../../src/ui/server.ts';
import { startServe } from '../serve/helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const DEMO = join(ROOT, 'assets', 'demo', 'base-model');
const PROMPTS = ['Name a color.', 'What is the capital of France?'];
const NEW_TOKENS = '16';

function sftkit(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), ...args], { cwd: ROOT, input, encoding: 'utf8', env: { ...process.env, SFTKIT_FROM_SOURCE: '1', SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(args: string[], input?: string): string {
  const r = sftkit(args, input);
  assert.equal(r.status, 0, `sftkit ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

let tmp: string;
/** The base the run fine-tuned (inside tmp, which is also the dashboard's root). */
let base: string;
/** The LoRA run's latest checkpoint: adapter files, tokenizer files and sftkit.json's base_model. */
let ck: string;
let ckName: string;
/** `run --run_mode predict --load_checkpoint <ck>`'s reply to each prompt. */
let predicted: string[];

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sftkit-lora-model-'));
  base = join(tmp, 'models', 'base');
  ok(['convert', '--input_path', DEMO, '--output_path', base, '--model', 'llama']);
  const conv = join(tmp, 'conv.json');
  ok(['data', 'alpaca', '--data_path', join(ROOT, 'assets', 'demo', 'alpaca_eval.json'), '--output_path', conv]);
  const records = join(tmp, 'records');
  ok(['data', 'preprocess', '--dataset_type', 'qa', '--input_glob', conv, '--tokenizer', base, '--seq_length', '256', '--samples_num', '8', '--output_file', records]);
  const out = join(tmp, 'out');
  ok(['run', '--load_checkpoint', base, '--train_dataset_dir', records, '--output_dir', out, '--batch_size', '4', '--runner_config.max_steps', '2',
    '--optimizer.learning_rate', '0.01', '--lora.rank', '4', '--lora.alpha', '8', '--lora.target_modules', '[q_proj, v_proj, down_proj]']);
  ckName = (JSON.parse(readFileSync(join(out, 'checkpoint', 'meta.json'), 'utf8')) as { latest: string }).latest;
  ck = join(out, 'checkpoint', ckName);
  const prompts = join(tmp, 'prompts.txt');
  writeFileSync(prompts, `${PROMPTS.join('\n')}\n`);
  ok(['run', '--run_mode', 'predict', '--load_checkpoint', ck, '--output_dir', join(tmp, 'predict'), '--predict_data', prompts, '--max_new_tokens', NEW_TOKENS]);
  predicted = readFileSync(join(tmp, 'predict', 'predict_results.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { output: string }).output);
  assert.equal(predicted.length, PROMPTS.length);
});

after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('sftkit chat --load_checkpoint <LoRA checkpoint> replies as predict does on it', () => {
  const input = `${PROMPTS.join('\n/reset\n')}\n`;
  const r = sftkit(['chat', '--load_checkpoint', ck, '--max_new_tokens', NEW_TOKENS], input);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stderr.includes(`chat with llama from ${ck} (LoRA adapter over ${base})`), r.stderr);
  assert.equal(r.stdout, predicted.map((p) => `${p}\n`).join(''));
  // The checkpoint/ root names the same (latest) checkpoint.
  assert.equal(ok(['chat', '--load_checkpoint', join(tmp, 'out', 'checkpoint'), '--max_new_tokens', NEW_TOKENS], `${PROMPTS[0]}\n`), `${predicted[0]}\n`);
});

async function reply(url: string, model: string, prompt: string): Promise<string> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: prompt }], max_tokens: Number(NEW_TOKENS), temperature: 0 }),
  });
  const body = (await r.json()) as { choices: { message: { content: string } }[] };
  assert.equal(r.status, 200, JSON.stringify(body));
  return body.choices[0]!.message.content;
}

test('sftkit serve --load_checkpoint <LoRA checkpoint>: its adapter as the checkpoint\'s name over its base, --adapter beside it', async () => {
  const server = await startServe(['--load_checkpoint', ck, '--adapter', `again=${ck}`], { threads: 2 });
  try {
    assert.ok(server.stderr().includes(`serving the LoRA checkpoint ${ck} as "${ckName}" over its base llama from ${base} as "base" with LoRA adapters "again"`), server.stderr());
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: { id: string }[] };
    // The checkpoint first (clients that take the first listed model get the fine-tuned one), then base and adapters.
    assert.deepEqual(models.data.map((m) => m.id), [ckName, 'base', 'again']);
    for (const [i, prompt] of PROMPTS.entries()) {
      assert.equal(await reply(server.url, ckName, prompt), predicted[i], prompt);
      // The same adapter given as --adapter over the base answers the same.
      assert.equal(await reply(server.url, 'again', prompt), predicted[i], prompt);
    }
    // The base, in the same (recorded) template, answers otherwise: the adapter is what changed the replies.
    assert.notEqual(await reply(server.url, 'base', PROMPTS[0]!), predicted[0]);
  } finally {
    await server.stop();
  }
  // --served_model_name names the checkpoint's adapter; the base keeps its own name.
  const named = await startServe(['--load_checkpoint', join(tmp, 'out', 'checkpoint'), '--served_model_name', 'tuned'], { threads: 2 });
  try {
    const models = (await (await fetch(`${named.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ['tuned', 'base']);
    assert.equal(await reply(named.url, 'tuned', PROMPTS[1]!), predicted[1]);
  } finally {
    await named.stop();
  }
  // An --adapter named as the base is refused before anything loads.
  const clash = sftkit(['serve', '--load_checkpoint', ck, '--port', '0', '--adapter', `base=${ck}`]);
  assert.notEqual(clash.status, 0);
  assert.match(clash.stderr, /"base" is the id of the LoRA checkpoint's base/);
});

test('the dashboard\'s chat answers with a LoRA checkpoint as predict does; a base outside the root is refused', async () => {
  const ui = await startUiServer({ root: tmp, port: 0 });
  try {
    // The chat page's pickers list the checkpoint beside the base.
    const listed = (await (await fetch(`${ui.url}/api/checkpoints`)).json()) as { checkpoints: { id: string; run: string | null }[] };
    assert.deepEqual(listed.checkpoints.filter((c) => c.id.startsWith('out/') || c.id.startsWith('models/')), [{ id: 'models/base', run: null }, { id: `out/checkpoint/${ckName}`, run: 'out' }]);
    for (const model of [`out/checkpoint/${ckName}`, 'out/checkpoint']) {
      const r = await fetch(`${ui.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: PROMPTS[0] }], max_tokens: Number(NEW_TOKENS) }) });
      const body = (await r.json()) as { choices: { message: { content: string } }[] };
      assert.equal(r.status, 200, JSON.stringify(body));
      assert.equal(body.choices[0]!.message.content, predicted[0], model);
    }
  } finally {
    await ui.close();
  }
  const narrow = await startUiServer({ root: join(tmp, 'out'), port: 0 });
  try {
    const r = await fetch(`${narrow.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'checkpoint', messages: [{ role: 'user', content: PROMPTS[0] }] }) });
    const body = (await r.json()) as { error: { message: string } };
    assert.equal(r.status, 422);
    assert.ok(body.error.message.includes(`whose base model ${base} lies outside the dashboard's root`), body.error.message);
  } finally {
    await narrow.close();
  }
});

test('GGUF and MindSpore export of a LoRA checkpoint write the tensors of its --merge_lora folder\'s export', () => {
  const merged = join(tmp, 'merged');
  ok(['convert', '--reversed', '--merge_lora', '--dtype', 'float32', '--input_path', ck, '--output_path', merged]);
  const fromCk = join(tmp, 'gguf-ck', 'model.gguf');
  const fromMerged = join(tmp, 'gguf-merged', 'model.gguf');
  const fromBase = join(tmp, 'gguf-base', 'model.gguf');
  ok(['convert', '--reversed', '--format', 'gguf', '--input_path', ck, '--output_path', fromCk]);
  ok(['convert', '--reversed', '--format', 'gguf', '--input_path', merged, '--output_path', fromMerged]);
  ok(['convert', '--reversed', '--format', 'gguf', '--dtype', 'float32', '--input_path', base, '--output_path', fromBase]);
  const [a, b, c] = [openGguf(fromCk), openGguf(fromMerged), openGguf(fromBase)];
  try {
    assert.deepEqual(a.tensors.map((t) => [t.name, t.type, t.shape]), b.tensors.map((t) => [t.name, t.type, t.shape]));
    for (const t of a.tensors) assert.ok(Buffer.from(a.read(t.name)).equals(Buffer.from(b.read(t.name))), t.name);
    // The adapted modules differ from the base's, the others do not.
    assert.ok(!Buffer.from(a.read('blk.0.attn_q.weight')).equals(Buffer.from(c.read('blk.0.attn_q.weight'))));
    assert.ok(Buffer.from(a.read('blk.0.attn_k.weight')).equals(Buffer.from(c.read('blk.0.attn_k.weight'))));
    // Metadata agree but for the name (each folder's) and the chat template, which the checkpoint knows from
    // its training data and the merged folder no longer does.
    const differ = [...a.metadata.keys()].filter((k) => JSON.stringify(a.metadata.get(k)) !== JSON.stringify(b.metadata.get(k)));
    assert.deepEqual(differ.sort(), ['general.name', 'tokenizer.chat_template']);
    assert.equal((a.metadata.get('general.name') as { value: string }).value, ckName);
  } finally {
    for (const f of [a, b, c]) f.close();
  }
  const msCk = join(tmp, 'ms', 'ck.ckpt');
  const msMerged = join(tmp, 'ms', 'merged.ckpt');
  mkdirSync(join(tmp, 'ms'));
  ok(['convert', '--reversed', '--format', 'mindspore', '--input_path', ck, '--output_path', msCk]);
  ok(['convert', '--reversed', '--format', 'mindspore', '--input_path', merged, '--output_path', msMerged]);
  assert.ok(readFileSync(msCk).equals(readFileSync(msMerged)), 'the MindSpore .ckpt of the checkpoint and of the merged folder');
});

test('a LoRA run whose base had no folder (model.arch): eval, predict, chat and serve apply the adapter its checkpoint holds beside the base', async () => {
  const out = join(tmp, 'out-arch');
  ok(['run', '--run_mode', 'train', '--model.arch', join(DEMO, 'config.json'), '--tokenizer', base, '--train_dataset_dir', join(tmp, 'records'), '--output_dir', out,
    '--batch_size', '4', '--runner_config.max_steps', '2', '--optimizer.learning_rate', '0.01', '--lora.rank', '4', '--lora.alpha', '8', '--lora.target_modules', '[q_proj, v_proj, down_proj]']);
  const name = (JSON.parse(readFileSync(join(out, 'checkpoint', 'meta.json'), 'utf8')) as { latest: string }).latest;
  const both = join(out, 'checkpoint', name);
  // The base's weights without the adapter, for comparison.
  const plain = join(tmp, 'arch-base');
  cpSync(both, plain, { recursive: true, filter: (src) => !/adapter_|trainer_state|optimizer|rank_/.test(src) });
  const evalLoss = (args: string[], dir: string): number => {
    ok(['run', '--run_mode', 'eval', '--eval_dataset_dir', join(tmp, 'records'), '--output_dir', join(tmp, dir), '--batch_size', '4', ...args]);
    return (JSON.parse(readFileSync(join(tmp, dir, 'eval_results.json'), 'utf8')) as { loss: number }).loss;
  };
  const adapted = evalLoss(['--load_checkpoint', both], 'arch-e1');
  assert.equal(evalLoss(['--load_checkpoint', plain, '--lora.adapter', both], 'arch-e2'), adapted);
  assert.notEqual(evalLoss(['--load_checkpoint', plain], 'arch-e3'), adapted);
  ok(['run', '--run_mode', 'predict', '--load_checkpoint', plain, '--lora.adapter', both, '--output_dir', join(tmp, 'arch-p'), '--predict_data', PROMPTS[1]!, '--max_new_tokens', NEW_TOKENS]);
  const want = (JSON.parse(readFileSync(join(tmp, 'arch-p', 'predict_results.jsonl'), 'utf8').trim()) as { output: string }).output;
  assert.equal(ok(['chat', '--load_checkpoint', both, '--template', 'vicuna', '--max_new_tokens', NEW_TOKENS], `${PROMPTS[1]}\n`), `${want}\n`);
  const server = await startServe(['--load_checkpoint', both, '--template', 'vicuna'], { threads: 2 });
  try {
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), [name, `${name}-base`]);
    assert.equal(await reply(server.url, name, PROMPTS[1]!), want);
  } finally {
    await server.stop();
  }
});

test('with its base gone, chat, serve, the dashboard and export refuse a LoRA checkpoint, naming it and the base; --base_model names a copy', async () => {
  const moved = join(tmp, 'models', 'moved');
  renameSync(base, moved);
  try {
    const missing = `${ck}: its base model ${base} is missing`;
    assert.throws(() => modelFolderOf(ck), (err: unknown) => err instanceof FormatError && err.message.startsWith(missing));
    const chat = sftkit(['chat', '--load_checkpoint', ck], 'hi\n');
    const serve = sftkit(['serve', '--load_checkpoint', ck, '--port', '0']);
    const gguf = sftkit(['convert', '--reversed', '--format', 'gguf', '--input_path', ck, '--output_path', join(tmp, 'gone', 'm.gguf')]);
    for (const [what, r] of [['chat', chat], ['serve', serve], ['gguf', gguf]] as const) {
      assert.notEqual(r.status, 0, what);
      assert.ok(r.stderr.includes(missing), `${what}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`put the base model back at ${base}`), `${what}: ${r.stderr}`);
    }
    // serve names the flags that serve another copy of the base.
    assert.ok(serve.stderr.includes(`--load_checkpoint BASE --adapter ${ckName}=${ck}`), serve.stderr);
    const ui = await startUiServer({ root: tmp, port: 0 });
    try {
      const r = await fetch(`${ui.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: `out/checkpoint/${ckName}`, messages: [{ role: 'user', content: 'hi' }] }) });
      const body = (await r.json()) as { error: { message: string } };
      assert.equal(r.status, 400);
      assert.ok(body.error.message.startsWith(missing), body.error.message);
    } finally {
      await ui.close();
    }

    // --base_model names the moved copy: chat replies as predict did, serve serves it, and the exports write
    // what they wrote with the base in place.
    assert.ok(chat.stderr.includes('pass --base_model DIR naming another copy of the base'), chat.stderr);
    assert.equal(ok(['chat', '--load_checkpoint', ck, '--base_model', moved, '--max_new_tokens', NEW_TOKENS], `${PROMPTS[0]}\n`), `${predicted[0]}\n`);
    const server = await startServe(['--load_checkpoint', ck, '--base_model', moved], { threads: 2 });
    try {
      assert.equal(await reply(server.url, ckName, PROMPTS[1]!), predicted[1]);
    } finally {
      await server.stop();
    }
    const gguf2 = join(tmp, 'gguf-moved', 'model.gguf');
    ok(['convert', '--reversed', '--format', 'gguf', '--base_model', moved, '--input_path', ck, '--output_path', gguf2]);
    const [a, b] = [openGguf(gguf2), openGguf(join(tmp, 'gguf-ck', 'model.gguf'))];
    try {
      assert.deepEqual(a.tensors.map((t) => t.name), b.tensors.map((t) => t.name));
      for (const t of a.tensors) assert.ok(Buffer.from(a.read(t.name)).equals(Buffer.from(b.read(t.name))), t.name);
    } finally {
      a.close();
      b.close();
    }
    const ms2 = join(tmp, 'ms', 'moved.ckpt');
    ok(['convert', '--reversed', '--format', 'mindspore', '--base_model', moved, '--input_path', ck, '--output_path', ms2]);
    assert.ok(readFileSync(ms2).equals(readFileSync(join(tmp, 'ms', 'ck.ckpt'))), 'the MindSpore .ckpt over the moved base');
    const merged2 = join(tmp, 'merged-moved');
    ok(['convert', '--reversed', '--merge_lora', '--dtype', 'float32', '--base_model', moved, '--input_path', ck, '--output_path', merged2]);
    assert.ok(readFileSync(join(merged2, 'model.safetensors')).equals(readFileSync(join(tmp, 'merged', 'model.safetensors'))), 'the merged folder over the moved base');

    // Refused: --base_model for a model of its own, a folder without a model, an export that merges nothing.
    const own = sftkit(['chat', '--load_checkpoint', moved, '--base_model', moved], 'hi\n');
    assert.notEqual(own.status, 0);
    assert.match(own.stderr, /--base_model .*is a model of its own, not a LoRA checkpoint/);
    const empty = sftkit(['chat', '--load_checkpoint', ck, '--base_model', join(tmp, 'nowhere')], 'hi\n');
    assert.notEqual(empty.status, 0);
    assert.match(empty.stderr, /--base_model .*nowhere: no model there \(no config\.json/);
    const plain = sftkit(['convert', '--reversed', '--base_model', moved, '--input_path', ck, '--output_path', join(tmp, 'plain-out')]);
    assert.notEqual(plain.status, 0);
    assert.match(plain.stderr, /--base_model names the base of a LoRA checkpoint being exported/);
  } finally {
    renameSync(moved, base);
  }
});
