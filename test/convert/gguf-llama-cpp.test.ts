// The proof that the GGUF export runs in llama.cpp: the tiny demo Llama is exported, loaded by node-llama-cpp
// (llama.cpp's CPU build, pinned devDependency) and must tokenize exactly as sftkit's tokenizer and decode
// greedily exactly as sftkit's own generation, up to near-ties (top-2 logit margin < 1e-3). Q8_0 must agree
// until sftkit's margin falls under Q8_0_TIE, the band that 8-bit weights may legitimately flip.
// Skipped, with a message, only where node-llama-cpp is not installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportGguf, type GgufDtypeName } from '../../src/convert/gguf-export.ts';
import { generate } from '../../src/generate/index.ts';
import { logits, type CausalLM } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { Tensor, noGrad, scope } from '../../src/tensor/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { loadModel } from '../../src/train/model-io.ts';
import { writeSafetensors } from '../../src/formats/safetensors-writer.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { expectedTensors } from '../../src/models/tensor-table.ts';
import { BPE_PRE_TOKENIZERS } from '../../src/convert/gguf-vocab.ts';
import { BYTE_LEVEL, splitThenBytes, withTokenizer } from './gguf-fixtures.ts';

const MODEL_DIR = join(import.meta.dirname, '..', '..', 'assets', 'demo', 'base-model');
const TIE = 1e-3;
/** Q8_0 rounds each weight to 1/254 of its block's largest: a logit may move by a few hundredths. */
const Q8_0_TIE = 0.1;
const NEW_TOKENS = 24;

const PROMPTS = [
  'The capital of France is',
  'Once upon a time, there was a little',
  'Question: what is 12 + 30? Answer:',
  'Unicode: café, naïve, 東京, emoji 🙂 and ü',
  'Below is an instruction that describes a task. ### Instruction: Name three colors. ### Response:',
];

type NodeLlamaCpp = typeof import('node-llama-cpp');
let nlc: NodeLlamaCpp | null = null;
try {
  nlc = await import('node-llama-cpp');
} catch {
  nlc = null;
}
const skip = nlc === null ? 'node-llama-cpp is not installed (npm install -D node-llama-cpp@3.21.1 runs this proof)' : false;

/** sftkit's top-2 margin of the logits after each prefix of `ids` from position `from` on. */
function margins(model: CausalLM, ids: number[], from: number): number[] {
  return noGrad(() =>
    scope(() => {
      const S = ids.length;
      const hidden = model.forward(Tensor.from(Int32Array.from(ids), [1, S], 'int32'), { positions: positionIds(1, S) });
      const all = logits(model, hidden).toArray() as Float32Array; // (1, S, V)
      const V = all.length / S;
      const out: number[] = [];
      for (let p = from; p < S; p++) {
        const row = all.subarray(p * V, (p + 1) * V);
        let a = -Infinity;
        let b = -Infinity;
        for (const x of row) {
          if (x > a) [a, b] = [x, a];
          else if (x > b) b = x;
        }
        out.push(a - b);
      }
      return out;
    }),
  );
}

interface Agreement { steps: number; agreed: number; divergedAt: number | null; marginThere: number | null }

