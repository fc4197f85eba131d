// AdamW (PyTorch's torch.optim.AdamW arithmetic) over flat parameter/gradient buffers, with the fused
// native step, global-norm gradient clipping folded into the step, and state that can be saved and restored.
import { native } from '../backend/binding.ts';
import { ConfigError } from '../errors.ts';
import { FlatBuffer, type FlatLayout } from '../tensor/index.ts';

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Names of tensors that get no weight decay (norms, biases, embeddings by default in the trainer). */
  noDecay?: (name: string) => boolean;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Steps taken so far (bias corrections use step + 1 on the next update). */
  step = 0;
  readonly m: FlatBuffer;
  readonly v: FlatBuffer;
  private readonly params: FlatBuffer;
  private readonly grads: FlatBuffer;
  private readonly noDecay: (name: string) => boolean;

  constructor(params: FlatBuffer, grads: FlatBuffer, opts: AdamWOptions) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    for (const [k, v] of [['beta1', this.beta1], ['beta2', this.beta2]] as const) {
      if (!(v >= 0 && v < 1)) throw new ConfigError(`optimizer.${k} must be in [0, 1), got ${v}`, { where: `optimizer.${k}` });
    }
    if (!(this.eps > 0)) throw new ConfigError(`optimizer.eps must be > 0, got ${this.eps}`, { where: 'optimizer.eps' });
    this.params = params;
    this.grads = grads;
    this.noDecay = opts.noDecay ?? (() => false);
    this.m = new FlatBuffer(params.layout);
    this.v = new FlatBuffer(params.layout);
  }

  get layout(): FlatLayout {
    return this.params.layout;
  }

  /**
   * One update with learning rate lr. gradScale multiplies every gradient first (e.g. clipping:
   * min(1, maxNorm / norm)). Frozen tensors (`skip`) are left untouched, moments included.
   */
  update(lr: number, gradScale = 1, skip: (name: string) => boolean = () => false): void {
    this.step += 1;
    const bc1 = 1 - this.beta1 ** this.step;
    const bc2 = 1 - this.beta2 ** this.step;
    const { names, shapes, offsets } = this.layout;
    names.forEach((name, i) => {
      if (skip(name)) return;
      const n = (shapes[i] as number[]).reduce((a, b) => a * b, 1);
      const off = (offsets[i] as number) * 4;
      const wd = this.noDecay(name) ? 0 : this.weightDecay;
      native.adamw(
        this.params.storage.handle, off, this.grads.storage.handle, off, this.m.storage.handle, off, this.v.storage.handle, off,
        n, lr, this.beta1, this.beta2, this.eps, wd, bc1, bc2, gradScale,
      );
    });
  }

  release(): void {
    this.m.release();
    this.v.release();
  }
}

/** The global L2 norm of every gradient in the flat buffer (padding is zero and adds nothing). */
export function globalGradNorm(grads: FlatBuffer): number {
  return Math.sqrt(native.sumsq(grads.storage.handle, 0, grads.layout.size));
}

/** The factor that clips a gradient of this norm to maxNorm (PyTorch's clip_grad_norm_: eps 1e-6). */
export function clipScale(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) return 1;
  return Math.min(1, maxNorm / (norm + 1e-6));
}
