// Test helper: the tiny PyTorch-parity models of test/fixtures/models/ (weights from model_parity.py).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseModelConfig } from '../../src/models/config.ts';
import { Gpt2 } from '../../src/models/gpt2.ts';
import { Llama } from '../../src/models/llama.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { loadInto } from '../../src/tensor/index.ts';

export interface ModelFixture {
  config: Record<string, unknown>;
  ids: number[][];
  labels: number[][];
  loss: number;
  tensors: { name: string; shape: number[]; offset: number }[];
}

const DIR = join(import.meta.dirname, '..', 'fixtures', 'models');

/** Builds the fixture's model with its PyTorch weights loaded. */
export function fixtureModel(name: 'llama_gqa' | 'qwen2_tied' | 'gpt2' | 'mistral_window' | 'qwen2_window'): { model: CausalLM; meta: ModelFixture } {
  const meta = JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8')) as ModelFixture;
  const buf = readFileSync(join(DIR, `${name}.bin`));
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const config = parseModelConfig(meta.config, `${name}.json`);
  const model = config.family === 'llama' ? new Llama(config) : new Gpt2(config);
  for (const n of model.params.names) {
    const t = meta.tensors.find((x) => x.name === `param:${n}`);
    if (!t) throw new Error(`fixture ${name} has no parameter ${n}`);
    loadInto(model.params.get(n), all.subarray(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1)));
  }
  return { model, meta };
}
