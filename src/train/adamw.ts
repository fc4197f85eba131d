// AdamW (PyTorch's torch.optim.AdamW arithmetic) over flat parameter/gradient buffers, with the fused
// native step, global-norm gradient clipping folded into the step, and state that can be saved and restored.
import { type AdamWHyper, type AdamWOptions, type AdamWPiece, adamwHyper, adamwStep } from '../tensor/adamw.ts';
import { FlatBuffer, type FlatLayout } from '../tensor/index.ts';

export type { AdamWOptions } from '../tensor/adamw.ts';

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
  private readonly hyper: AdamWHyper;

  constructor(params: FlatBuffer, grads: FlatBuffer, opts: AdamWOptions) {
    this.hyper = adamwHyper(opts);
    ({ beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay } = this.hyper);
    this.params = params;
    this.grads = grads;
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
    const { names, shapes, offsets } = this.layout;
    // The four buffers share one layout: a tensor sits at the same byte offset in each.
    const pieces: AdamWPiece[] = names.map((name, i) => {
      const off = (offsets[i] as number) * 4;
      return { name, count: (shapes[i] as number[]).reduce((a, b) => a * b, 1), pOff: off, gOff: off, mOff: off, vOff: off };
    });
    const buffers = { backend: this.params.storage.backend, p: this.params.storage.handle, g: this.grads.storage.handle, m: this.m.storage.handle, v: this.v.storage.handle };
    adamwStep(this.hyper, this.step, lr, gradScale, buffers, pieces, skip);
  }

  release(): void {
    this.m.release();
    this.v.release();
  }
}

/** The global L2 norm of every gradient in the flat buffer (padding is zero and adds nothing). */
export function globalGradNorm(grads: FlatBuffer): number {
  return Math.sqrt(grads.storage.backend.sumsq(grads.storage.handle, 0, grads.layout.size));
}

/** The factor that clips a gradient of this norm to maxNorm (PyTorch's clip_grad_norm_: eps 1e-6). */
export function clipScale(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) return 1;
  return Math.min(1, maxNorm / (norm + 1e-6));
}
