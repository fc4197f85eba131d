// MindFormers' parameter names for sftkit's architectures, as data: the tables its convert_weight.py and
// convert_reversed.py apply, with the one layout change they make (GPT-2's fused c_attn split in three).
//
// Llama (mindspore-lab/mindformers, mindformers/models/llama/convert_weight.py `name_replace` and
// convert_reversed.py): a rename of module names only, for weights and biases alike; no permutation of q/k
// (the `permute` there is for Meta's .pth files and old MindFormers checkpoints, not for HF weights, which
// already use rotate_half) and no fused QKV (`w_qkv`, `w_gate_hidden` only with the separate --qkv_concat
// step, not read here). Values keep their dtype unless --dtype is given (mindformers/utils/convert_utils.py
// `pt2ms`). Tensors are written in the HF state_dict's order, which includes a tied lm_head.
//
// GPT-2 (mindformers/models/gpt2/convert_weight.py and convert_reversed.py, removed from MindFormers in
// a025f9f35 "del gpt code"): per-layer names `backbone.blocks.{i}.*`; c_attn's [in, 3·d] weight is split along
// its last axis into q, k, v and each part transposed to [d, in] (attention.dense1/2/3.weight), its bias split
// the same way without the transpose; every other Conv1D weight keeps its [in, out] layout; lm_head is tied to
// the word embedding and has no tensor of its own; `attention.beta`/`masked_beta` are HF's attn.bias buffers.

/** `{i}` stands for the layer index in both names. */
export interface MsNameRule {
  hf: string;
  ms: string;
  /** The MindSpore tensor is part `index` of `of` equal slices of the HF tensor's last axis, transposed if asked. */
  part?: { index: number; of: number; transpose: boolean };
}

export interface MindFormersNames {
  /** Rules before the layers, per layer, and after them: the order MindFormers writes its checkpoint in. */
  head: readonly MsNameRule[];
  layer: readonly MsNameRule[];
  tail: readonly MsNameRule[];
  /** MindFormers tensors that are buffers rather than weights: skipped when reading. */
  buffers: readonly RegExp[];
}

/** One rule per module of the decoder layer, in HF's state_dict order; `.weight` and `.bias` alike. */
const LLAMA_LAYER_MODULES: ReadonlyArray<readonly [string, string]> = [
  ['self_attn.q_proj', 'attention.wq'],
  ['self_attn.k_proj', 'attention.wk'],
  ['self_attn.v_proj', 'attention.wv'],
  ['self_attn.o_proj', 'attention.wo'],
  ['mlp.gate_proj', 'feed_forward.w1'],
  ['mlp.up_proj', 'feed_forward.w3'],
  ['mlp.down_proj', 'feed_forward.w2'],
  ['input_layernorm', 'attention_norm'],
  ['post_attention_layernorm', 'ffn_norm'],
];

export const LLAMA_NAMES: MindFormersNames = {
  head: [{ hf: 'model.embed_tokens.weight', ms: 'model.tok_embeddings.embedding_weight' }],
  layer: LLAMA_LAYER_MODULES.flatMap(([hf, ms]) =>
    ['weight', 'bias'].map((p) => ({ hf: `model.layers.{i}.${hf}.${p}`, ms: `model.layers.{i}.${ms}.${p}` })),
  ),
  tail: [
    { hf: 'model.norm.weight', ms: 'model.norm_out.weight' },
    { hf: 'lm_head.weight', ms: 'lm_head.weight' },
  ],
  buffers: [],
};

const qkv = (kind: 'weight' | 'bias'): MsNameRule[] =>
  [0, 1, 2].map((index) => ({
    hf: `transformer.h.{i}.attn.c_attn.${kind}`,
    ms: `backbone.blocks.{i}.attention.dense${index + 1}.${kind}`,
    part: { index, of: 3, transpose: kind === 'weight' },
  }));

export const GPT2_NAMES: MindFormersNames = {
  head: [],
  // The order of convert_weight.py's `ms_name` list.
  layer: [
    { hf: 'transformer.h.{i}.ln_1.weight', ms: 'backbone.blocks.{i}.layernorm1.gamma' },
    { hf: 'transformer.h.{i}.ln_1.bias', ms: 'backbone.blocks.{i}.layernorm1.beta' },
    { hf: 'transformer.h.{i}.ln_2.weight', ms: 'backbone.blocks.{i}.layernorm2.gamma' },
    { hf: 'transformer.h.{i}.ln_2.bias', ms: 'backbone.blocks.{i}.layernorm2.beta' },
    { hf: 'transformer.h.{i}.attn.c_proj.weight', ms: 'backbone.blocks.{i}.attention.projection.weight' },
    { hf: 'transformer.h.{i}.attn.c_proj.bias', ms: 'backbone.blocks.{i}.attention.projection.bias' },
    ...qkv('weight').flatMap((w, k) => [w, qkv('bias')[k]!]),
    { hf: 'transformer.h.{i}.mlp.c_fc.weight', ms: 'backbone.blocks.{i}.output.mapping.weight' },
    { hf: 'transformer.h.{i}.mlp.c_fc.bias', ms: 'backbone.blocks.{i}.output.mapping.bias' },
    { hf: 'transformer.h.{i}.mlp.c_proj.weight', ms: 'backbone.blocks.{i}.output.projection.weight' },
    { hf: 'transformer.h.{i}.mlp.c_proj.bias', ms: 'backbone.blocks.{i}.output.projection.bias' },
  ],
  tail: [
    { hf: 'transformer.ln_f.weight', ms: 'backbone.layernorm.gamma' },
    { hf: 'transformer.ln_f.bias', ms: 'backbone.layernorm.beta' },
    { hf: 'transformer.wte.weight', ms: 'backbone.embedding.word_embedding.embedding_table' },
    { hf: 'transformer.wpe.weight', ms: 'backbone.embedding.position_embedding.embedding_table' },
  ],
  buffers: [/^backbone\.blocks\.\d+\.attention\.(beta|masked_beta)$/],
};

export const MINDFORMERS_NAMES: Readonly<Record<'llama' | 'gpt2', MindFormersNames>> = { llama: LLAMA_NAMES, gpt2: GPT2_NAMES };

/**
 * What a MindFormers training checkpoint holds besides the weights: optimizer moments (`adam_m.`, `adam_v.`),
 * gradient accumulators and the scalars `append_dict` adds (step, epoch, loss scale). Skipped when reading.
 */
export const TRAINING_STATE: readonly RegExp[] = [
  /^(adam_m|adam_v|accu_grads|moments1|moments2|moment1|moment2)\./,
  /^(global_step|epoch_num|step_num|loss_scale|scale_sense|current_iterator_step|last_overflow_iterator_step|learning_rate|beta1_power|beta2_power)$/,
];

/** A rule's names for layer `i`. */
export function ruleAt(rule: MsNameRule, i: number): { hf: string; ms: string } {
  return { hf: rule.hf.replaceAll('{i}', String(i)), ms: rule.ms.replaceAll('{i}', String(i)) };
}
