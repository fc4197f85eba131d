// `sftkit chat` fed through stdin (not a TTY): replies stream the same tokens as sftkit's own generation of the
// same prompt ids, history makes the next prompt, /reset forgets it, /exit stops; and predict/chat take the
// template recorded with the training data (with its Alpaca wrapping) unless one is given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alpacaPrompt, convertAlpacaRecords } from '../../src/data/alpaca.ts';
import { chatPromptIds } from '../../src/data/chat-prompt.ts';
import { readJsonRecords } from '../../src/data/json-input.ts';
import { preprocess } from '../../src/data/preprocess.ts';
import { promptIds } from '../../src/data/prompt.ts';
import { generationTemplate, recordedTemplate } from '../../src/data/recorded-template.ts';
import { defaultEosIds, generate, generateStream, generationText } from '../../src/generate/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { loadModel } from '../../src/train/model-io.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const DEMO = join(ROOT, 'assets', 'demo', 'base-model');

function sftkit(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), ...args], { cwd: ROOT, input, encoding: 'utf8', env: { ...process.env, SFTKIT_FROM_SOURCE: '1', SFTKIT_THREADS: '2' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('chat prompts: one turn equals predict\'s prompt; later turns carry the history as training encoded it', () => {
  const tok = Tokenizer.fromDir(DEMO);
  for (const template of ['vicuna', 'alpaca', 'chatml', 'llama2', 'none']) {
    assert.deepEqual(chatPromptIds(tok, [], 'Name a color.', { template, system: null }), promptIds(tok, template, 'Name a color.'), template);
  }
  const two = chatPromptIds(tok, [{ user: 'Hi', assistant: 'Hello there.' }], 'Bye', { template: 'vicuna', system: null });
  const first = tok.encode(`A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: Hi ASSISTANT: Hello there.`, { addBos: false, addEos: false });
  assert.deepEqual(two, [tok.bosId!, ...first, tok.eosId!, ...tok.encode('USER: Bye ASSISTANT:', { addBos: false, addEos: false })]);
  const wrapped = chatPromptIds(tok, [], 'Name a color.', { template: 'vicuna', system: null, alpacaPrompts: true });
  assert.deepEqual(wrapped, promptIds(tok, 'vicuna', alpacaPrompt('Name a color.', '')));
});

test('sftkit chat over stdin: streamed replies equal generate(), history, /reset, /exit', () => {
  const tok = Tokenizer.fromDir(DEMO);
  const model = loadModel(DEMO);
  let expected: string[];
  try {
    const eos = defaultEosIds(model, tok);
    const a = chatPromptIds(tok, [], 'The capital of France is', { template: 'vicuna', system: null });
    const replyA = generationText(tok, generate(model, [a], { maxNewTokens: 12, eosTokenIds: eos })[0]!);
    const b = chatPromptIds(tok, [{ user: 'The capital of France is', assistant: replyA }], 'and of Spain?', { template: 'vicuna', system: null });
    const replyB = generationText(tok, generate(model, [b], { maxNewTokens: 12, eosTokenIds: eos })[0]!);
    // The streaming decoder picks the same tokens as batched generation.
    const streamed: number[] = [];
    const g = generateStream(model, b, { maxNewTokens: 12, eosTokenIds: eos }, (id) => streamed.push(id));
    assert.deepEqual(streamed, generate(model, [b], { maxNewTokens: 12, eosTokenIds: eos })[0]!.tokens);
    assert.deepEqual(g.tokens, streamed);
    expected = [replyA, replyB, replyA];
  } finally {
    model.release();
  }
  const r = sftkit(['chat', '--load_checkpoint', DEMO, '--max_new_tokens', '12'], 'The capital of France is\nand of Spain?\n/reset\nThe capital of France is\n/exit\nnever read\n');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, expected.map((x) => `${x}\n`).join(''));
  assert.match(r.stderr, /template vicuna \(default\)/);
  assert.match(r.stderr, /\(conversation reset\)/);
  const bad = sftkit(['chat', '--load_checkpoint', DEMO, '--template', 'nope'], 'hi\n');
  assert.notEqual(bad.status, 0);
});

test('predict and chat default to the template recorded with the training data (Alpaca prompts included)', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-chat-'));
  try {
    // Alpaca data through the converter and preprocess: the manifest records the template and the wrapping.
    const tok = Tokenizer.fromDir(DEMO);
    const conv = join(tmp, 'conv.json');
    writeFileSync(conv, JSON.stringify(convertAlpacaRecords(readJsonRecords(join(ROOT, 'test', 'fixtures', 'data', 'alpaca_small.json')))));
    const records = join(tmp, 'records');
    await preprocess({ datasetType: 'qa', inputGlob: conv, tokenizer: tok, seqLength: 256, outputDir: records, template: 'vicuna' });
    const manifest = JSON.parse(readFileSync(join(records, 'manifest.json'), 'utf8')) as { template: string; prompt_format: string };
    assert.deepEqual([manifest.template, manifest.prompt_format], ['vicuna', 'alpaca']);
    // A training checkpoint: the model files plus trainer_state.json naming the run config.
    const ckpt = join(tmp, 'out', 'checkpoint', 'demo-1_1');
    mkdirSync(join(tmp, 'out', 'checkpoint'), { recursive: true });
    cpSync(DEMO, ckpt, { recursive: true });
    writeFileSync(join(ckpt, 'trainer_state.json'), JSON.stringify({ step: 1, config: { train_dataset: { dataset_dir: records } } }));
    assert.deepEqual(recordedTemplate(ckpt), { template: 'vicuna', alpacaPrompts: true, manifest: join(records, 'manifest.json') });
    assert.equal(generationTemplate(undefined, ckpt).source, 'recorded');
    assert.deepEqual(generationTemplate('vicuna', ckpt), { template: 'vicuna', alpacaPrompts: true, source: 'config' });
    assert.deepEqual(generationTemplate('chatml', ckpt), { template: 'chatml', alpacaPrompts: false, source: 'config' });
    assert.deepEqual(generationTemplate(undefined, DEMO), { template: 'vicuna', alpacaPrompts: false, source: 'default' });

    const model = loadModel(DEMO);
    let want: string;
    try {
      const ids = promptIds(tok, 'vicuna', alpacaPrompt('Name a color.', ''));
      want = generationText(tok, generate(model, [ids], { maxNewTokens: 8, eosTokenIds: defaultEosIds(model, tok) })[0]!);
    } finally {
      model.release();
    }
    const pred = sftkit(['run', '--run_mode', 'predict', '--load_checkpoint', ckpt, '--output_dir', join(tmp, 'out'), '--predict_data', 'Name a color.', '--max_new_tokens', '8']);
    assert.equal(pred.status, 0, pred.stderr);
    assert.match(pred.stdout, /template: vicuna with Alpaca prompts \(recorded with the training data, .*manifest\.json\)/);
    const line = JSON.parse(readFileSync(join(tmp, 'out', 'predict_results.jsonl'), 'utf8').trim()) as { output: string };
    assert.equal(line.output, want);
    const chat = sftkit(['chat', '--load_checkpoint', join(tmp, 'out', 'checkpoint', 'demo-1_1'), '--max_new_tokens', '8'], 'Name a color.\n');
    assert.equal(chat.status, 0, chat.stderr);
    assert.match(chat.stderr, /template vicuna with Alpaca prompts \(recorded with the training data/);
    assert.equal(chat.stdout, `${want}\n`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
