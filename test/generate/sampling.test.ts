// Logits processing against PyTorch written to HF's warpers (scripts/reference/generate_parity.py), and
// seeded draws that follow the processed distribution.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyTopK, applyTopP, nextToken, processScores, resolveSampling } from '../../src/generate/index.ts';
import { Rng } from '../../src/tensor/index.ts';

interface Case { temperature: number; top_k: number; top_p: number; repetition_penalty: number; scores: (number | null)[][] }
const FIXTURE = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'generate', 'generate_parity.json'), 'utf8')) as {
  processors: { rows: number[][]; seen: number[]; cases: Case[] };
};

test('repetition penalty, temperature, top-k and top-p give HF\'s processed scores', () => {
  const { rows, seen, cases } = FIXTURE.processors;
  for (const c of cases) {
    const s = resolveSampling({ doSample: true, temperature: c.temperature, topK: c.top_k, topP: c.top_p, repetitionPenalty: c.repetition_penalty });
    rows.forEach((row, r) => {
      const got = processScores(row, seen, s);
      const want = c.scores[r] as (number | null)[];
      got.forEach((v, i) => {
        const w = want[i];
        if (w === null || w === undefined) assert.equal(v, -Infinity, `case ${JSON.stringify({ ...c, scores: undefined })} row ${r} token ${i}`);
        else assert.ok(Math.abs(v - w) <= 1e-12 * Math.max(1, Math.abs(w)), `row ${r} token ${i}: ${v} vs ${w}`);
      });
    });
  }
});

test('top-p by a typed-array sort removes exactly what the ordered definition removes (ties by id, -inf, -0)', () => {
  // The definition as written: (score, id) ascending, cumulative softmax, remove while it stays <= 1 - p.
  const reference = (scores: Float64Array, p: number): Float64Array => {
    const out = Float64Array.from(scores);
    const order = Array.from(out.keys()).filter((i) => out[i] !== -Infinity);
    order.sort((a, b) => (out[a] as number) - (out[b] as number) || a - b);
    const vals = order.map((i) => out[i] as number);
    const max = Math.max(...vals);
    const e = vals.map((v) => Math.exp(v - max));
    let sum = 0;
    for (const x of e) sum += x;
    let cum = 0;
    for (let j = 0; j < order.length - 1; j++) {
      cum += (e[j] as number) / sum;
      if (cum > 1 - p) break;
      out[order[j] as number] = -Infinity;
    }
    return out;
  };
  const rng = new Rng(11);
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + rng.int(trial < 200 ? 40 : 5000);
    // Few distinct values make ties; some -inf (already removed) and -0 / +0.
    const distinct = 1 + rng.int(trial % 3 === 0 ? 4 : 1000);
    const scores = Float64Array.from({ length: n }, () => {
      const u = rng.uniform();
      if (u < 0.05) return -Infinity;
      if (u < 0.08) return rng.uniform() < 0.5 ? -0 : 0;
      return Math.round(rng.uniform() * distinct) / 7 - 3;
    });
    const p = [0.01, 0.3, 0.9, 0.95, 0.999][trial % 5] as number;
    const got = Float64Array.from(scores);
    applyTopP(got, p);
    assert.deepEqual([...got].map((v) => v === -Infinity), [...reference(scores, p)].map((v) => v === -Infinity), `trial ${trial}: n ${n}, p ${p}`);
  }
});

test('top-k by a heap keeps what a full sort keeps (ties with the k-th kept, -inf)', () => {
  const rng = new Rng(12);
  for (let trial = 0; trial < 300; trial++) {
    const n = 2 + rng.int(trial < 200 ? 50 : 5000);
    const distinct = 1 + rng.int(trial % 3 === 0 ? 4 : 1000);
    const scores = Float64Array.from({ length: n }, () => (rng.uniform() < 0.05 ? -Infinity : Math.round(rng.uniform() * distinct) / 7 - 3));
    const k = 1 + rng.int(n - 1);
    const kth = Float64Array.from(scores).sort()[n - k] as number;
    const got = Float64Array.from(scores);
    applyTopK(got, k);
    assert.deepEqual([...got], [...scores].map((v) => (v < kth ? -Infinity : v)), `trial ${trial}: n ${n}, k ${k}`);
  }
});

test('greedy applies only the repetition penalty (HF ignores the warpers without sampling)', () => {
  const s = resolveSampling({ temperature: 0.1, topK: 1, topP: 0.1, repetitionPenalty: 2 });
  assert.deepEqual([...processScores([1, 4, -2, 3], [1, 2], s)], [1, 2, -4, 3]);
});

test('seeded draws follow the processed distribution', () => {
  const logits = [0, Math.log(2), Math.log(3), Math.log(4), -1e9];
  const s = resolveSampling({ doSample: true, topK: 3 }); // keeps tokens 1..3 with probabilities 2/9, 3/9, 4/9
  const rng = new Rng(5);
  const counts = [0, 0, 0, 0, 0];
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const id = nextToken(logits, [], s, rng);
    counts[id] = (counts[id] as number) + 1;
  }
  assert.equal(counts[0], 0);
  assert.equal(counts[4], 0);
  [2 / 9, 3 / 9, 4 / 9].forEach((p, j) => assert.ok(Math.abs((counts[j + 1] as number) / n - p) < 0.015, `token ${j + 1}: ${(counts[j + 1] as number) / n} vs ${p}`));
});
