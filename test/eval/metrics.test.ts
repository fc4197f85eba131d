// Generation metrics against the values scripts/reference/metrics.py computes from the standard definitions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import { corpusBleu4, exactMatch, f1Score, generationMetrics, metricTokens, normalizeAnswer, rougeL } from '../../src/eval/index.ts';

interface Example { prediction: string; references: string[]; em: number; f1: number; rouge_l: number; tokens: string[]; answer_tokens: string[] }
const FIXTURE = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'eval', 'metrics.json'), 'utf8')) as {
  examples: Example[];
  mean: { em: number; f1: number; rouge_l: number };
  bleu: Record<string, { indices: number[]; bleu4: number }>;
};

const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) <= 1e-12, `${what}: ${a} vs ${b}`);

test('em, f1, rouge_l and tokenisation match the reference per example', () => {
  for (const e of FIXTURE.examples) {
    const what = JSON.stringify(e.prediction);
    assert.deepEqual(metricTokens(e.prediction), e.tokens, what);
    assert.equal(exactMatch(e.prediction, e.references), e.em, what);
    close(f1Score(e.prediction, e.references), e.f1, `f1 ${what}`);
    close(rougeL(e.prediction, e.references), e.rouge_l, `rouge_l ${what}`);
  }
});

test('corpus BLEU-4 (brevity penalty, smoothing, several references) matches the reference', () => {
  const preds = FIXTURE.examples.map((e) => e.prediction);
  const refs = FIXTURE.examples.map((e) => e.references);
  for (const [name, c] of Object.entries(FIXTURE.bleu)) {
    close(corpusBleu4(c.indices.map((i) => preds[i] as string), c.indices.map((i) => refs[i] as string[])), c.bleu4, `bleu4 ${name}`);
  }
  const all = generationMetrics(preds, refs);
  close(all.em as number, FIXTURE.mean.em, 'mean em');
  close(all.f1 as number, FIXTURE.mean.f1, 'mean f1');
  close(all.rouge_l as number, FIXTURE.mean.rouge_l, 'mean rouge_l');
  close(all.bleu4 as number, (FIXTURE.bleu.all as { bleu4: number }).bleu4, 'corpus bleu4');
});

test('SQuAD normalisation, identical texts and bad input', () => {
  assert.equal(normalizeAnswer('  The  Answer, is: "A theory"! '), 'answer is theory');
  close(corpusBleu4(['the cat sat on the mat today'], ['the cat sat on the mat today']), 1, 'identical bleu');
  assert.equal(corpusBleu4([''], ['x y z']), 0);
  assert.deepEqual(generationMetrics(['a b'], ['a b'], ['em', 'rouge_l']), { em: 1, rouge_l: 1 });
  assert.throws(() => generationMetrics(['a'], []), ConfigError);
  assert.throws(() => generationMetrics(['a'], ['a'], ['bleu' as never]), (e: unknown) => e instanceof ConfigError && /unknown generation metric bleu/.test(e.message));
});
