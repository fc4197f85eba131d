// HF tensor names -> llama.cpp's GGUF tensor names, as data tables per architecture, with the transform each
// tensor needs (Q/K row permutation for llama's RoPE layout, Conv1D transposes for GPT-2) and the tensors that
// llama.cpp keeps in f32 whatever the file type.
import { FormatError } from '../errors.ts';
import type { ModelConfig } from '../models/config.ts';
import type { PlannedTensor } from '../formats/weight-plan.ts';

/** The `general.architecture` values we write. Mistral is llama's architecture in llama.cpp. */
export type GgufArch = 'llama' | 'qwen2' | 'gpt2';

/**
 * - `permute-q` / `permute-k`: HF stores each head's rotary pairs as (first half, second half) for
 *   `rotate_half`; llama.cpp's llama RoPE rotates adjacent pairs, so rows (j, i) of a head become (i, j).
 *   q uses the attention head count, k the key/value head count.
 * - `transpose`: GPT-2's Conv1D stores weights [in, out]; ggml wants [out, in] like a Linear.
 */
export type GgufTransform = 'none' | 'permute-q' | 'permute-k' | 'transpose';

interface NameRule {
  /** HF name with `{i}` for the layer. */
  hf: string;
  gguf: string;
  transform?: GgufTransform;
}

const llamaLayer = (permute: boolean): NameRule[] => [
  { hf: 'model.layers.{i}.input_layernorm.weight', gguf: 'blk.{i}.attn_norm.weight' },
  { hf: 'model.layers.{i}.self_attn.q_proj.weight', gguf: 'blk.{i}.attn_q.weight', transform: permute ? 'permute-q' : 'none' },
  { hf: 'model.layers.{i}.self_attn.q_proj.bias', gguf: 'blk.{i}.attn_q.bias', transform: permute ? 'permute-q' : 'none' },
  { hf: 'model.layers.{i}.self_attn.k_proj.weight', gguf: 'blk.{i}.attn_k.weight', transform: permute ? 'permute-k' : 'none' },
  { hf: 'model.layers.{i}.self_attn.k_proj.bias', gguf: 'blk.{i}.attn_k.bias', transform: permute ? 'permute-k' : 'none' },
  { hf: 'model.layers.{i}.self_attn.v_proj.weight', gguf: 'blk.{i}.attn_v.weight' },
  { hf: 'model.layers.{i}.self_attn.v_proj.bias', gguf: 'blk.{i}.attn_v.bias' },
  { hf: 'model.layers.{i}.self_attn.o_proj.weight', gguf: 'blk.{i}.attn_output.weight' },
  { hf: 'model.layers.{i}.self_attn.o_proj.bias', gguf: 'blk.{i}.attn_output.bias' },
  { hf: 'model.layers.{i}.post_attention_layernorm.weight', gguf: 'blk.{i}.ffn_norm.weight' },
  { hf: 'model.layers.{i}.mlp.gate_proj.weight', gguf: 'blk.{i}.ffn_gate.weight' },
  { hf: 'model.layers.{i}.mlp.gate_proj.bias', gguf: 'blk.{i}.ffn_gate.bias' },
  { hf: 'model.layers.{i}.mlp.up_proj.weight', gguf: 'blk.{i}.ffn_up.weight' },
  { hf: 'model.layers.{i}.mlp.up_proj.bias', gguf: 'blk.{i}.ffn_up.bias' },
  { hf: 'model.layers.{i}.mlp.down_proj.weight', gguf: 'blk.{i}.ffn_down.weight' },
  { hf: 'model.layers.{i}.mlp.down_proj.bias', gguf: 'blk.{i}.ffn_down.bias' },
];

const llamaGlobal: NameRule[] = [
  { hf: 'model.embed_tokens.weight', gguf: 'token_embd.weight' },
  { hf: 'model.norm.weight', gguf: 'output_norm.weight' },
  { hf: 'lm_head.weight', gguf: 'output.weight' },
];

const gpt2Rules: NameRule[] = [
  { hf: 'transformer.wte.weight', gguf: 'token_embd.weight' },
  { hf: 'transformer.wpe.weight', gguf: 'position_embd.weight' },
  { hf: 'transformer.h.{i}.ln_1.weight', gguf: 'blk.{i}.attn_norm.weight' },
  { hf: 'transformer.h.{i}.ln_1.bias', gguf: 'blk.{i}.attn_norm.bias' },
  { hf: 'transformer.h.{i}.attn.c_attn.weight', gguf: 'blk.{i}.attn_qkv.weight', transform: 'transpose' },
  { hf: 'transformer.h.{i}.attn.c_attn.bias', gguf: 'blk.{i}.attn_qkv.bias' },
  { hf: 'transformer.h.{i}.attn.c_proj.weight', gguf: 'blk.{i}.attn_output.weight', transform: 'transpose' },
  { hf: 'transformer.h.{i}.attn.c_proj.bias', gguf: 'blk.{i}.attn_output.bias' },
  { hf: 'transformer.h.{i}.ln_2.weight', gguf: 'blk.{i}.ffn_norm.weight' },
  { hf: 'transformer.h.{i}.ln_2.bias', gguf: 'blk.{i}.ffn_norm.bias' },
  { hf: 'transformer.h.{i}.mlp.c_fc.weight', gguf: 'blk.{i}.ffn_up.weight', transform: 'transpose' },
  { hf: 'transformer.h.{i}.mlp.c_fc.bias', gguf: 'blk.{i}.ffn_up.bias' },
  { hf: 'transformer.h.{i}.mlp.c_proj.weight', gguf: 'blk.{i}.ffn_down.weight', transform: 'transpose' },
  { hf: 'transformer.h.{i}.mlp.c_proj.bias', gguf: 'blk.{i}.ffn_down.bias' },
  { hf: 'transformer.ln_f.weight', gguf: 'output_norm.weight' },
  { hf: 'transformer.ln_f.bias', gguf: 'output_norm.bias' },
  { hf: 'lm_head.weight', gguf: 'output.weight' },
];

