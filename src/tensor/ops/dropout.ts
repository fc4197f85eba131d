// Inverted dropout by the backend's dropoutMask kernel: a mask is named by two draws of an Rng (its keys), so
// the same keys give the same mask and a backward pass regenerates it instead of keeping it. Not recorded for
// autograd: ops multiply by the mask (or use x∘mask) themselves.
import type { Rng } from '../rng.ts';
import type { Tensor } from '../tensor.ts';
import { dense, emptyOn } from './util.ts';

/** One inverted-dropout mask, named by two draws of an Rng (Binding.dropoutMask): the same keys give the same mask. */
export interface DropoutKeys {
  key0: number;
  key1: number;
  /** 1 - p. */
  keep: number;
}

/** Draws the keys of one dropout mask with probability p from rng (two uniform draws of its stream). */
export function drawDropout(rng: Rng, p: number): DropoutKeys {
  return { key0: rng.nextU32(), key1: rng.nextU32(), keep: 1 - p };
}

/** x∘mask as a new tensor (or in place with `into` = x's own dense storage), not recorded for autograd. */
export function applyDropout(x: Tensor, keys: DropoutKeys, into?: Tensor): Tensor {
  const xd = dense(x);
  const out = into ?? emptyOn(xd.backend, xd.shape);
  xd.backend.dropoutMask(keys.key0, keys.key1, keys.keep, xd.handle, xd.byteOffset, out.handle, out.byteOffset, 0, 0, xd.size);
  return out;
}

/** The mask itself (0 or 1/keep, float32, x's shape), for ops that multiply by it under autograd. */
export function dropoutMaskOf(x: Tensor, keys: DropoutKeys): Tensor {
  const mask = emptyOn(x.backend, x.shape);
  x.backend.dropoutMask(keys.key0, keys.key1, keys.keep, 0, 0, 0, 0, mask.handle, mask.byteOffset, mask.size);
  return mask;
}