async function llamaCppGreedy(n: NodeLlamaCpp, path: string, prompts: number[][], o: { newTokens: number; stopAtEos: boolean } = { newTokens: NEW_TOKENS, stopAtEos: true }): Promise<number[][]> {
  const llama = await n.getLlama({ gpu: false, build: 'never', logLevel: n.LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: path });
  try {
    const out: number[][] = [];
    for (const p of prompts) {
      const ctx = await model.createContext({ contextSize: 256, threads: 1 });
      const seq = ctx.getSequence();
      const got: number[] = [];
      for await (const t of seq.evaluate(p as never, { temperature: 0 })) {
        got.push(t as number);
        if (got.length >= o.newTokens || (o.stopAtEos && t === model.tokens.eos)) break;
      }
      out.push(got);
      await ctx.dispose();
    }
    return out;
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

function compare(model: CausalLM, prompt: number[], ours: number[], theirs: number[]): Agreement {
  const m = margins(model, [...prompt, ...ours], prompt.length - 1);
  const steps = Math.min(ours.length, theirs.length);
  for (let i = 0; i < steps; i++) {
    if (ours[i] !== theirs[i]) return { steps, agreed: i, divergedAt: i, marginThere: m[i]! };
  }
  return { steps, agreed: steps, divergedAt: null, marginThere: null };
}

test('GGUF export runs in llama.cpp (node-llama-cpp): tokens and greedy decoding equal sftkit', { skip, timeout: 600_000 }, async () => {
  const n = nlc!;
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  const tok = Tokenizer.fromDir(MODEL_DIR);
  const model = loadModel(MODEL_DIR);
  try {
    const ids = PROMPTS.map((p) => tok.encode(p, { addBos: true, addEos: false }));
    const ours = generate(model, ids, { maxNewTokens: NEW_TOKENS, eosTokenIds: tok.eosId === null ? [] : [tok.eosId] }).map((g) => g.tokens);
    for (const dtype of ['float32', 'q8_0'] as GgufDtypeName[]) {
      const path = join(dir, dtype, 'model.gguf');
      mkdirSync(join(dir, dtype));
      exportGguf({ inputPath: MODEL_DIR, outputPath: path, dtype });
      // Tokenization: llama.cpp's SentencePiece-compatible tokenizer over our metadata.
      const llama = await n.getLlama({ gpu: false, build: 'never', logLevel: n.LlamaLogLevel.error });
      const lm = await llama.loadModel({ modelPath: path });
      for (const p of PROMPTS) assert.deepEqual(Array.from(lm.tokenize(p)), tok.encode(p, { addBos: false, addEos: false }), `tokens of ${JSON.stringify(p)} (${dtype})`);
      assert.equal(lm.tokens.bos, tok.bosId);
      assert.equal(lm.tokens.eos, tok.eosId);
      await lm.dispose();
      await llama.dispose();
      const theirs = await llamaCppGreedy(n, path, ids);
      const tie = dtype === 'q8_0' ? Q8_0_TIE : TIE;
      PROMPTS.forEach((p, i) => {
        const a = compare(model, ids[i]!, ours[i]!, theirs[i]!);
        console.log(`${dtype} ${JSON.stringify(p.slice(0, 24))}: ${a.agreed}/${a.steps} tokens agree${a.divergedAt === null ? '' : `, diverged at ${a.divergedAt} where sftkit's top-2 margin is ${a.marginThere!.toExponential(2)}`}`);
        if (a.divergedAt === null && theirs[i]!.length < ours[i]!.length) assert.equal(ours[i]![theirs[i]!.length], tok.eosId, `${dtype}: llama.cpp stopped early`);
        if (a.divergedAt !== null) assert.ok(a.marginThere! < tie, `${dtype}: prompt ${i} diverges at step ${a.divergedAt} with margin ${a.marginThere} >= ${tie}: ours ${ours[i]}, llama.cpp ${theirs[i]}`);
      });
    }
  } finally {
    model.release();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GGUF export of the tiny GQA Llama, tied Qwen2 and GPT-2 fixtures decodes in llama.cpp as in sftkit', { skip, timeout: 600_000 }, async () => {
  const n = nlc!;
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    const cases = [
      { fixture: 'llama-st-sharded', pre: splitThenBytes(BPE_PRE_TOKENIZERS[0]!.regex) }, // 4 heads over 2 KV heads: K permuted per KV head
      { fixture: 'qwen2-tied-bin', pre: splitThenBytes(BPE_PRE_TOKENIZERS[1]!.regex) }, // NEOX RoPE, q/k/v biases, tied output
      { fixture: 'gpt2-st', pre: BYTE_LEVEL }, // Conv1D transposes, learned positions
    ];
    // Token ids fed directly: these random-weight fixtures have toy vocabularies.
    const prompts = [[1, 5, 9, 12, 30], [1, 40, 41, 7], [3, 3, 3, 3, 3, 3]];
    for (const c of cases) {
      const dir = withTokenizer(c.fixture, c.pre, tmp, true);
      const path = join(tmp, `${c.fixture}.gguf`);
      exportGguf({ inputPath: dir, outputPath: path, dtype: 'float32' });
      rmSync(join(tmp, 'Modelfile'));
      const model = loadModel(dir);
      try {
        const ours = generate(model, prompts, { maxNewTokens: 12, eosTokenIds: [] }).map((g) => g.tokens);
        const theirs = await llamaCppGreedy(n, path, prompts, { newTokens: 12, stopAtEos: false });
        prompts.forEach((p, i) => {
          const a = compare(model, p, ours[i]!, theirs[i]!);
          console.log(`${c.fixture} prompt ${i}: ${a.agreed}/${a.steps} tokens agree${a.divergedAt === null ? '' : `, diverged at ${a.divergedAt} (margin ${a.marginThere!.toExponential(2)})`}`);
          // node-llama-cpp ends a sequence at an end-of-generation token without yielding it: sftkit must have
          // produced that EOS right there.
          if (a.divergedAt === null && theirs[i]!.length < 12) {
            assert.ok(model.config.eosTokenIds.includes(ours[i]![theirs[i]!.length]!), `${c.fixture}: llama.cpp stopped after ${theirs[i]}, sftkit went on with ${ours[i]}`);
          }
          if (a.divergedAt !== null) assert.ok(a.marginThere! < TIE, `${c.fixture} prompt ${i}: diverges at step ${a.divergedAt} with margin ${a.marginThere}: ours ${ours[i]}, llama.cpp ${theirs[i]}`);
        });
      } finally {
        model.release();
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('llama.cpp tokenizes exactly as sftkit with a Llama-style SentencePiece model (identity normalizer, byte fallback)', { skip, timeout: 300_000 }, async () => {
  const n = nlc!;
  const tmp = mkdtempSync(join(tmpdir(), 'sftkit-gguf-'));
  try {
    // A 1-layer Llama around test/fixtures/tokenizer/bpe.model (3000 pieces, no normalization rules, as Llama's own).
    const dir = join(tmp, 'm');
    mkdirSync(dir);
    const config = { model_type: 'llama', vocab_size: 3000, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, bos_token_id: 1, eos_token_id: 2 };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    copyFileSync(join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'bpe.model'), join(dir, 'tokenizer.model'));
    const specs = expectedTensors(parseModelConfig(config, 'config.json')).map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape }));
    writeSafetensors(join(dir, 'model.safetensors'), specs, (sp) => new Uint8Array(sp.shape.reduce((a, b) => a * b, 1) * 4));
    const r = exportGguf({ inputPath: dir, outputPath: join(tmp, 'v.gguf') });
    assert.deepEqual(r.warnings, []);
    const tok = Tokenizer.fromDir(dir);
    const llama = await n.getLlama({ gpu: false, build: 'never', logLevel: n.LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: join(tmp, 'v.gguf'), vocabOnly: true });
    const texts = [
      'Hello world', 'Question: what is 12 + 30?\nAnswer: 42.', '  two leading spaces and   runs\tof\twhitespace  ', '\n\nnewlines first',
      'Unicode: café, naïve, 東京, emoji 🙂, ü and ß', 'bytes for unseen chars: \u0800\u2603\uFB01', 'tokens like </s> and <s> stay text',
      "don't stop-believing; it's 3.14159!", '### Instruction:\nName three colors.\n\n### Response:',
    ];
    for (const t of texts) assert.deepEqual(Array.from(model.tokenize(t)), tok.encode(t, { addBos: false, addEos: false }), JSON.stringify(t));
    await model.dispose();
    await llama.dispose();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
