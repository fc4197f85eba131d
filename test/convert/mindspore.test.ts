// MindFormers .ckpt conversion: HF -> .ckpt -> sftkit checkpoint is bit-exact for every fixture architecture
// (llama, tied qwen2 with qkv bias, gpt2 with its q/k/v split), names and layouts are MindFormers' tables,
// training state is skipped, unknown names are refused, and a .ckpt loads straight into a model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, FormatError } from '../../src/errors.ts';
import { exportMindSporeCkpt, convertMindSporeToCheckpoint, loadMindSporeModel } from '../../src/convert/mindspore-convert.ts';
import { castFloat } from '../../src/formats/dtypes.ts';
import { openMindSporeCkpt, writeMindSporeCkpt } from '../../src/formats/mindspore-ckpt.ts';
import { openWeightSource } from '../../src/formats/weight-source.ts';
import { loadModel } from '../../src/train/model-io.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'weights');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'sftkit-ms-'));
}

/** An HF folder's weights by canonical name (the gpt2 fixture lacks the transformer. prefix). */
function weights(dir: string, prefix: string): Map<string, { dtype: string; shape: number[]; bytes: Buffer }> {
  const src = openWeightSource(dir);
  try {
    return new Map(src.tensors.filter((t) => !/inv_freq|\.attn\.(bias|masked_bias)$/.test(t.name)).map((t) => {
      const name = t.name.startsWith(prefix) || t.name === 'lm_head.weight' ? t.name : `${prefix}${t.name}`;
      return [name, { dtype: t.dtype, shape: t.shape, bytes: Buffer.from(src.read(t.name)) }];
    }));
  } finally {
    src.close();
  }
}

