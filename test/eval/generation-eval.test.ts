// Text generation and generation evaluation through a real SentencePiece tokenizer and a small Llama:
// prompts encoded as the tokenizer says, the stopping EOS left out of the text, metrics over the answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { evaluateGeneration, generationMetrics } from '../../src/eval/index.ts';
import { generate, generateText } from '../../src/generate/index.ts';
import { type LlamaConfig, parseModelConfig } from '../../src/models/config.ts';
import { Llama } from '../../src/models/llama.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const tokenizer = Tokenizer.fromSentencePiece(join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'bpe.model'));

function smallLlama(): Llama {
  const config = parseModelConfig({
    model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, eos_token_id: tokenizer.eosId,
  }, 'small-llama config.json');
  assert.equal(config.family, 'llama');
  return new Llama(config as LlamaConfig, { seed: 3, initStd: 0.5 });
}

const PROMPTS = ['Hello world', 'The quick brown fox jumps', 'a'];

test('generateText encodes prompts, stops at EOS and decodes the answer without it', () => {
  const model = smallLlama();
  try {
    const greedy = generateText(model, tokenizer, PROMPTS, { maxNewTokens: 6 });
    greedy.forEach((g, i) => {
      assert.deepEqual(g.promptIds, tokenizer.encode(PROMPTS[i] as string));
      assert.deepEqual(g.tokens, (generate(model, [g.promptIds], { maxNewTokens: 6, eosTokenIds: [tokenizer.eosId as number] })[0] as { tokens: number[] }).tokens);
    });
    // Make the third greedy token of the first prompt an EOS: generation stops there and the text leaves it out.
    const first = greedy[0] as { tokens: number[] };
    const stop = first.tokens[2] as number;
    const stopped = generateText(model, tokenizer, PROMPTS, { maxNewTokens: 6, eosTokenIds: [stop] })[0];
    assert.equal(stopped?.finishReason, 'eos');
    assert.deepEqual(stopped?.tokens, first.tokens.slice(0, first.tokens.indexOf(stop) + 1));
    assert.equal(stopped?.text, tokenizer.decode(first.tokens.slice(0, first.tokens.indexOf(stop)), { skipSpecial: true }));
  } finally {
    model.release();
  }
});

test('evaluateGeneration scores the generated answers against their references', () => {
  const model = smallLlama();
  try {
    const texts = generateText(model, tokenizer, PROMPTS, { maxNewTokens: 5 }).map((g) => g.text);
    const references = [texts[0] as string, 'something else entirely', [texts[2] as string, 'another']];
    const examples = PROMPTS.map((prompt, i) => ({ prompt, references: references[i] as string | string[] }));
    const r = evaluateGeneration(model, tokenizer, examples, { maxNewTokens: 5, batchSize: 2 });
    assert.deepEqual(r.predictions, texts);
    assert.deepEqual(r.metrics, generationMetrics(texts, references));
    assert.ok((r.metrics.em as number) >= 2 / 3);
    const ids = evaluateGeneration(model, tokenizer, PROMPTS.map((p, i) => ({ prompt: tokenizer.encode(p), references: references[i] as string })), { maxNewTokens: 5, metrics: ['rouge_l'] });
    assert.deepEqual(ids.predictions, texts);
    assert.deepEqual(Object.keys(ids.metrics), ['rouge_l']);
  } finally {
    model.release();
  }
});
