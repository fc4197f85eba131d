// Packing is exact: a Llama forward over a packed row (segment ids, positions restarting per sample) gives each
// sample the hidden states it gets alone, so attention never crosses samples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRecords, preprocess } from '../../src/data/index.ts';
import { parseModelConfig, type LlamaConfig } from '../../src/models/config.ts';
import { Llama } from '../../src/models/llama.ts';
import { positionIds } from '../../src/models/rope.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor } from '../../src/tensor/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures');

test('a packed row forward equals the forwards of its samples alone (within 1e-5)', async () => {
  const tok = Tokenizer.fromSentencePiece(join(FIX, 'tokenizer', 'bpe.model'));
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-pack-'));
  const golden = JSON.parse(readFileSync(join(FIX, 'data', 'golden_vicuna.json'), 'utf8')) as { alpaca_converted: string };
  writeFileSync(join(dir, 'conv.json'), golden.alpaca_converted);
  await preprocess({ datasetType: 'qa', inputGlob: join(dir, 'conv.json'), tokenizer: tok, seqLength: 511, outputDir: join(dir, 'rec'), packing: true });
  const rec = openRecords(join(dir, 'rec'));
  const { inputIds, segmentIds } = rec.row(0);
  rec.close();
  const seg = segmentIds as Int32Array;
  const S = rec.seqLength; // the trainer feeds inputs [:, :-1]
  const ids = inputIds.subarray(0, S);
  const segs = seg.subarray(0, S);
  assert.ok(Math.max(...segs) >= 3, 'the row packs at least three samples');

  const config = parseModelConfig(
    { model_type: 'llama', vocab_size: 3000, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 1024, rms_norm_eps: 1e-5 },
    'tiny-llama',
  );
  assert.equal(config.family, 'llama');
  const model = new Llama(config as LlamaConfig, { seed: 1, initStd: 0.2 });
  try {
    T.noGrad(() =>
      T.scope(() => {
        const packed = model.forward(Tensor.from(ids, [1, S], 'int32'), { positions: positionIds(1, S, { segments: segs }), segments: segs }).toArray() as Float32Array;
        const D = 32;
        let worst = 0;
        for (let s = 1; s <= Math.max(...segs); s++) {
          const at = segs.indexOf(s);
          const n = segs.lastIndexOf(s) + 1 - at;
          const alone = model.forward(Tensor.from(ids.subarray(at, at + n), [1, n], 'int32'), { positions: positionIds(1, n) }).toArray() as Float32Array;
          for (let i = 0; i < n * D; i++) worst = Math.max(worst, Math.abs((packed[at * D + i] as number) - (alone[i] as number)));
        }
        assert.ok(worst <= 1e-5, `largest difference ${worst}`);
        // Without segment ids the same row attends across samples and differs.
        const crossed = model.forward(Tensor.from(ids, [1, S], 'int32'), { positions: positionIds(1, S, { segments: segs }) }).toArray() as Float32Array;
        const at2 = segs.indexOf(2);
        assert.ok(Math.abs((crossed[at2 * D + 5] as number) - (packed[at2 * D + 5] as number)) > 1e-4);
      }),
    );
  } finally {
    model.release();
  }
});
