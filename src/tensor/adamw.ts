// The AdamW update shared by the optimizers (train/adamw.ts over whole flat buffers, distributed/zero.ts
// over a rank's shard): hyperparameters with their defaults and checks, and the fused native step over
// a list of tensor pieces, with PyTorch's bias corrections.
import type { ComputeBackend } from '../backend/compute.ts';
import { ConfigError } from '../errors.ts';

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Names of tensors that get no weight decay (norms, biases, embeddings by default in the trainer). */
  noDecay?: (name: string) => boolean;
}

export interface AdamWHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  noDecay: (name: string) => boolean;
}

/** Defaults as torch.optim.AdamW's (weight decay 0 here), checked; errors name the config key. */
export function adamwHyper(opts: AdamWOptions): AdamWHyper {
  const h = {
    beta1: opts.beta1 ?? 0.9,
    beta2: opts.beta2 ?? 0.999,
    eps: opts.eps ?? 1e-8,
    weightDecay: opts.weightDecay ?? 0,
    noDecay: opts.noDecay ?? (() => false),
  };
  for (const [k, v] of [['beta1', h.beta1], ['beta2', h.beta2]] as const) {
    if (!(v >= 0 && v < 1)) throw new ConfigError(`optimizer.${k} must be in [0, 1), got ${v}`, { where: `optimizer.${k}` });
  }
  if (!(h.eps > 0)) throw new ConfigError(`optimizer.eps must be > 0, got ${h.eps}`, { where: 'optimizer.eps' });
  return h;
}

/** Handles of the four buffers a step reads and writes, all on `backend`. */
export interface AdamWHandles {
  backend: ComputeBackend;
  p: number;
  g: number;
  m: number;
  v: number;
}

/** One tensor's part of a step: element count and byte offsets into each buffer. */
export interface AdamWPiece {
  name: string;
  count: number;
  pOff: number;
  gOff: number;
  mOff: number;
  vOff: number;
}

/** Optimizer step number `step` (1-based) over the pieces; `skip` leaves frozen tensors untouched. */
export function adamwStep(
  h: AdamWHyper,
  step: number,
  lr: number,
  gradScale: number,
  buffers: AdamWHandles,
  pieces: Iterable<AdamWPiece>,
  skip: (name: string) => boolean,
): void {
  const bc1 = 1 - h.beta1 ** step;
  const bc2 = 1 - h.beta2 ** step;
  for (const piece of pieces) {
    if (skip(piece.name)) continue;
    const wd = h.noDecay(piece.name) ? 0 : h.weightDecay;
    buffers.backend.adamw(
      buffers.p, piece.pOff, buffers.g, piece.gOff, buffers.m, piece.mOff, buffers.v, piece.vOff,
      piece.count, lr, h.beta1, h.beta2, h.eps, wd, bc1, bc2, gradScale,
    );
  }
}
