// The S/M/L benchmark models of DESIGN.md (bench/train/configs.json) as Llama configs, with their batch and
// sequence length: one reading for every bench script that builds them.
import { readFileSync } from 'node:fs';
import { type LlamaConfig, parseModelConfig } from '../../src/models/config.ts';

export interface BenchModel {
  cfg: LlamaConfig;
  /** Rows per training step. */
  batch: number;
  /** Tokens per row. */
  seq: number;
}

/**
 * Config `name` (S, M or L) of bench/train/configs.json; throws naming it when unknown. `positions`: the RoPE
 * positions the model covers (default: the config's training sequence; decoding benchmarks ask for more).
 */
export function benchModel(name: string, positions?: number): BenchModel {
  const c = (JSON.parse(readFileSync(new URL('../train/configs.json', import.meta.url), 'utf8')) as Record<string, Record<string, number>>)[name];
  if (!c) throw new Error(`unknown config ${name}`);
  const cfg = parseModelConfig(
    {
      model_type: 'llama', vocab_size: c['vocab'], hidden_size: c['dim'], intermediate_size: c['ffn'], num_hidden_layers: c['layers'],
      num_attention_heads: c['heads'], num_key_value_heads: c['heads'], max_position_embeddings: positions ?? c['seq'], rms_norm_eps: 1e-5,
    },
    name,
  ) as LlamaConfig;
  return { cfg, batch: c['batch'] as number, seq: c['seq'] as number };
}
