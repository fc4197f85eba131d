// GPT-2: learned positions, pre-LayerNorm blocks, GELU (tanh), Conv1D weights used as stored ([in, out]),
// lm_head tied to the token embedding. Parameters keep HF names; shapes noted as (B, T, ...).
import { embed } from '../nn/embedding.ts';
import { CONV1D, linear } from '../nn/linear.ts';
import { ParameterSet } from '../nn/parameters.ts';
import * as T from '../tensor/index.ts';
import { Rng, Tensor } from '../tensor/index.ts';
import type { Gpt2Config } from './config.ts';
import type { CausalLM, ForwardOptions, ModelOptions } from './model.ts';
import { paramSpecs } from './model.ts';
import { expectedTensors } from './tensor-table.ts';

export class Gpt2 implements CausalLM {
  readonly config: Gpt2Config;
  readonly params: ParameterSet;

  constructor(config: Gpt2Config, opts: ModelOptions = {}) {
    this.config = config;
    this.params = new ParameterSet(paramSpecs(expectedTensors(config), opts.initStd ?? 0.02), new Rng(opts.seed ?? 0), opts.weights);
  }

  /** A weight for compute (float32; a frozen low-precision weight widened for this step). */
  private p(name: string): Tensor {
    return this.params.weight(name);
  }

  forward(ids: Tensor, opts: ForwardOptions): Tensor {
    const c = this.config;
    const [B, S] = ids.shape as [number, number];
    const H = c.nHead;
    const D = c.nEmbd;
    const hd = D / H;
    const positions = Tensor.from(opts.positions, [B, S], 'int32');
    const segments = opts.segments ? Tensor.from(opts.segments, [B, S], 'int32') : null;
    const cache = opts.cache ?? null;
    const step = cache ? cache.begin(B, S, opts.segments ?? null) : { past: 0, qSegments: segments, kSegments: segments };
    let x = T.add(embed(ids, this.params, 'transformer.wte.weight'), embed(positions, this.params, 'transformer.wpe.weight')); // (B, S, D)
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const pre = `transformer.h.${i}`;
      const block = (h: Tensor): Tensor => {
        const a = T.layerNorm(h, this.p(`${pre}.ln_1.weight`), this.p(`${pre}.ln_1.bias`), c.layerNormEpsilon); // (B, S, D)
        const qkv = linear(a, this.params, `${pre}.attn.c_attn`, CONV1D); // (B, S, 3D)
        const q = T.reshape(T.slice(qkv, 2, 0, D), [B, S, H, hd]); // (B, S, H, hd)
        const k = T.reshape(T.slice(qkv, 2, D, 2 * D), [B, S, H, hd]); // (B, S, H, hd)
        const v = T.reshape(T.slice(qkv, 2, 2 * D, 3 * D), [B, S, H, hd]); // (B, S, H, hd)
        const [kc, vc] = cache ? cache.append(i, k, v) : [k, v]; // (B, past + S, H, hd)
        const att = T.attention(q, kc, vc, { causal: true, qOffset: step.past, qSegments: step.qSegments, kSegments: step.kSegments }); // (B, S, H, hd)
        const o = linear(T.reshape(att, [B, S, D]), this.params, `${pre}.attn.c_proj`, CONV1D); // (B, S, D)
        const h2 = T.add(h, o); // (B, S, D)
        const m = T.layerNorm(h2, this.p(`${pre}.ln_2.weight`), this.p(`${pre}.ln_2.bias`), c.layerNormEpsilon); // (B, S, D)
        const ff = T.gelu(linear(m, this.params, `${pre}.mlp.c_fc`, CONV1D)); // (B, S, 4D)
        return T.add(h2, linear(ff, this.params, `${pre}.mlp.c_proj`, CONV1D)); // (B, S, D)
      };
      x = opts.recompute ? T.recompute(block, [x], { trainableWeights: this.params.hasTrainableUnder(`${pre}.`), rngs: this.params.forwardRngs }) : block(x);
    }
    return T.layerNorm(x, this.p('transformer.ln_f.weight'), this.p('transformer.ln_f.bias'), c.layerNormEpsilon); // (B, S, D)
  }

  lmHead(): Tensor {
    return this.p(this.lmHeadName);
  }

  get lmHeadName(): string {
    return this.config.tieWordEmbeddings ? 'transformer.wte.weight' : 'lm_head.weight';
  }

  release(): void {
    this.params.release();
  }
}
