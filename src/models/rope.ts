// RoPE frequency tables as HF computes them (fp32 inv_freq, fp32 angles), with Llama 3 and linear scaling.
import { ConfigError } from '../errors.ts';
import { Tensor } from '../tensor/index.ts';
import type { RopeScaling } from './config.ts';

const f = Math.fround;

/** inv_freq[i] = 1 / theta^(2i / rotDim), rescaled per rope_scaling (HF's rope init functions). */
export function inverseFrequencies(rotDim: number, theta: number, scaling: RopeScaling | null): Float32Array {
  const half = rotDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(f(theta) ** f(f(2 * i) / rotDim)));
  if (!scaling) return inv;
  if (scaling.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = f((inv[i] as number) / scaling.factor);
    return inv;
  }
  if (scaling.type === 'llama3') {
    const { factor } = scaling;
    const low = scaling.lowFreqFactor as number;
    const high = scaling.highFreqFactor as number;
    const oldLen = scaling.originalMaxPositionEmbeddings as number;
    const lowWavelen = oldLen / low;
    const highWavelen = oldLen / high;
    for (let i = 0; i < half; i++) {
      const freq = inv[i] as number;
      const wavelen = (2 * Math.PI) / freq;
      if (wavelen < highWavelen) continue; // high frequencies: unchanged
      if (wavelen > lowWavelen) {
        inv[i] = f(freq / factor); // low frequencies: scaled
        continue;
      }
      const smooth = (oldLen / wavelen - low) / (high - low);
      inv[i] = f((1 - smooth) * (freq / factor) + smooth * freq);
    }
    return inv;
  }
  // Dynamic NTK only changes frequencies past max_position_embeddings; within it, it is the default.
  return inv;
}

/** Cos/sin tables (positions, rotDim/2) for positions 0..count-1, persistent. */
export function ropeTables(inv: Float32Array, count: number): { cos: Tensor; sin: Tensor } {
  const half = inv.length;
  const cos = new Float32Array(count * half);
  const sin = new Float32Array(count * half);
  for (let p = 0; p < count; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(p * (inv[i] as number));
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos: Tensor.from(cos, [count, half], 'float32', { persistent: true }), sin: Tensor.from(sin, [count, half], 'float32', { persistent: true }) };
}

/**
 * Position ids (B*T) for a batch: offset + t, or, with segment ids (packed rows), restarting at 0 at
 * each new segment (padding, segment 0, gets position 0).
 */
export function positionIds(B: number, T: number, opts: { offset?: number; segments?: Int32Array | null } = {}): Int32Array {
  const out = new Int32Array(B * T);
  const offset = opts.offset ?? 0;
  const seg = opts.segments ?? null;
  if (seg && seg.length !== B * T) throw new ConfigError(`segment ids: ${seg.length} values for a ${B}x${T} batch`);
  for (let b = 0; b < B; b++) {
    let start = 0;
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (!seg) {
        out[i] = offset + t;
        continue;
      }
      if (t > 0 && seg[i] !== seg[i - 1]) start = t;
      out[i] = seg[i] === 0 ? 0 : t - start;
    }
  }
  return out;
}
