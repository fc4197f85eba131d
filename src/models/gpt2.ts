// GPT-2: learned positions, pre-LayerNorm blocks, GELU (tanh), Conv1D weights used as stored ([in, out]),
// lm_head tied to the token embedding. Parameters keep HF names; shapes noted as (B, T, ...).
import { ParameterSet } from '../nn/parameters.ts';
import * as T from '../tensor/index.ts';
import { Rng, Tensor } from '../tensor/index.ts';
import type { Gpt2Config } from './config.ts';
import type { CausalLM, ForwardOptions } from './model.ts';
import { paramSpecs } from './model.ts';
import { expectedTensors } from './tensor-table.ts';

/** Conv1D as HF's GPT-2 stores it: y = x @ W + b with W (in, out). */
function conv1d(x: Tensor, w: Tensor, b: Tensor): Tensor {
  return T.add(T.matmul(x, w), b);
}

export class Gpt2 implements CausalLM {
  readonly config: Gpt2Config;
  readonly params: ParameterSet;

  constructor(config: Gpt2Config, opts: { seed?: number; initStd?: number } = {}) {
    this.config = config;
    this.params = new ParameterSet(paramSpecs(expectedTensors(config), opts.initStd ?? 0.02), new Rng(opts.seed ?? 0));
  }

  private p(name: string): Tensor {
    return this.params.get(name);
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
    let x = T.add(T.embedding(this.p('transformer.wte.weight'), ids), T.embedding(this.p('transformer.wpe.weight'), positions)); // (B, S, D)
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const pre = `transformer.h.${i}`;
      const block = (h: Tensor): Tensor => {
        const a = T.layerNorm(h, this.p(`${pre}.ln_1.weight`), this.p(`${pre}.ln_1.bias`), c.layerNormEpsilon); // (B, S, D)
        const qkv = conv1d(a, this.p(`${pre}.attn.c_attn.weight`), this.p(`${pre}.attn.c_attn.bias`)); // (B, S, 3D)
        const q = T.reshape(T.slice(qkv, 2, 0, D), [B, S, H, hd]);
        const k = T.reshape(T.slice(qkv, 2, D, 2 * D), [B, S, H, hd]);
        const v = T.reshape(T.slice(qkv, 2, 2 * D, 3 * D), [B, S, H, hd]);
        const [kc, vc] = cache ? cache.append(i, k, v) : [k, v]; // (B, past + S, H, hd)
        const att = T.attention(q, kc, vc, { causal: true, qOffset: step.past, qSegments: step.qSegments, kSegments: step.kSegments }); // (B, S, H, hd)
        const o = conv1d(T.reshape(att, [B, S, D]), this.p(`${pre}.attn.c_proj.weight`), this.p(`${pre}.attn.c_proj.bias`));
        const h2 = T.add(h, o);
        const m = T.layerNorm(h2, this.p(`${pre}.ln_2.weight`), this.p(`${pre}.ln_2.bias`), c.layerNormEpsilon);
        const ff = T.gelu(conv1d(m, this.p(`${pre}.mlp.c_fc.weight`), this.p(`${pre}.mlp.c_fc.bias`))); // (B, S, 4D)
        return T.add(h2, conv1d(ff, this.p(`${pre}.mlp.c_proj.weight`), this.p(`${pre}.mlp.c_proj.bias`)));
      };
      x = opts.recompute ? T.recompute(block, [x]) : block(x);
    }
    return T.layerNorm(x, this.p('transformer.ln_f.weight'), this.p('transformer.ln_f.bias'), c.layerNormEpsilon);
  }

  lmHead(): Tensor {
    return this.p(this.config.tieWordEmbeddings ? 'transformer.wte.weight' : 'lm_head.weight');
  }

  release(): void {
    this.params.release();
  }
}
