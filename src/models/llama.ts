// Llama 2/3, Mistral, Qwen2 (qkv bias), TinyLlama, SmolLM: the whole forward pass, from HF config.json.
// Parameters keep HF names and layouts; shapes are noted as (B, T, ...) on each line.
import { ParameterSet } from '../nn/parameters.ts';
import { embed } from '../nn/embedding.ts';
import { linear } from '../nn/linear.ts';
import * as T from '../tensor/index.ts';
import { Rng, Tensor } from '../tensor/index.ts';
import type { LlamaConfig } from './config.ts';
import { inverseFrequencies, ropeTables } from './rope.ts';
import { expectedTensors } from './tensor-table.ts';
import type { CausalLM, ForwardOptions, ModelOptions } from './model.ts';
import { paramSpecs } from './model.ts';

export class Llama implements CausalLM {
  readonly config: LlamaConfig;
  readonly params: ParameterSet;
  private tables: { cos: Tensor; sin: Tensor } | null = null;
  private readonly inv: Float32Array;

  constructor(config: LlamaConfig, opts: ModelOptions = {}) {
    this.config = config;
    this.params = new ParameterSet(paramSpecs(expectedTensors(config), opts.initStd ?? 0.02), new Rng(opts.seed ?? 0), opts.weights);
    this.inv = inverseFrequencies(config.headDim, config.ropeTheta, config.ropeScaling);
  }

  /** A weight for compute (float32; a frozen low-precision weight widened for this step). */
  private p(name: string): Tensor {
    return this.params.weight(name);
  }

  private ropeFor(count: number): { cos: Tensor; sin: Tensor } {
    if (!this.tables || (this.tables.cos.shape[0] as number) < count) {
      this.tables?.cos.release();
      this.tables?.sin.release();
      // Grow by powers of two: tables for max_position_embeddings up front can be large (Llama 3: 128K rows).
      let rows = 256;
      while (rows < count) rows *= 2;
      this.tables = ropeTables(this.inv, rows);
    }
    return this.tables;
  }

  /** Final hidden states (B, T, hidden) for int32 ids (B, T). */
  forward(ids: Tensor, opts: ForwardOptions): Tensor {
    const c = this.config;
    const [B, S] = ids.shape as [number, number];
    const hd = c.headDim;
    const maxPos = opts.positions.reduce((m, p) => (p > m ? p : m), 0);
    const { cos, sin } = this.ropeFor(maxPos + 1);
    const positions = Tensor.from(opts.positions, [B * S], 'int32');
    const tables = { cos, sin, positions };
    const segments = opts.segments ? Tensor.from(opts.segments, [B, S], 'int32') : null;
    const cache = opts.cache ?? null;
    const step = cache ? cache.begin(B, S, opts.segments ?? null) : { past: 0, qSegments: segments, kSegments: segments };

    let x = embed(ids, this.params, 'model.embed_tokens.weight'); // (B, S, D)
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const pre = `model.layers.${i}`;
      const block = (h: Tensor): Tensor => {
        const attn = { bias: c.qkvBias };
        const mlp = { bias: c.mlpBias };
        const a = T.rmsNorm(h, this.p(`${pre}.input_layernorm.weight`), c.rmsNormEps); // (B, S, D)
        let q = T.reshape(linear(a, this.params, `${pre}.self_attn.q_proj`, attn), [B, S, c.numAttentionHeads, hd]); // (B, S, Hq, hd)
        let k = T.reshape(linear(a, this.params, `${pre}.self_attn.k_proj`, attn), [B, S, c.numKeyValueHeads, hd]); // (B, S, Hkv, hd)
        const v = T.reshape(linear(a, this.params, `${pre}.self_attn.v_proj`, attn), [B, S, c.numKeyValueHeads, hd]); // (B, S, Hkv, hd)
        q = T.rope(q, tables, hd); // (B, S, Hq, hd)
        k = T.rope(k, tables, hd); // (B, S, Hkv, hd)
        const [kc, vc] = cache ? cache.append(i, k, v) : [k, v]; // (B, past + S, Hkv, hd)
        const window = c.windowedLayers[i] ? (c.slidingWindow ?? 0) : 0;
        const att = T.attention(q, kc, vc, { causal: true, qOffset: step.past, qSegments: step.qSegments, kSegments: step.kSegments, window }); // (B, S, Hq, hd)
        const o = linear(T.reshape(att, [B, S, c.numAttentionHeads * hd]), this.params, `${pre}.self_attn.o_proj`, { bias: c.oBias }); // (B, S, D)
        const h2 = T.add(h, o); // (B, S, D)
        const m = T.rmsNorm(h2, this.p(`${pre}.post_attention_layernorm.weight`), c.rmsNormEps); // (B, S, D)
        const gate = linear(m, this.params, `${pre}.mlp.gate_proj`, mlp); // (B, S, F)
        const up = linear(m, this.params, `${pre}.mlp.up_proj`, mlp); // (B, S, F)
        const down = linear(T.swiglu(gate, up), this.params, `${pre}.mlp.down_proj`, mlp); // (B, S, D)
        return T.add(h2, down); // (B, S, D)
      };
      x = opts.recompute ? T.recompute(block, [x], { trainableWeights: this.params.hasTrainableUnder(`${pre}.`), rngs: this.params.forwardRngs }) : block(x);
    }
    return T.rmsNorm(x, this.p('model.norm.weight'), c.rmsNormEps); // (B, S, D)
  }

  /** The output projection (vocab, hidden): lm_head, or the embedding when tied. */
  lmHead(): Tensor {
    return this.p(this.lmHeadName);
  }

  get lmHeadName(): string {
    return this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  }

  release(): void {
    this.params.release();
    this.tables?.cos.release();
    this.tables?.sin.release();
  }
}
