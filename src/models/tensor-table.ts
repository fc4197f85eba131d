// The tensors each architecture's HF checkpoint holds, with shapes computed from its config: what
// conversion checks a checkpoint against (names and layouts are HF's, so this table is also sftkit's).
import type { Gpt2Config, LlamaConfig, ModelConfig } from './config.ts';

export interface ExpectedTensor {
  name: string;
  shape: number[];
  /** `tied`: lm_head.weight when word embeddings are tied; it may be absent (it is the embedding). */
  optional?: 'tied';
}

/** The prefix of the base model inside the *ForCausalLM checkpoint (`base_model_prefix` in transformers). */
export const BASE_MODEL_PREFIX: Record<ModelConfig['family'], string> = { llama: 'model', gpt2: 'transformer' };

function llamaTensors(c: LlamaConfig): ExpectedTensor[] {
  const d = c.hiddenSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const ff = c.intermediateSize;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, d] }];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [d] });
    out.push({ name: `${p}.self_attn.q_proj.weight`, shape: [q, d] });
    out.push({ name: `${p}.self_attn.k_proj.weight`, shape: [kv, d] });
    out.push({ name: `${p}.self_attn.v_proj.weight`, shape: [kv, d] });
    if (c.qkvBias) {
      out.push({ name: `${p}.self_attn.q_proj.bias`, shape: [q] });
      out.push({ name: `${p}.self_attn.k_proj.bias`, shape: [kv] });
      out.push({ name: `${p}.self_attn.v_proj.bias`, shape: [kv] });
    }
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [d, q] });
    if (c.oBias) out.push({ name: `${p}.self_attn.o_proj.bias`, shape: [d] });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [d] });
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [ff, d] });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [ff, d] });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [d, ff] });
    if (c.mlpBias) {
      out.push({ name: `${p}.mlp.gate_proj.bias`, shape: [ff] });
      out.push({ name: `${p}.mlp.up_proj.bias`, shape: [ff] });
      out.push({ name: `${p}.mlp.down_proj.bias`, shape: [d] });
    }
  }
  out.push({ name: 'model.norm.weight', shape: [d] });
  out.push(c.tieWordEmbeddings ? { name: 'lm_head.weight', shape: [c.vocabSize, d], optional: 'tied' } : { name: 'lm_head.weight', shape: [c.vocabSize, d] });
  return out;
}

function gpt2Tensors(c: Gpt2Config): ExpectedTensor[] {
  const d = c.nEmbd;
  const out: ExpectedTensor[] = [
    { name: 'transformer.wte.weight', shape: [c.vocabSize, d] },
    { name: 'transformer.wpe.weight', shape: [c.nPositions, d] },
  ];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `transformer.h.${i}`;
    // Conv1D weights are stored [in, out].
    out.push({ name: `${p}.ln_1.weight`, shape: [d] }, { name: `${p}.ln_1.bias`, shape: [d] });
    out.push({ name: `${p}.attn.c_attn.weight`, shape: [d, 3 * d] }, { name: `${p}.attn.c_attn.bias`, shape: [3 * d] });
    out.push({ name: `${p}.attn.c_proj.weight`, shape: [d, d] }, { name: `${p}.attn.c_proj.bias`, shape: [d] });
    out.push({ name: `${p}.ln_2.weight`, shape: [d] }, { name: `${p}.ln_2.bias`, shape: [d] });
    out.push({ name: `${p}.mlp.c_fc.weight`, shape: [d, c.nInner] }, { name: `${p}.mlp.c_fc.bias`, shape: [c.nInner] });
    out.push({ name: `${p}.mlp.c_proj.weight`, shape: [c.nInner, d] }, { name: `${p}.mlp.c_proj.bias`, shape: [d] });
  }
  out.push({ name: 'transformer.ln_f.weight', shape: [d] }, { name: 'transformer.ln_f.bias', shape: [d] });
  out.push(c.tieWordEmbeddings ? { name: 'lm_head.weight', shape: [c.vocabSize, d], optional: 'tied' } : { name: 'lm_head.weight', shape: [c.vocabSize, d] });
  return out;
}

/** Every tensor an HF *ForCausalLM checkpoint of this config holds, in model order. */
export function expectedTensors(c: ModelConfig): ExpectedTensor[] {
  return c.family === 'llama' ? llamaTensors(c) : gpt2Tensors(c);
}

/** Buffers some checkpoints carry that are not weights (recomputed from the config), skipped by name. */
export function isNonWeightBuffer(c: ModelConfig, name: string): boolean {
  if (c.family === 'llama') return /^(model\.)?layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name);
  return /^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/.test(name);
}
