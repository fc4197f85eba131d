// sftkit's LoRA adapters against the real PEFT library (fixtures by scripts/reference/peft_interop.py, PEFT 0.21
// and transformers 5.18; no Python here). Adapters sftkit trained (test/fixtures/peft/sftkit-*), which PEFT's
// PeftModel.from_pretrained loaded tensor for tensor, and adapters PEFT wrote with save_pretrained
// (peft-*: rank_pattern/alpha_pattern, rsLoRA, a regex target_modules, layers_to_transform/exclude_modules,
// all-linear, GPT-2's Conv1D with fan_in_fan_out):
// base + adapter here, through the loader of `run --lora.adapter` and through serve's, gives PEFT's logits,
// and `convert --reversed --merge_lora` gives merge_and_unload()'s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertMergedLoraToHf } from '../../src/convert/merge-lora.ts';
import { FormatError } from '../../src/errors.ts';
import { type CausalLM, logits } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { withRowAdapters } from '../../src/nn/row-lora.ts';
import { loadServedAdapter } from '../../src/serve/adapters.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor, scope } from '../../src/tensor/index.ts';
import { parseRunConfig } from '../../src/train/config.ts';
import { attachLoraFor, loadAdapter, mergeLora, readAdapterConfig, writeAdapterFiles } from '../../src/train/lora-io.ts';
import { loadModel, weightOptionsOf } from '../../src/train/model-io.ts';
import { relError } from '../helpers/native.ts';

const root = join(import.meta.dirname, '..', '..');
const FIX = join(root, 'test', 'fixtures', 'peft');
const BASES = { llama: join(root, 'test', 'fixtures', 'weights', 'llama-st-sharded'), gpt2: join(root, 'test', 'fixtures', 'weights', 'gpt2-st') };
type Family = keyof typeof BASES;

interface Fixture {
  versions: { peft: string; transformers: string; torch: string };
  ids: number[];
  base: Record<Family, number[]>;
  adapters: Record<string, { base: Family; folder: string; logits: number[]; merged: number[] }>;
}
const fx = JSON.parse(readFileSync(join(FIX, 'logits.json'), 'utf8')) as Fixture;
// As the model-parity tests: fp32 here against fp32 PyTorch.
const TOL = 1e-5;

function forward(m: CausalLM): Float32Array {
  const n = fx.ids.length;
  return scope(() => T.noGrad(() => logits(m, m.forward(Tensor.from(fx.ids, [1, n], 'int32'), { positions: positionIds(1, n) }))).toArray() as Float32Array);
}

/** The base as `sftkit run --run_mode eval --lora.adapter DIR` loads it, with the adapter attached by the same call. */
function withAdapter(family: Family, adapter: string): CausalLM {
  const cfg = parseRunConfig({ output_dir: join(tmpdir(), 'unused'), lora: { adapter } }, 'test');
  const m = loadModel(BASES[family], 0, { weights: (names) => weightOptionsOf(cfg, names) });
  attachLoraFor(m, cfg, { checkpointDir: null, training: false });
  return m;
}

test(`the tiny HF bases give transformers ${fx.versions.transformers}'s logits`, () => {
  for (const family of Object.keys(BASES) as Family[]) {
    const m = loadModel(BASES[family]);
    const err = relError(forward(m), fx.base[family]);
    m.release();
    assert.ok(err <= TOL, `${family}: rel. error ${err}`);
  }
});

for (const [name, a] of Object.entries(fx.adapters)) {
  const folder = join(FIX, a.folder);

  test(`${name}: base + adapter (run --lora.adapter, serve) equals PEFT ${fx.versions.peft}; mergeLora equals merge_and_unload`, () => {
    const m = withAdapter(a.base, folder);
    try {
      assert.ok(m.params.lora !== null && m.params.adapterNames.length > 0);
      const err = relError(forward(m), a.logits);
      assert.ok(err <= TOL, `adapted: rel. error ${err}`);
      // The adapter matters: far from the base's logits.
      assert.ok(relError(a.logits, fx.base[a.base]) > 1e-2);
      mergeLora(m);
      const merr = relError(forward(m), a.merged);
      assert.ok(merr <= TOL, `merged: rel. error ${merr}`);
    } finally {
      m.release();
    }
    // serve's multi-adapter path: the adapter read apart from the base and added per row.
    const base = loadModel(BASES[a.base]);
    try {
      const served = loadServedAdapter(base, name, folder);
      const err = relError(T.noGrad(() => withRowAdapters([served], () => forward(base))), a.logits);
      for (const mod of served.modules.values()) {
        mod.a.release();
        mod.scaledB.release();
      }
      assert.ok(err <= TOL, `served: rel. error ${err}`);
    } finally {
      base.release();
    }
  });

  test(`${name}: convert --reversed --merge_lora on the adapter folder gives PEFT's merge_and_unload logits`, async () => {
    const work = mkdtempSync(join(tmpdir(), 'sftkit-peft-'));
    try {
      // The folder as PEFT leaves it: base_model_name_or_path names the base (here a local folder).
      const dir = join(work, 'adapter');
      cpSync(folder, dir, { recursive: true });
      const cfgPath = join(dir, 'adapter_config.json');
      const acfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
      writeFileSync(cfgPath, JSON.stringify({ ...acfg, base_model_name_or_path: BASES[a.base] }));
      await convertMergedLoraToHf({ inputPath: dir, outputPath: join(work, 'merged'), dtype: 'float32' });
      const m = loadModel(join(work, 'merged'));
      const err = relError(forward(m), a.merged);
      m.release();
      assert.ok(err <= TOL, `merged export: rel. error ${err}`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
}

test('the adapters sftkit wrote and PEFT loaded are what sftkit writes today, byte for byte', () => {
  for (const [name, a] of Object.entries(fx.adapters).filter(([n]) => n.startsWith('sftkit-'))) {
    const folder = join(FIX, a.folder);
    const work = mkdtempSync(join(tmpdir(), 'sftkit-peft-'));
    const m = loadModel(BASES[a.base]);
    try {
      loadAdapter(m, folder);
      writeAdapterFiles(work, m, readAdapterConfig(folder).base);
      for (const f of ['adapter_config.json', 'adapter_model.safetensors']) assert.deepEqual(readFileSync(join(work, f)), readFileSync(join(folder, f)), `${name}/${f}`);
    } finally {
      m.release();
      rmSync(work, { recursive: true, force: true });
    }
  }
});

test('convert --merge_lora on a PEFT folder whose base_model_name_or_path is no local model: a FormatError naming the field', async () => {
  const work = mkdtempSync(join(tmpdir(), 'sftkit-peft-'));
  try {
    const dir = join(work, 'adapter');
    cpSync(join(FIX, 'peft-llama'), dir, { recursive: true });
    const cfgPath = join(dir, 'adapter_config.json');
    const acfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    for (const [base, msg] of [
      ['meta-llama/Llama-3.2-1B', /field "base_model_name_or_path" is "meta-llama\/Llama-3.2-1B", which is not a local model folder .*sftkit does not download it/],
      [null, /field "base_model_name_or_path" is empty/],
    ] as const) {
      writeFileSync(cfgPath, JSON.stringify({ ...acfg, base_model_name_or_path: base }));
      await assert.rejects(convertMergedLoraToHf({ inputPath: dir, outputPath: join(work, 'merged'), dtype: 'float32' }), (e: unknown) => e instanceof FormatError && msg.test(e.message));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
