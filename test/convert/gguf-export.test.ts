// GGUF export of every architecture, read back with sftkit's GGUF reader: metadata keys and values as
// llama.cpp's converter writes them, tensor names and ggml shapes, Q/K rows permuted exactly, GPT-2's Conv1D
// weights transposed exactly, f32 norms, the tied GPT-2 output, tokenizer arrays, the Modelfile; then the
// refusals (unknown pre-tokenizer, no tokenizer, existing output, --merge_lora).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, FormatError } from '../../src/errors.ts';
import { exportGguf, llama3RopeFactors } from '../../src/convert/gguf-export.ts';
import { parseModelConfig, type LlamaConfig } from '../../src/models/config.ts';
import { inverseFrequencies } from '../../src/models/rope.ts';
import { permutedSourceRow } from '../../src/convert/gguf-tensor-map.ts';
import { modelfileText } from '../../src/convert/modelfile.ts';
import { partTemplateJinja } from '../../src/convert/gguf-chat-template.ts';
import { chatPromptIds } from '../../src/data/chat-prompt.ts';
import { HfTemplateEncoder } from '../../src/data/hf-template.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { BPE_PRE_TOKENIZERS } from '../../src/convert/gguf-vocab.ts';
import { BYTE_LEVEL, splitThenBytes, withTokenizer } from './gguf-fixtures.ts';
import { castFloat } from '../../src/formats/dtypes.ts';
import { decodeGgml, encodeGgml, type GgmlFloatType } from '../../src/formats/ggml-encode.ts';
import { openGguf, type GgufFile } from '../../src/formats/gguf.ts';
import { openWeightSource } from '../../src/formats/weight-source.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'weights');
const DEMO = join(ROOT, 'assets', 'demo', 'base-model');

function sourceF32(dir: string, name: string): Float32Array {
  const src = openWeightSource(dir);
  try {
    const t = src.get(name)!;
    return new Float32Array(new Uint8Array(castFloat(src.read(name), t.dtype, 'F32')).buffer);
  } finally {
    src.close();
  }
}

function tensorF32(f: GgufFile, name: string): Float32Array {
  const t = f.tensors.find((x) => x.name === name)!;
  return decodeGgml(f.read(name), t.type as GgmlFloatType);
}

const md = (f: GgufFile, key: string): unknown => f.metadata.get(key)?.value;

