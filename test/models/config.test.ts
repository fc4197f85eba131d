// HF config.json parsing for every supported model_type, and the tensor tables checked against the known
// parameter counts of the published models.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/errors.ts';
import { parseModelConfig, type ModelConfig } from '../../src/models/config.ts';
import { expectedTensors, isNonWeightBuffer } from '../../src/models/tensor-table.ts';

const LLAMA2_7B = {
  architectures: ['LlamaForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096,
  initializer_range: 0.02, intermediate_size: 11008, max_position_embeddings: 4096, model_type: 'llama',
  num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 32, pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: null, tie_word_embeddings: false, torch_dtype: 'float16', vocab_size: 32000,
};
const LLAMA31_8B = {
  model_type: 'llama', hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 8, vocab_size: 128256, max_position_embeddings: 131072, rms_norm_eps: 1e-5, rope_theta: 500000.0,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], tie_word_embeddings: false, torch_dtype: 'bfloat16',
};
const MISTRAL_7B = {
  model_type: 'mistral', hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 8, vocab_size: 32000, max_position_embeddings: 32768, rms_norm_eps: 1e-5, rope_theta: 10000.0,
  sliding_window: 4096, bos_token_id: 1, eos_token_id: 2, tie_word_embeddings: false,
};
const QWEN2_05B = {
  model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14,
  num_key_value_heads: 2, vocab_size: 151936, max_position_embeddings: 32768, rms_norm_eps: 1e-6, rope_theta: 1000000.0,
  sliding_window: 32768, use_sliding_window: false, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151643,
};
const GPT2 = {
  model_type: 'gpt2', activation_function: 'gelu_new', n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12, n_positions: 1024,
  layer_norm_epsilon: 1e-5, vocab_size: 50257, bos_token_id: 50256, eos_token_id: 50256,
};

function params(c: ModelConfig, withTied = false): number {
  return expectedTensors(c)
    .filter((t) => withTied || t.optional !== 'tied')
    .reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
}

test('llama 2: shapes and the published parameter count', () => {
  const c = parseModelConfig(LLAMA2_7B, 'config.json');
  assert.equal(c.family, 'llama');
  if (c.family !== 'llama') return;
  assert.deepEqual([c.headDim, c.numKeyValueHeads, c.ropeTheta, c.ropeScaling, c.eosTokenIds, c.torchDtype], [128, 32, 10000, null, [2], 'float16']);
  assert.equal(expectedTensors(c).length, 291);
  assert.equal(params(c), 6_738_415_616);
});

