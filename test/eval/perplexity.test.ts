// Perplexity over token-record batches: the token-weighted loss equals PyTorch's mean loss of the model
// fixture (test/fixtures/models/llama_gqa, model_parity.py), however the rows are batched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { DataError } from '../../src/errors.ts';
import { type TokenBatch, perplexity } from '../../src/eval/index.ts';
import { fixtureModel } from '../generate/fixture-model.ts';

/** Token-record rows (seq_length + 1 wide) whose shifted inputs/targets are the fixture's ids/labels. */
function records(ids: number[][], labels: number[][]): { rows: TokenBatch[]; seqLength: number } {
  const seqLength = (ids[0] as number[]).length;
  const rows = ids.map((row, b) => ({
    inputIds: Int32Array.from([...row, 0]),
    labels: Int32Array.from([-100, ...(labels[b] as number[])]),
  }));
  return { rows, seqLength };
}

test('llama_gqa: perplexity loss equals the PyTorch mean loss, in one batch or row by row', () => {
  const { model, meta } = fixtureModel('llama_gqa');
  try {
    const { rows, seqLength } = records(meta.ids, meta.labels);
    const trained = meta.labels.flat().filter((l) => l !== -100).length;
    const joined: TokenBatch = { inputIds: Int32Array.from(rows.flatMap((r) => [...r.inputIds])), labels: Int32Array.from(rows.flatMap((r) => [...r.labels])) };
    perplexity(model, rows, { seqLength }); // warm-up: the model's RoPE tables are made once
    const before = native.memStats().liveBytes;
    for (const batches of [[joined], rows]) {
      const r = perplexity(model, batches, { seqLength });
      assert.ok(Math.abs(r.loss - meta.loss) / meta.loss <= 1e-5, `loss ${r.loss} vs ${meta.loss}`);
      assert.equal(r.tokens, trained);
      assert.equal(r.perplexity, Math.exp(r.loss));
    }
    assert.equal(native.memStats().liveBytes, before);
  } finally {
    model.release();
  }
});

test('perplexity: malformed batches and no trained tokens are DataErrors', () => {
  const { model } = fixtureModel('gpt2');
  try {
    const ok = { inputIds: new Int32Array(5).fill(1), labels: new Int32Array(5).fill(2) };
    assert.throws(() => perplexity(model, [{ ...ok, inputIds: new Int32Array(7) }], { seqLength: 4 }), (e: unknown) => e instanceof DataError && /eval batch 0: 7 input ids/.test(e.message));
    assert.throws(() => perplexity(model, [ok, { ...ok, labels: new Int32Array(4) }], { seqLength: 4 }), (e: unknown) => e instanceof DataError && /eval batch 1: 4 labels/.test(e.message));
    assert.throws(() => perplexity(model, [{ ...ok, labels: new Int32Array(5).fill(-100) }], { seqLength: 4 }), (e: unknown) => e instanceof DataError && /no trained tokens/.test(e.message));
  } finally {
    model.release();
  }
});
