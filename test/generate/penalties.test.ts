// OpenAI's frequency and presence penalties (src/generate/sampling.ts): exact values on a row of logits, only
// generated tokens counted, off by default, and their range checked like the other sampling settings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/errors.ts';
import { applyFrequencyPenalties, processScores, resolveSampling } from '../../src/generate/index.ts';

test('a token generated c times loses c * frequency + presence; tokens never generated keep their logit', () => {
  const scores = Float64Array.from([1, 2, 3, 4]);
  applyFrequencyPenalties(scores, [2, 2, 3, 2], 0.5, 0.25);
  assert.deepEqual([...scores], [1, 2, 3 - 3 * 0.5 - 0.25, 4 - 0.5 - 0.25]);
  const negative = Float64Array.from([1, 2]);
  applyFrequencyPenalties(negative, [0], -1, -2);
  assert.deepEqual([...negative], [4, 2]);
});

test('processScores applies them after the repetition penalty, over the generated tokens only', () => {
  const s = resolveSampling({ repetitionPenalty: 2, frequencyPenalty: 1, presencePenalty: 0.5 });
  // Token 0 is in the prompt (seen) but never generated: only the repetition penalty touches it.
  const out = processScores([4, 4, 4], [0, 1], s, [1]);
  assert.deepEqual([...out], [2, 4 / 2 - 1 - 0.5, 4]);
  assert.deepEqual([...processScores([4, 4], [0], resolveSampling({}), [0, 0])], [4, 4], 'off by default');
});

test('penalties outside [-2, 2] are ConfigErrors naming the field', () => {
  assert.throws(() => resolveSampling({ frequencyPenalty: 2.5 }), (e: unknown) => e instanceof ConfigError && /frequency_penalty/.test(e.message));
  assert.throws(() => resolveSampling({ presencePenalty: Number.NaN }), (e: unknown) => e instanceof ConfigError && /presence_penalty/.test(e.message));
});
