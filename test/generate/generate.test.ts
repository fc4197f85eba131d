// Batched KV-cache generation: greedy tokens equal plain-PyTorch greedy decoding (scripts/reference/
// generate_parity.py), every prompt generates in a batch what it generates alone, EOS and max_new_tokens stop
// rows, and native memory returns to its baseline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { ConfigError } from '../../src/errors.ts';
import { generate } from '../../src/generate/index.ts';
import type { GenerationOptions } from '../../src/generate/index.ts';
import { fixtureModel } from './fixture-model.ts';

interface GreedyCase { repetition_penalty: number; prompts: number[][]; tokens: number[][] }
const FIXTURE = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'generate', 'generate_parity.json'), 'utf8')) as { greedy: GreedyCase[] };

test('llama_gqa: batched greedy decoding equals PyTorch greedy decoding of each prompt alone', () => {
  const { model } = fixtureModel('llama_gqa');
  try {
    for (const c of FIXTURE.greedy) {
      const got = generate(model, c.prompts, { maxNewTokens: 8, repetitionPenalty: c.repetition_penalty });
      assert.deepEqual(got.map((g) => g.tokens), c.tokens, `repetition_penalty ${c.repetition_penalty}`);
      assert.ok(got.every((g) => g.finishReason === 'length'));
    }
  } finally {
    model.release();
  }
});

const PROMPTS = [[43, 7, 50, 11, 31, 29, 20], [10, 20, 12], [5], [8, 22, 8, 48]];

for (const name of ['llama_gqa', 'gpt2'] as const) {
  test(`${name}: each prompt generates the same tokens in a batch as alone (greedy and sampled)`, () => {
    const { model } = fixtureModel(name);
    try {
      const settings: GenerationOptions[] = [
        { maxNewTokens: 6 },
        { maxNewTokens: 6, doSample: true, seed: 7, temperature: 1.3 },
        { maxNewTokens: 6, doSample: true, seed: 3, topK: 5, topP: 0.9, repetitionPenalty: 1.2 },
      ];
      for (const opts of settings) {
        const batched = generate(model, PROMPTS, opts).map((g) => g.tokens);
        const alone = PROMPTS.map((p) => (generate(model, [p], opts)[0] as { tokens: number[] }).tokens);
        assert.deepEqual(batched, alone, JSON.stringify(opts));
        assert.deepEqual(generate(model, PROMPTS, { ...opts, batchSize: 3 }).map((g) => g.tokens), alone);
        assert.ok(batched.every((t) => t.length === 6));
      }
    } finally {
      model.release();
    }
  });
}

test('sampling is reproducible per seed and differs across seeds; top_k 1 samples the greedy tokens', () => {
  const { model } = fixtureModel('llama_gqa');
  try {
    const run = (seed: number): number[][] => generate(model, PROMPTS, { maxNewTokens: 8, doSample: true, seed, temperature: 2 }).map((g) => g.tokens);
    assert.deepEqual(run(11), run(11));
    assert.notDeepEqual(run(11), run(12));
    const greedy = generate(model, PROMPTS, { maxNewTokens: 8 }).map((g) => g.tokens);
    assert.deepEqual(generate(model, PROMPTS, { maxNewTokens: 8, doSample: true, topK: 1, temperature: 5, seed: 4 }).map((g) => g.tokens), greedy);
  } finally {
    model.release();
  }
});

test('rows stop at any of several EOS ids (kept as their last token) or at max_new_tokens', () => {
  const { model } = fixtureModel('llama_gqa');
  try {
    // Greedy continuations from the fixture: [46, 32, 48, 36, ...], [48, 29, 9, 48, ...], [60, 60, ...].
    const prompts = (FIXTURE.greedy[0] as GreedyCase).prompts;
    const got = generate(model, prompts, { maxNewTokens: 8, eosTokenIds: [36, 29] });
    assert.deepEqual(got.map((g) => g.tokens), [[46, 32, 48, 36], [48, 29], [60, 60, 60, 60, 60, 60, 60, 60]]);
    assert.deepEqual(got.map((g) => g.finishReason), ['eos', 'eos', 'length']);
    assert.deepEqual(generate(model, prompts, { maxNewTokens: 0 }).map((g) => g.tokens), [[], [], []]);
  } finally {
    model.release();
  }
});

test('generation returns native memory to its baseline', () => {
  const { model } = fixtureModel('llama_gqa');
  try {
    const opts: GenerationOptions = { maxNewTokens: 12, doSample: true, topP: 0.9, seed: 1 };
    generate(model, PROMPTS, opts); // warm-up: the model's RoPE tables grow once
    const before = native.memStats().liveBytes;
    generate(model, PROMPTS, opts);
    generate(model, PROMPTS, { maxNewTokens: 5 });
    assert.equal(native.memStats().liveBytes, before);
  } finally {
    model.release();
  }
});

test('bad generation settings are ConfigErrors naming the field', () => {
  const { model } = fixtureModel('gpt2');
  try {
    const bad: [GenerationOptions, number[][], RegExp][] = [
      [{ maxNewTokens: 2, temperature: 0, doSample: true }, [[1]], /temperature/],
      [{ maxNewTokens: 2, topP: 0 }, [[1]], /top_p/],
      [{ maxNewTokens: 2, topK: -1 }, [[1]], /top_k/],
      [{ maxNewTokens: -1 }, [[1]], /max_new_tokens/],
      [{ maxNewTokens: 2 }, [[]], /prompt 0 is empty/],
      [{ maxNewTokens: 2 }, [[1], [99]], /prompt 1 has token id 99/],
      [{ maxNewTokens: 16 }, [[1]], /exceed GPT-2's 16 positions/],
    ];
    for (const [opts, prompts, re] of bad) assert.throws(() => generate(model, prompts, opts), (e: unknown) => e instanceof ConfigError && re.test(e.message));
  } finally {
    model.release();
  }
});