test('llama 3.1: GQA, llama3 rope scaling, several eos ids', () => {
  const c = parseModelConfig(LLAMA31_8B, 'config.json');
  if (c.family !== 'llama') assert.fail('not llama');
  assert.deepEqual(c.ropeScaling, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  assert.deepEqual(c.eosTokenIds, [128001, 128008, 128009]);
  assert.deepEqual(expectedTensors(c).find((t) => t.name === 'model.layers.0.self_attn.k_proj.weight')?.shape, [1024, 4096]);
  assert.equal(params(c), 8_030_261_248);
});

test('mistral and qwen2 are llama-family configs', () => {
  const m = parseModelConfig(MISTRAL_7B, 'config.json');
  if (m.family !== 'llama') assert.fail('not llama');
  assert.equal(m.slidingWindow, 4096);
  assert.equal(params(m), 7_241_732_096);
  const q = parseModelConfig(QWEN2_05B, 'config.json');
  if (q.family !== 'llama') assert.fail('not llama');
  assert.deepEqual([q.qkvBias, q.oBias, q.tieWordEmbeddings, q.slidingWindow, q.headDim], [true, false, true, null, 64]);
  assert.deepEqual(expectedTensors(q).find((t) => t.name === 'model.layers.3.self_attn.v_proj.bias')?.shape, [128]);
  assert.equal(expectedTensors(q).at(-1)?.optional, 'tied');
  assert.equal(params(q), 494_032_768);
});

test('sliding windows follow transformers: mistral on every layer, qwen2 only when used, from max_window_layers', () => {
  const llama = (c: ReturnType<typeof parseModelConfig>) => (c.family === 'llama' ? c : assert.fail('not llama'));
  const base = { hidden_size: 8, intermediate_size: 16, num_attention_heads: 2, num_hidden_layers: 4, vocab_size: 10 };
  const m = llama(parseModelConfig({ ...base, model_type: 'mistral' }, 'config.json'));
  assert.deepEqual([m.slidingWindow, m.windowedLayers], [4096, [true, true, true, true]]);
  const off = llama(parseModelConfig({ ...base, model_type: 'mistral', sliding_window: null }, 'config.json'));
  assert.deepEqual([off.slidingWindow, off.windowedLayers], [null, [false, false, false, false]]);
  const qOff = llama(parseModelConfig({ ...base, model_type: 'qwen2', sliding_window: 32, max_window_layers: 2 }, 'config.json'));
  assert.deepEqual(qOff.windowedLayers, [false, false, false, false]);
  const q = llama(parseModelConfig({ ...base, model_type: 'qwen2', use_sliding_window: true, sliding_window: 32, max_window_layers: 2 }, 'config.json'));
  assert.deepEqual([q.slidingWindow, q.windowedLayers], [32, [false, false, true, true]]);
  const qt = llama(parseModelConfig({ ...base, model_type: 'qwen2', use_sliding_window: true, sliding_window: 32, layer_types: ['sliding_attention', 'full_attention', 'full_attention', 'sliding_attention'] }, 'config.json'));
  assert.deepEqual(qt.windowedLayers, [true, false, false, true]);
  assert.throws(() => parseModelConfig({ ...base, model_type: 'qwen2', use_sliding_window: true, layer_types: ['full_attention'] }, 'config.json'), /layer_types must list/);
  const l = llama(parseModelConfig({ ...base, model_type: 'llama', sliding_window: 8 }, 'config.json'));
  assert.equal(l.slidingWindow, null);
});

test('gpt2: Conv1D layouts and the published parameter count', () => {
  const c = parseModelConfig(GPT2, 'config.json');
  if (c.family !== 'gpt2') assert.fail('not gpt2');
  assert.deepEqual([c.nInner, c.tieWordEmbeddings, c.activationFunction], [3072, true, 'gelu_new']);
  assert.deepEqual(expectedTensors(c).find((t) => t.name === 'transformer.h.0.attn.c_attn.weight')?.shape, [768, 2304]);
  assert.equal(params(c), 124_439_808);
  assert.ok(isNonWeightBuffer(c, 'h.3.attn.bias') && isNonWeightBuffer(c, 'transformer.h.0.attn.masked_bias'));
  assert.ok(!isNonWeightBuffer(c, 'transformer.h.0.attn.c_attn.bias'));
});

test('bad configs are ConfigErrors naming the field', () => {
  const bad = (json: unknown, pattern: RegExp) =>
    assert.throws(() => parseModelConfig(json, 'cfg.json'), (e: unknown) => e instanceof ConfigError && pattern.test(e.message));
  bad({ model_type: 'bert' }, /cfg.json: model_type "bert" is not supported \(supported: llama, mistral, qwen2, gpt2\)/);
  bad({ ...LLAMA2_7B, model_type: undefined }, /model_type undefined is not supported/);
  bad({ ...LLAMA2_7B, hidden_size: -1 }, /cfg.json: hidden_size must be a positive integer/);
  bad({ ...LLAMA2_7B, num_key_value_heads: 5 }, /must be a multiple of num_key_value_heads/);
  bad({ ...LLAMA2_7B, rope_scaling: { type: 'yarn', factor: 4 } }, /rope type "yarn" is not supported/);
  bad({ ...LLAMA2_7B, rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling: low_freq_factor must be a positive number/);
  bad({ ...LLAMA2_7B, eos_token_id: 'x' }, /eos_token_id must be a token id/);
  bad([], /not a JSON object/);
});