test('GGUF export, demo Llama (SentencePiece): metadata, tokenizer arrays, permuted Q/K, f32 norms, Modelfile', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const out = join(tmp, 'tiny.gguf');
    const r = exportGguf({ inputPath: DEMO, outputPath: out, dtype: 'float32' });
    assert.equal(r.tensors, 1 + 4 * 9 + 2);
    assert.match(r.warnings.join('\n'), /normalizes text \(nmt_nfkc normalization, remove_extra_whitespaces\) and llama.cpp does not/);
    const f = openGguf(out);
    try {
      const keys: Array<[string, unknown]> = [
        ['general.architecture', 'llama'], ['general.type', 'model'], ['general.name', 'base-model'], ['general.file_type', 0], ['general.quantization_version', 2],
        ['llama.block_count', 4], ['llama.context_length', 256], ['llama.embedding_length', 256], ['llama.feed_forward_length', 688],
        ['llama.attention.head_count', 4], ['llama.attention.head_count_kv', 4], ['llama.rope.freq_base', 10000],
        ['llama.attention.layer_norm_rms_epsilon', Math.fround(1e-5)], ['llama.vocab_size', 4096], ['llama.rope.dimension_count', 64],
        ['tokenizer.ggml.model', 'llama'], ['tokenizer.ggml.pre', 'default'], ['tokenizer.ggml.bos_token_id', 1], ['tokenizer.ggml.eos_token_id', 2],
        ['tokenizer.ggml.unknown_token_id', 0], ['tokenizer.ggml.padding_token_id', 0], ['tokenizer.ggml.add_bos_token', true],
        ['tokenizer.ggml.add_eos_token', false], ['tokenizer.ggml.add_space_prefix', true],
      ];
      for (const [k, v] of keys) assert.deepEqual(md(f, k), v, k);
      assert.equal(f.metadata.get('llama.block_count')?.type, 'uint32');
      assert.equal(f.metadata.get('llama.rope.freq_base')?.type, 'float32');
      const tokens = md(f, 'tokenizer.ggml.tokens') as string[];
      const types = md(f, 'tokenizer.ggml.token_type') as number[];
      assert.equal(tokens.length, 4096);
      assert.deepEqual(tokens.slice(0, 4), ['<unk>', '<s>', '</s>', '<0x00>']);
      assert.deepEqual(types.slice(0, 4), [2, 3, 3, 6]);
      assert.equal((md(f, 'tokenizer.ggml.scores') as number[]).length, 4096);

      const names = f.tensors.map((t) => t.name);
      assert.deepEqual(names.slice(0, 2), ['token_embd.weight', 'blk.0.attn_norm.weight']);
      assert.ok(names.includes('output.weight') && names.includes('output_norm.weight') && names.includes('blk.3.ffn_down.weight'));
      const q = f.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
      assert.deepEqual([q.shape, q.type], [[256, 256], 'F32']);
      // Q rows: head h's rows (j, i) -> (i, j); the weights themselves are exact (bf16 -> f32).
      const src = sourceF32(DEMO, 'model.layers.0.self_attn.q_proj.weight');
      const got = tensorF32(f, 'blk.0.attn_q.weight');
      for (const r of [0, 1, 2, 31, 32, 33, 63, 64, 65, 255]) {
        const s = permutedSourceRow(r, 256, 4);
        assert.deepEqual(got.subarray(r * 256, (r + 1) * 256), src.subarray(s * 256, (s + 1) * 256), `row ${r} <- ${s}`);
      }
      assert.equal(permutedSourceRow(1, 256, 4), 32); // head 0: output row 1 is the first row of the second half
      assert.deepEqual(tensorF32(f, 'blk.0.attn_v.weight'), sourceF32(DEMO, 'model.layers.0.self_attn.v_proj.weight'));
    } finally {
      f.close();
    }
    assert.equal(readFileSync(join(tmp, 'Modelfile'), 'utf8'), [
      '# ollama Modelfile written by sftkit: ollama create <name> -f Modelfile',
      'FROM ./tiny.gguf',
      '# no TEMPLATE: ollama uses the chat template stored in the GGUF (tokenizer.chat_template)',
      'PARAMETER stop "</s>"',
      '',
    ].join('\n'));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('GGUF export q8_0: weight matrices in Q8_0 within half a step of their block, F16 where rows are not whole blocks, norms f32', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const out = join(tmp, 'q.gguf');
    const r = exportGguf({ inputPath: DEMO, outputPath: out, dtype: 'q8_0' });
    assert.equal(r.dtype, 'Q8_0');
    // intermediate_size 688 is not a multiple of 32: ffn_down's rows fall back to F16, as in llama.cpp's converter.
    assert.deepEqual(r.f16Fallbacks, [0, 1, 2, 3].map((i) => `blk.${i}.ffn_down.weight`));
    const f = openGguf(out);
    try {
      assert.equal(md(f, 'general.file_type'), 7);
      const types = new Map(f.tensors.map((t) => [t.name, t.type]));
      assert.equal(types.get('token_embd.weight'), 'Q8_0');
      assert.equal(types.get('blk.0.ffn_up.weight'), 'Q8_0');
      assert.equal(types.get('blk.0.ffn_down.weight'), 'F16');
      assert.equal(types.get('blk.0.attn_norm.weight'), 'F32');
      assert.equal(types.get('output_norm.weight'), 'F32');
      const src = sourceF32(DEMO, 'model.layers.1.mlp.up_proj.weight');
      const got = tensorF32(f, 'blk.1.ffn_up.weight');
      for (let b = 0; b < src.length / 32; b++) {
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(src[b * 32 + i]!));
        // Half a quantization step, plus the f16 rounding of the scale (relative 2^-11) times |q| <= 127.
        const bound = (amax / 127) * (0.5 + 127 / 2048) + 1e-12;
        for (let i = 0; i < 32; i++) assert.ok(Math.abs(got[b * 32 + i]! - src[b * 32 + i]!) <= bound, `block ${b} element ${i}`);
      }
    } finally {
      f.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('GGUF export, Llama with GQA and a Llama 3 BPE tokenizer.json: K permuted over the KV heads, llama-bpe', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const dir = withTokenizer('llama-st-sharded', splitThenBytes(BPE_PRE_TOKENIZERS[0]!.regex), tmp);
    const out = join(tmp, 'out', 'llama.gguf');
    mkdirSync(join(tmp, 'out'));
    exportGguf({ inputPath: dir, outputPath: out, dtype: 'float16' });
    const f = openGguf(out);
    try {
      assert.equal(md(f, 'tokenizer.ggml.model'), 'gpt2');
      assert.equal(md(f, 'tokenizer.ggml.pre'), 'llama-bpe');
      assert.deepEqual(md(f, 'tokenizer.ggml.merges'), ['h e', 'l l', 'Ġ t']);
      const tokens = md(f, 'tokenizer.ggml.tokens') as string[];
      assert.deepEqual([tokens.length, tokens[3], tokens[32], tokens[33], tokens[63]], [64, 'a', 'Ġt', '[PAD33]', '[PAD63]']);
      assert.deepEqual((md(f, 'tokenizer.ggml.token_type') as number[]).slice(0, 4).concat((md(f, 'tokenizer.ggml.token_type') as number[])[40]!), [3, 3, 3, 1, 5]);
      assert.equal(md(f, 'tokenizer.chat_template'), "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}");
      assert.equal(md(f, 'general.file_type'), 1);
      assert.equal(md(f, 'llama.attention.head_count_kv'), 2);
      const k = f.tensors.find((t) => t.name === 'blk.1.attn_k.weight')!;
      assert.deepEqual([k.shape, k.type], [[8, 16], 'F16']);
      assert.equal(f.tensors.find((t) => t.name === 'blk.1.ffn_norm.weight')!.type, 'F32');
      const src = sourceF32(dir, 'model.layers.1.self_attn.k_proj.weight'); // (2 heads x 4, 16), stored bf16
      const got = tensorF32(f, 'blk.1.attn_k.weight');
      // head_dim 4: each head's rows [0, 1, 2, 3] become [0, 2, 1, 3].
      for (const [r, s] of [[0, 0], [1, 2], [2, 1], [3, 3], [4, 4], [5, 6], [6, 5], [7, 7]] as const) {
        assert.deepEqual(got.subarray(r * 16, (r + 1) * 16), src.subarray(s * 16, (s + 1) * 16), `row ${r} <- ${s}`); // bf16 values are exact in f16 here
      }
    } finally {
      f.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('GGUF export, tied Qwen2: qwen2 keys, no output.weight (llama.cpp reuses the embedding), q/k/v biases unpermuted', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const dir = withTokenizer('qwen2-tied-bin', splitThenBytes(BPE_PRE_TOKENIZERS[1]!.regex), tmp);
    const out = join(tmp, 'qwen.gguf');
    exportGguf({ inputPath: dir, outputPath: out });
    const f = openGguf(out);
    try {
      assert.equal(md(f, 'general.architecture'), 'qwen2');
      assert.equal(md(f, 'general.file_type'), 0); // stored float32 -> F32 by default
      assert.equal(md(f, 'tokenizer.ggml.pre'), 'qwen2');
      for (const k of ['qwen2.block_count', 'qwen2.context_length', 'qwen2.attention.head_count_kv', 'qwen2.rope.freq_base']) assert.ok(f.metadata.has(k), k);
      assert.equal(f.metadata.has('qwen2.rope.dimension_count'), false);
      const names = f.tensors.map((t) => t.name);
      assert.equal(names.includes('output.weight'), false);
      assert.equal(names.length, 1 + 2 * 12 + 1);
      assert.deepEqual(tensorF32(f, 'blk.0.attn_q.bias'), sourceF32(dir, 'model.layers.0.self_attn.q_proj.bias'));
      assert.deepEqual(tensorF32(f, 'blk.0.attn_k.weight'), sourceF32(dir, 'model.layers.0.self_attn.k_proj.weight'));
    } finally {
      f.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('GGUF export, GPT-2: Conv1D weights transposed, tied output written, position embeddings f32, gpt-2 pre-tokenizer', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const dir = withTokenizer('gpt2-st', BYTE_LEVEL, tmp);
    const out = join(tmp, 'gpt2.gguf');
    exportGguf({ inputPath: dir, outputPath: out, dtype: 'bfloat16' });
    const f = openGguf(out);
    try {
      const keys: Array<[string, unknown]> = [
        ['general.architecture', 'gpt2'], ['gpt2.block_count', 2], ['gpt2.context_length', 32], ['gpt2.embedding_length', 16],
        ['gpt2.feed_forward_length', 64], ['gpt2.attention.head_count', 2], ['gpt2.attention.layer_norm_epsilon', Math.fround(1e-5)],
        ['general.file_type', 32], ['tokenizer.ggml.model', 'gpt2'], ['tokenizer.ggml.pre', 'gpt-2'], ['tokenizer.ggml.bos_token_id', 63], ['tokenizer.ggml.eos_token_id', 63],
      ];
      for (const [k, v] of keys) assert.deepEqual(md(f, k), v, k);
      const t = new Map(f.tensors.map((x) => [x.name, x]));
      assert.deepEqual([t.get('blk.0.attn_qkv.weight')!.shape, t.get('blk.0.attn_qkv.weight')!.type], [[48, 16], 'BF16']);
      assert.deepEqual([t.get('blk.1.ffn_up.weight')!.shape, t.get('blk.1.ffn_down.weight')!.shape], [[64, 16], [16, 64]]);
      assert.equal(t.get('position_embd.weight')!.type, 'F32');
      assert.equal(t.get('blk.0.attn_qkv.bias')!.type, 'F32');
      const src = sourceF32(dir, 'transformer.h.0.attn.c_attn.weight'); // (16 in, 48 out), stored f32
      const got = tensorF32(f, 'blk.0.attn_qkv.weight'); // (48, 16) bf16
      const bf16 = (x: number): number => decodeGgml(encodeGgml(new Float32Array([x]), 'BF16'), 'BF16')[0]!;
      for (let o = 0; o < 48; o++) for (let i = 0; i < 16; i++) assert.equal(got[o * 16 + i], bf16(src[i * 48 + o]!), `[${o}, ${i}]`);
      assert.deepEqual(tensorF32(f, 'output.weight'), tensorF32(f, 'token_embd.weight'));
      assert.deepEqual(tensorF32(f, 'position_embd.weight'), sourceF32(dir, 'transformer.wpe.weight'));
      assert.equal((md(f, 'tokenizer.ggml.tokens') as string[])[63], '<|endoftext|>');
      assert.equal((md(f, 'tokenizer.ggml.token_type') as number[])[63], 3);
    } finally {
      f.close();
    }
    assert.match(readFileSync(join(tmp, 'Modelfile'), 'utf8'), /^PARAMETER stop "<\|endoftext\|>"$/m);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('GGUF export refuses: an unknown pre-tokenizer, no tokenizer, an existing output; the CLI refuses --merge_lora', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const odd = withTokenizer('gpt2-st', splitThenBytes('\\s+|\\w+'), tmp);
    assert.throws(() => exportGguf({ inputPath: odd, outputPath: join(tmp, 'a.gguf') }), (e: unknown) => e instanceof FormatError && /pre_tokenizer: this pre-tokenizer \("\\\\s\+\|\\\\w\+"\) has no llama.cpp name/.test(e.message));
    assert.throws(() => exportGguf({ inputPath: join(FIXTURES, 'gpt2-st'), outputPath: join(tmp, 'b.gguf') }), (e: unknown) => e instanceof FormatError && /no tokenizer.model or tokenizer.json; a GGUF file carries its tokenizer/.test(e.message));
    writeFileSync(join(tmp, 'c.gguf'), '');
    assert.throws(() => exportGguf({ inputPath: DEMO, outputPath: join(tmp, 'c.gguf') }), ConfigError);
    const cli = (args: string[]): ReturnType<typeof spawnSync> =>
      spawnSync(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), 'convert', ...args], { encoding: 'utf8', env: { ...process.env, SFTKIT_FROM_SOURCE: '1' } });
    const lora = cli(['--reversed', '--format', 'gguf', '--merge_lora', '--input_path', DEMO, '--output_path', join(tmp, 'd.gguf')]);
    assert.notEqual(lora.status, 0);
    assert.match(String(lora.stderr), /--merge_lora exports an HF folder: use it with --reversed \(and --format hf\)/);
    const notReversed = cli(['--format', 'gguf', '--input_path', DEMO, '--output_path', join(tmp, 'e.gguf')]);
    assert.match(String(notReversed.stderr), /--format gguf exports a checkpoint: add --reversed/);
    const q4 = cli(['--reversed', '--format', 'gguf', '--dtype', 'q4_0', '--input_path', DEMO, '--output_path', join(tmp, 'f.gguf')]);
    assert.match(String(q4.stderr), /--dtype q4_0 is not supported for GGUF \(supported: float32, float16, bfloat16, q8_0\)/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('Modelfile: the training template as an ollama TEMPLATE, with the Alpaca prompt inside the user turn', () => {
  assert.equal(modelfileText({ ggufFile: 'm.gguf', eosText: '</s>', template: 'vicuna', alpacaPrompts: true }), [
    '# ollama Modelfile written by sftkit: ollama create <name> -f Modelfile',
    'FROM ./m.gguf',
    'TEMPLATE """{{ if .System }}{{ .System }} {{ end }}{{ if .Prompt }}USER: Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{{ .Prompt }}\n\n### Response: {{ end }}ASSISTANT: {{ .Response }}"""',
    'SYSTEM """A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user\'s questions."""',
    'PARAMETER stop "</s>"',
    '',
  ].join('\n'));
  const chatml = modelfileText({ ggufFile: 'm.gguf', eosText: '<|endoftext|>', template: 'chatml', alpacaPrompts: false });
  assert.match(chatml, /^TEMPLATE """\{\{ if \.System \}\}<\|im_start\|>system\n/m);
  assert.match(chatml, /PARAMETER stop "<\|endoftext\|>"\nPARAMETER stop "<\|im_end\|>"\n$/);
  assert.match(modelfileText({ ggufFile: 'm.gguf', eosText: null, template: 'hf', alpacaPrompts: false }), /# no TEMPLATE: ollama uses the chat template stored in the GGUF/);
});

test('Llama 3 RoPE scaling: rope_freqs.weight holds the divisors that turn HF\'s inv_freq into the unscaled one', () => {
  const cfg = parseModelConfig({
    model_type: 'llama', vocab_size: 64, hidden_size: 1024, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 8, rope_theta: 500000,
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  }, 'config.json') as LlamaConfig;
  const factors = llama3RopeFactors(cfg);
  const unscaled = inverseFrequencies(128, 500000, null);
  const scaled = inverseFrequencies(128, 500000, cfg.ropeScaling);
  assert.equal(factors.length, 64);
  assert.equal(factors[0], 1); // high frequencies untouched
  assert.equal(factors[63], 8); // low frequencies divided by the factor
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(unscaled[i]! / factors[i]! - scaled[i]!) <= 1e-6 * unscaled[i]!, `frequency ${i}`);

  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const dir = withTokenizer('llama-st-sharded', splitThenBytes(BPE_PRE_TOKENIZERS[0]!.regex), tmp);
    const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } }));
    exportGguf({ inputPath: dir, outputPath: join(tmp, 'l3.gguf') });
    const f = openGguf(join(tmp, 'l3.gguf'));
    try {
      const t = f.tensors.find((x) => x.name === 'rope_freqs.weight')!;
      assert.deepEqual([t.shape, t.type], [[2], 'F32']);
      assert.equal(f.metadata.has('llama.rope.scaling.type'), false);
    } finally {
      f.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('the part templates as Jinja render to exactly the ids chat and training build (every template, system, history, Alpaca wrapping)', () => {
  // An identity-normalizer SentencePiece model, so a newline that went missing would change the ids.
  const tok = Tokenizer.fromSentencePiece(join(ROOT, 'test', 'fixtures', 'tokenizer', 'bpe.model'));
  const histories = [[], [{ user: 'Hi there', assistant: 'Hello.' }], [{ user: 'a', assistant: 'b' }, { user: 'c\nd', assistant: 'e f' }]];
  let cases = 0;
  for (const template of ['vicuna', 'alpaca', 'chatml', 'llama2']) {
    for (const alpacaPrompts of [false, true]) {
      const enc = new HfTemplateEncoder(tok, partTemplateJinja(template, alpacaPrompts));
      for (const system of [null, 'Be brief.', '']) {
        for (const history of histories) {
          const want = chatPromptIds(tok, history, 'Name three colors.', { template, system, alpacaPrompts });
          assert.deepEqual(enc.chatPromptIds(system, history, 'Name three colors.'), want, `${template} alpaca=${alpacaPrompts} system=${JSON.stringify(system)} rounds=${history.length}`);
          cases++;
        }
      }
    }
  }
  assert.equal(cases, 72);
  assert.equal(partTemplateJinja('hf', false), null);
});

test('GGUF export of a training checkpoint: its training template becomes tokenizer.chat_template and the Modelfile TEMPLATE', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const records = join(tmp, 'records');
    mkdirSync(records);
    writeFileSync(join(records, 'manifest.json'), JSON.stringify({ magic: 'sftkit-records', template: 'vicuna', prompt_format: 'alpaca' }));
    const ckpt = join(tmp, 'ckpt');
    cpSync(DEMO, ckpt, { recursive: true });
    writeFileSync(join(ckpt, 'trainer_state.json'), JSON.stringify({ step: 3, config: { train_dataset: { dataset_dir: records } } }));
    mkdirSync(join(tmp, 'export'));
    const r = exportGguf({ inputPath: ckpt, outputPath: join(tmp, 'export', 'sft.gguf'), dtype: 'float16' });
    assert.equal(r.chatTemplate, 'vicuna with Alpaca prompts (recorded with the training data)');
    const f = openGguf(join(tmp, 'export', 'sft.gguf'));
    try {
      assert.equal(md(f, 'tokenizer.chat_template'), partTemplateJinja('vicuna', true));
    } finally {
      f.close();
    }
    assert.match(readFileSync(join(tmp, 'export', 'Modelfile'), 'utf8'), /^TEMPLATE """\{\{ if \.System \}\}\{\{ \.System \}\} \{\{ end \}\}\{\{ if \.Prompt \}\}USER: Below is an instruction/m);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
