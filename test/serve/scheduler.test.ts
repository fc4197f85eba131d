// The continuous-batching scheduler on the demo model: 16 sequences of different lengths, arriving while
// others decode, each choose the tokens they choose alone (greedy up to near-ties, and seeded sampling),
// share decode steps, leave when done or cancelled, and a full queue is refused; memory returns to baseline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { activeBackend } from '../../src/backend/select.ts';
import { defaultEosIds, generate, resolveSampling, type ResolvedSampling } from '../../src/generate/index.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { RequestError } from '../../src/serve/errors.ts';
import { ModelRegistry } from '../../src/serve/registry.ts';
import { BatchScheduler, type FinishReason, type Sequence } from '../../src/serve/scheduler.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { loadModel } from '../../src/train/model-io.ts';
import { DEMO, judgeGreedy, soloGreedy } from './helpers.ts';

const tok = Tokenizer.fromDir(DEMO);
const model: CausalLM = loadModel(DEMO);
const eos = defaultEosIds(model, tok);
const entry = new ModelRegistry('demo').resolve('demo', 'test');
const GREEDY = resolveSampling({});

const TEXTS = [
  'The capital of France is', 'Once upon a time', 'In the beginning', 'Fellow citizens', 'The economy of the nation',
  'We the people', 'Our foreign policy', 'The', 'Congress has passed many laws this year, and', 'Education',
  'Taxes and the budget of the government', 'War', 'Peace and freedom across the world are', 'Farmers', 'The railroads of the west', 'Trade',
];

interface Run { seq: Sequence; done: Promise<{ tokens: number[]; reason: FinishReason }> }

function submit(s: BatchScheduler, prompt: number[], maxTokens: number, sampling: ResolvedSampling = GREEDY, seed = 0): Run {
  let finished: (v: { tokens: number[]; reason: FinishReason }) => void = () => {};
  const done = new Promise<{ tokens: number[]; reason: FinishReason }>((resolve) => (finished = resolve));
  const seq: Sequence = s.submit({ model: entry, promptIds: prompt, maxTokens, sampling, seed, eosIds: new Set(eos), onToken: () => false, onFinish: (reason) => finished({ tokens: [...seq.tokens], reason }) });
  return { seq, done };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('16 sequences joining at different steps each decode what they decode alone', async () => {
  const s = new BatchScheduler(model, { slots: 16, context: 256, maxQueue: 16 });
  try {
    const prompts = TEXTS.map((t) => tok.encode(t, { addBos: true, addEos: false }));
    const lengths = prompts.map((_, i) => 6 + ((i * 5) % 17));
    const runs: Run[] = [];
    for (let i = 0; i < prompts.length; i++) {
      runs.push(submit(s, prompts[i] as number[], lengths[i] as number));
      // Later ones arrive while earlier ones decode.
      if (i % 4 === 3) for (let k = 0; k < 3; k++) await tick();
    }
    const got = await Promise.all(runs.map((r) => r.done));
    const stats = s.stats;
    assert.ok(stats.decodedRows / stats.steps > 4, `mean batch ${(stats.decodedRows / stats.steps).toFixed(1)}: decode steps were not shared`);
    assert.ok(stats.prefills < prompts.length, 'waiting prompts are prefilled together');
    got.forEach((g, i) => {
      const solo = soloGreedy(model, prompts[i] as number[], lengths[i] as number, eos);
      assert.equal(judgeGreedy(model, prompts[i] as number[], g.tokens, solo), null, `prompt ${i} ${JSON.stringify(TEXTS[i])}`);
      assert.equal(g.reason, solo.length < (lengths[i] as number) ? 'eos' : 'length');
    });
  } finally {
    await s.close();
  }
});

test('seeded sampling in a batch draws what generate() draws alone; penalties change the draw', async () => {
  const s = new BatchScheduler(model, { slots: 4, context: 256, maxQueue: 8 });
  try {
    const prompts = TEXTS.slice(0, 6).map((t) => tok.encode(t, { addBos: true, addEos: false }));
    const opts = { doSample: true, temperature: 1.2, topK: 40, topP: 0.95 };
    const runs = prompts.map((p, i) => submit(s, p, 10, resolveSampling(opts), 100 + i));
    const got = await Promise.all(runs.map((r) => r.done));
    got.forEach((g, i) => {
      const alone = generate(model, [prompts[i] as number[]], { ...opts, maxNewTokens: 10, seed: 100 + i, eosTokenIds: eos })[0]!.tokens;
      assert.deepEqual(g.tokens, alone, `prompt ${i}`);
    });
    // A strong frequency penalty forbids repeats that greedy decoding makes.
    const p = tok.encode('The the the the the', { addBos: true, addEos: false });
    const plain = (await submit(s, p, 24).done).tokens;
    const penalised = (await submit(s, p, 24, resolveSampling({ frequencyPenalty: 2, presencePenalty: 2 })).done).tokens;
    assert.ok(new Set(plain).size < plain.length, 'greedy decoding of this prompt repeats itself');
    assert.notDeepEqual(penalised, plain);
  } finally {
    await s.close();
  }
});

test('cancelled sequences leave their rows at once; a full queue is refused with 429', async () => {
  const s = new BatchScheduler(model, { slots: 2, context: 256, maxQueue: 1 });
  try {
    const p = tok.encode('Once upon a time', { addBos: true, addEos: false });
    const a = submit(s, p, 200);
    const b = submit(s, p, 200);
    const c = submit(s, p, 5);
    assert.throws(() => submit(s, p, 5), (e: unknown) => e instanceof RequestError && e.status === 429);
    while (s.stats.active < 2) await tick();
    assert.deepEqual([s.stats.active, s.stats.queued], [2, 1]);
    s.cancel(a.seq);
    assert.equal((await a.done).reason, 'cancelled');
    // c takes a's row and finishes; b goes on until cancelled.
    assert.equal((await c.done).reason, 'length');
    assert.ok(s.stats.active === 1);
    s.cancel(b.seq);
    const rb = await b.done;
    assert.equal(rb.reason, 'cancelled');
    assert.ok(rb.tokens.length < 200);
    await s.idle();
    assert.deepEqual([s.stats.active, s.stats.queued], [0, 0]);
  } finally {
    await s.close();
  }
});

test('the scheduler returns native memory to its baseline', async () => {
  const before = activeBackend().memStats().liveBytes;
  const s = new BatchScheduler(model, { slots: 4, context: 64, maxQueue: 8 });
  const runs = TEXTS.slice(0, 6).map((t) => submit(s, tok.encode(t, { addBos: true, addEos: false }), 8));
  await Promise.all(runs.map((r) => r.done));
  await s.close();
  assert.equal(activeBackend().memStats().liveBytes, before);
});

test.after(() => model.release());