for (const c of [
  { dir: 'llama-st-sharded', prefix: 'model.' },
  { dir: 'qwen2-tied-bin', prefix: 'model.' },
  { dir: 'gpt2-st', prefix: 'transformer.' },
]) {
  test(`${c.dir}: HF -> .ckpt -> sftkit checkpoint is bit-exact`, async () => {
    const dir = tmp();
    try {
      const ckpt = join(dir, 'model.ckpt');
      const r = await exportMindSporeCkpt({ inputPath: join(FIXTURES, c.dir), outputPath: ckpt });
      assert.ok(r.tensors > 0);
      // A .ckpt holds weights only: config.json and tokenizer files come from the HF folder (--config).
      const out = join(dir, 'back');
      const back = await convertMindSporeToCheckpoint({ inputPath: ckpt, config: join(FIXTURES, c.dir), outputPath: out });
      const want = weights(join(FIXTURES, c.dir), c.prefix);
      const got = weights(out, c.prefix);
      // A tied lm_head is written to the .ckpt (as MindFormers' state_dict holds it) and skipped again on reading.
      for (const [name, w] of want) {
        if (name === 'lm_head.weight' && !got.has(name)) continue;
        const g = got.get(name);
        assert.ok(g !== undefined, `${name} missing after the round trip`);
        assert.equal(g.dtype, w.dtype, name);
        assert.deepEqual(g.shape, w.shape, name);
        assert.ok(g.bytes.equals(w.bytes), `${name} differs after the round trip`);
      }
      assert.equal(got.size, [...want.keys()].filter((n) => n !== 'lm_head.weight' || got.has(n)).length);
      assert.equal(back.tensors, got.size);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('llama names are MindFormers\' convert_weight.py names, in HF state_dict order, values untouched', async () => {
  const dir = tmp();
  try {
    const ckptPath = join(dir, 'llama.ckpt');
    await exportMindSporeCkpt({ inputPath: join(FIXTURES, 'llama-st-sharded'), outputPath: ckptPath });
    const ckpt = openMindSporeCkpt(ckptPath);
    try {
      const names = ckpt.tensors.map((t) => t.name);
      assert.equal(names[0], 'model.tok_embeddings.embedding_weight');
      assert.deepEqual(names.filter((n) => n.startsWith('model.layers.0.')), [
        'model.layers.0.attention.wq.weight', 'model.layers.0.attention.wk.weight', 'model.layers.0.attention.wv.weight',
        'model.layers.0.attention.wo.weight', 'model.layers.0.feed_forward.w1.weight', 'model.layers.0.feed_forward.w3.weight',
        'model.layers.0.feed_forward.w2.weight', 'model.layers.0.attention_norm.weight', 'model.layers.0.ffn_norm.weight',
      ]);
      assert.deepEqual(names.slice(-2), ['model.norm_out.weight', 'lm_head.weight']);
      // No permutation of q/k: the bytes are HF's own.
      const hf = openWeightSource(join(FIXTURES, 'llama-st-sharded'));
      try {
        assert.ok(Buffer.from(ckpt.read('model.layers.1.attention.wq.weight')).equals(Buffer.from(hf.read('model.layers.1.self_attn.q_proj.weight'))));
        assert.equal(ckpt.get('model.layers.1.attention.wq.weight')!.msType, hf.get('model.layers.1.self_attn.q_proj.weight')!.dtype === 'F32' ? 'Float32' : 'BFloat16');
      } finally {
        hf.close();
      }
    } finally {
      ckpt.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gpt2: c_attn is split into dense1/2/3, each part transposed to [d, in]; other Conv1D weights stay [in, out]', async () => {
  const dir = tmp();
  try {
    const ckptPath = join(dir, 'gpt2.ckpt');
    await exportMindSporeCkpt({ inputPath: join(FIXTURES, 'gpt2-st'), outputPath: ckptPath, dtype: 'float32' });
    const ckpt = openMindSporeCkpt(ckptPath);
    const hf = openWeightSource(join(FIXTURES, 'gpt2-st'));
    try {
      const name = hf.tensors.find((t) => t.name.endsWith('h.0.attn.c_attn.weight'))!;
      const [d, three] = name.shape as [number, number];
      const w = new Float32Array(new Uint8Array(castFloat(hf.read(name.name), name.dtype, 'F32')).buffer);
      for (let k = 0; k < 3; k++) {
        const t = ckpt.get(`backbone.blocks.0.attention.dense${k + 1}.weight`)!;
        assert.deepEqual(t.shape, [three / 3, d]);
        const part = new Float32Array(new Uint8Array(ckpt.read(t.name)).buffer);
        for (let o = 0; o < three / 3; o++) for (let i = 0; i < d; i++) assert.equal(part[o * d + i], w[i * three + k * (three / 3) + o]);
      }
      const proj = hf.tensors.find((t) => t.name.endsWith('h.0.mlp.c_fc.weight'))!;
      assert.deepEqual(ckpt.get('backbone.blocks.0.output.mapping.weight')!.shape, proj.shape);
      assert.ok(ckpt.get('backbone.embedding.word_embedding.embedding_table') !== undefined);
      assert.equal(ckpt.get('lm_head.weight'), undefined);
    } finally {
      ckpt.close();
      hf.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('training state is skipped, unknown names and a missing config.json are refused', async () => {
  const dir = tmp();
  try {
    const hfDir = join(FIXTURES, 'llama-st-sharded');
    const ckptPath = join(dir, 'train.ckpt');
    await exportMindSporeCkpt({ inputPath: hfDir, outputPath: ckptPath });
    // Append what a MindFormers training checkpoint adds: an AdamW moment and the step counters.
    const base = openMindSporeCkpt(ckptPath);
    const specs = [...base.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
      { name: 'adam_m.model.norm_out.weight', dtype: 'F32' as const, shape: base.get('model.norm_out.weight')!.shape },
      { name: 'global_step', dtype: 'I32' as const, shape: [] }];
    const withState = join(dir, 'state.ckpt');
    writeMindSporeCkpt(withState, specs, (s) => (s.name === 'global_step' ? new Uint8Array(4) : s.name.startsWith('adam_m.') ? new Uint8Array(4 * s.shape[0]!) : base.read(s.name)));
    const r = await convertMindSporeToCheckpoint({ inputPath: withState, config: hfDir, outputPath: join(dir, 'out') });
    assert.ok(r.skipped.includes('adam_m.model.norm_out.weight (training state)'));
    assert.ok(r.skipped.includes('global_step (training state)'));

    const unknown = join(dir, 'unknown.ckpt');
    writeMindSporeCkpt(unknown, [...specs.slice(0, -2), { name: 'model.layers.0.attention.w_qkv.weight', dtype: 'F32', shape: [1] }], (s) => (s.name.includes('w_qkv') ? new Uint8Array(4) : base.read(s.name)));
    await assert.rejects(convertMindSporeToCheckpoint({ inputPath: unknown, config: hfDir, outputPath: join(dir, 'o2') }), (e: unknown) => e instanceof FormatError && /unknown\.ckpt: 1 tensor\(s\) are not names MindFormers' llama conversion writes: model\.layers\.0\.attention\.w_qkv\.weight/.test(e.message));
    base.close();
    await assert.rejects(convertMindSporeToCheckpoint({ inputPath: ckptPath, outputPath: join(dir, 'o3') }), (e: unknown) => e instanceof ConfigError && /holds weights only/.test(e.message));
    // A gpt2 config against llama weights: every name is unknown.
    await assert.rejects(convertMindSporeToCheckpoint({ inputPath: ckptPath, config: join(FIXTURES, 'gpt2-st'), outputPath: join(dir, 'o4') }), FormatError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('run --load_checkpoint X.ckpt: the model from the .ckpt equals the model from the HF folder', async () => {
  const dir = tmp();
  try {
    const hfDir = join(FIXTURES, 'qwen2-tied-bin');
    cpSync(join(hfDir, 'config.json'), join(dir, 'config.json'));
    const ckptPath = join(dir, 'qwen.ckpt');
    await exportMindSporeCkpt({ inputPath: hfDir, outputPath: ckptPath });
    const a = loadMindSporeModel(ckptPath, dir);
    const b = loadModel(hfDir);
    try {
      for (const name of b.params.names) {
        assert.deepEqual(a.params.get(name).toArray(), b.params.get(name).toArray(), name);
      }
    } finally {
      a.release();
      b.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