export const GGUF_NAME_RULES: Record<GgufArch, NameRule[]> = {
  llama: [...llamaGlobal, ...llamaLayer(true)],
  // llama.cpp runs Qwen2 with NEOX-style RoPE, which is HF's rotate_half layout: no permutation.
  qwen2: [...llamaGlobal, ...llamaLayer(false)],
  gpt2: gpt2Rules,
};

/** GGUF tensors llama.cpp reads as f32 whatever the file type (besides every 1-D tensor and every norm). */
const ALWAYS_F32 = new Set(['position_embd.weight']);

export function ggufArchOf(cfg: ModelConfig): GgufArch {
  return cfg.modelType === 'mistral' ? 'llama' : cfg.modelType;
}

export interface MappedTensor {
  /** Name in the source files. */
  source: string;
  /** HF name. */
  hfName: string;
  name: string;
  /** Source shape, outermost first. */
  sourceShape: number[];
  /** Shape written, outermost first. */
  shape: number[];
  transform: GgufTransform;
  /** Heads of the permutation (`permute-q`/`permute-k` only). */
  heads?: number;
  /** f32 whatever the file type: 1-D tensors, norms, position embeddings. */
  keepF32: boolean;
}

function compile(rule: NameRule): { re: RegExp; rule: NameRule } {
  const escaped = rule.hf.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('\\{i\\}', '(\\d+)');
  return { re: new RegExp(`^${escaped}$`), rule };
}

/**
 * Maps every planned tensor through the architecture's table; a tensor no rule names is an error (nothing is
 * dropped silently). GPT-2's tied output is written as its own tensor, as llama.cpp's converter does, because
 * llama.cpp's GPT-2 graph reads `output.weight`; llama and qwen2 fall back to the embedding when it is absent.
 */
export function mapTensorsToGguf(cfg: ModelConfig, tensors: readonly PlannedTensor[], where: string): MappedTensor[] {
  const arch = ggufArchOf(cfg);
  const rules = GGUF_NAME_RULES[arch].map(compile);
  const out: MappedTensor[] = [];
  for (const t of tensors) {
    const hit = rules.map((r) => ({ r, m: r.re.exec(t.name) })).find((x) => x.m !== null);
    if (hit === undefined) {
      throw new FormatError(`${where}: tensor ${t.name} has no GGUF name for architecture ${arch}`, { where: `${where}: ${t.name}`, hint: 'the GGUF name table (src/convert/gguf-tensor-map.ts) lacks it' });
    }
    const name = hit.r.rule.gguf.replace('{i}', hit.m![1] ?? '');
    const transform = hit.r.rule.transform ?? 'none';
    const shape = transform === 'transpose' ? [t.shape[1]!, t.shape[0]!] : [...t.shape];
    const mapped: MappedTensor = { source: t.source, hfName: t.name, name, sourceShape: t.shape, shape, transform, keepF32: shape.length <= 1 || name.endsWith('_norm.weight') || ALWAYS_F32.has(name) };
    if ((transform === 'permute-q' || transform === 'permute-k') && cfg.family === 'llama') {
      mapped.heads = transform === 'permute-q' ? cfg.numAttentionHeads : cfg.numKeyValueHeads;
      if (t.shape[0]! % (2 * mapped.heads) !== 0) throw new FormatError(`${where}: tensor ${t.name}: ${t.shape[0]} rows do not split into ${mapped.heads} heads of rotary pairs`, { where: t.name });
    }
    out.push(mapped);
    if (arch === 'gpt2' && name === 'token_embd.weight' && !tensors.some((x) => x.name === 'lm_head.weight')) {
      out.push({ ...mapped, hfName: 'lm_head.weight (tied)', name: 'output.weight' });
    }
  }
  const names = new Set<string>();
  for (const m of out) {
    if (names.has(m.name)) throw new FormatError(`${where}: two tensors map to GGUF tensor ${m.name}`, { where: m.name });
    names.add(m.name);
  }
  return out;
}

/** Source row of output row `r` for the llama Q/K permutation (rows of one head: (j, i) -> (i, j)). */
export function permutedSourceRow(r: number, rows: number, heads: number): number {
  const headDim = rows / heads;
  const half = headDim / 2;
  const h = Math.floor(r / headDim);
  const within = r % headDim;
  const i = Math.floor(within / 2);
  const j = within % 2;
  return h * headDim + j * half + i;
}
