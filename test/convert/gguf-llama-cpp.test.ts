// The proof that the GGUF export runs in llama.cpp: the tiny demo Llama is exported, loaded by node-llama-cpp
// (llama.cpp's CPU build, pinned devDependency) and must tokenize exactly as sftkit's tokenizer and decode
// greedily exactly as sftkit's own generation, up to near-ties (top-2 logit margin < 1e-3). Q8_0 must agree
// until sftkit's margin falls under Q8_0_TIE, the band that 8-bit weights may legitimately flip.
// Skipped, with a message, only where node-llama-cpp is not installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportGguf, type GgufDtypeName } from '../../src/convert/gguf-export.ts';
import { generate } from '../../src/generate/index.ts';
import { logits, type CausalLM } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { Tensor, noGrad, scope } from '../../src/tensor/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { loadModel } from '../../src/train/model-io.ts';

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

async function llamaCppGreedy(n: NodeLlamaCpp, path: string, prompts: number[][]): Promise<number[][]> {
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
        if (got.length >= NEW_TOKENS || t === model.tokens.eos) break;
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
      (await import('node:fs')).mkdirSync(join(dir, dtype));
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
        if (a.divergedAt !== null) assert.ok(a.marginThere! < tie, `${dtype}: prompt ${i} diverges at step ${a.divergedAt} with margin ${a.marginThere} >= ${tie}: ours ${ours[i]}, llama.cpp ${theirs[i]}`);
      });
    }
  } finally {
    model.release();
    rmSync(dir, { recursive: true, force: true });
  }
});
