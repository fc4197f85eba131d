// Key/value cache for incremental decoding: per-layer k and v buffers (B, maxLen, Hkv, hd) allocated once,
// filled a step at a time; attention reads their first rows through views that keep the cache's batch stride.
import { ConfigError, ShapeError } from '../errors.ts';
import * as T from '../tensor/index.ts';
import { Tensor } from '../tensor/index.ts';
import type { ModelConfig } from './config.ts';

export interface KvCacheOptions {
  layers: number;
  batch: number;
  /** Most tokens (prompt + generated) a row can hold. */
  maxLen: number;
  kvHeads: number;
  headDim: number;
}

/** What a forward step needs from the cache: where its queries sit and the segment ids attention masks with. */
export interface CacheStep {
  /** Tokens cached before this step: the query offset among the keys. */
  past: number;
  /** Segment ids of this step's queries (B, S) and of every cached key (B, past + S), or null without segments. */
  qSegments: Tensor | null;
  kSegments: Tensor | null;
}

/**
 * What a model's forward pass asks of a cache: open a step of S new tokens per row, then hand each layer's new
 * k and v and get back every key and value the step's queries see. KvCache (rows advance together) and
 * SlotKvCache (continuous batching: rows come and go) both answer it.
 */
export interface ForwardCache {
  begin(B: number, S: number, segments: Int32Array | null): CacheStep;
  append(layer: number, k: Tensor, v: Tensor): [Tensor, Tensor];
}

export class KvCache implements ForwardCache {
  readonly batch: number;
  readonly maxLen: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Tokens cached so far (the same for every row: prompts are left-padded). */
  length = 0;
  private readonly k: Tensor[];
  private readonly v: Tensor[];
  /** Segment id of every cached token (B, maxLen); 1 where a step gave none. */
  private readonly segments: Int32Array;
  private useSegments = false;
  private stepStart = 0;
  private stepLen = 0;

  constructor(opts: KvCacheOptions) {
    for (const [name, v] of Object.entries(opts)) {
      if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`KV cache: ${name} must be a positive integer, got ${v}`, { where: `kv-cache ${name}` });
    }
    this.batch = opts.batch;
    this.maxLen = opts.maxLen;
    this.kvHeads = opts.kvHeads;
    this.headDim = opts.headDim;
    const shape = [opts.batch, opts.maxLen, opts.kvHeads, opts.headDim];
    // Persistent: the cache outlives the step scopes of the decoding loop and is released by its owner.
    this.k = Array.from({ length: opts.layers }, () => Tensor.zeros(shape, 'float32', { persistent: true }));
    this.v = Array.from({ length: opts.layers }, () => Tensor.zeros(shape, 'float32', { persistent: true }));
    this.segments = new Int32Array(opts.batch * opts.maxLen).fill(1);
  }

  /** A cache sized for `model`'s attention layers. */
  static forConfig(config: ModelConfig, batch: number, maxLen: number): KvCache {
    if (config.family === 'llama') {
      return new KvCache({ layers: config.numHiddenLayers, batch, maxLen, kvHeads: config.numKeyValueHeads, headDim: config.headDim });
    }
    return new KvCache({ layers: config.numHiddenLayers, batch, maxLen, kvHeads: config.nHead, headDim: config.nEmbd / config.nHead });
  }

  get layers(): number {
    return this.k.length;
  }

  /** Bytes the buffers hold. */
  get bytes(): number {
    return 2 * this.layers * this.batch * this.maxLen * this.kvHeads * this.headDim * 4;
  }

  /**
   * Opens a forward step of S new tokens per row: records their segment ids (B*S, or null for one sample
   * per row) and reserves their rows. Segment tensors are made in the caller's scope.
   */
  begin(B: number, S: number, segments: Int32Array | null): CacheStep {
    if (T.isGradEnabled()) throw new ConfigError('KV cache: decoding with a cache records no gradients; run it inside noGrad()', { where: 'forward cache' });
    if (B !== this.batch) throw new ShapeError(`KV cache: batch of ${B} rows, cache holds ${this.batch}`, { where: 'forward cache' });
    const past = this.length;
    if (past + S > this.maxLen) {
      throw new ShapeError(`KV cache: ${past} cached + ${S} new tokens exceed its ${this.maxLen} rows`, { where: 'forward cache', hint: 'allocate the cache with a larger maxLen' });
    }
    if (segments && segments.length !== B * S) throw new ShapeError(`KV cache: ${segments.length} segment ids for ${B}x${S} tokens`, { where: 'forward segments' });
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < S; t++) this.segments[b * this.maxLen + past + t] = segments ? (segments[b * S + t] as number) : 1;
    }
    if (segments) this.useSegments = true;
    this.stepStart = past;
    this.stepLen = S;
    this.length = past + S;
    if (!this.useSegments) return { past, qSegments: null, kSegments: null };
    const q = new Int32Array(B * S);
    const k = new Int32Array(B * (past + S));
    for (let b = 0; b < B; b++) {
      const row = this.segments.subarray(b * this.maxLen, b * this.maxLen + past + S);
      k.set(row, b * (past + S));
      q.set(row.subarray(past), b * S);
    }
    return { past, qSegments: Tensor.from(q, [B, S], 'int32'), kSegments: Tensor.from(k, [B, past + S], 'int32') };
  }

  /**
   * Writes this step's k and v (B, S, Hkv, hd) of `layer` (after RoPE) into the cache and returns views of
   * every cached row (B, past + S, Hkv, hd) with the cache's batch stride.
   */
  append(layer: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const kb = this.k[layer];
    const vb = this.v[layer];
    if (!kb || !vb) throw new ShapeError(`KV cache: layer ${layer} of ${this.layers}`, { where: 'forward cache' });
    const want = [this.batch, this.stepLen, this.kvHeads, this.headDim];
    for (const [name, t] of [['k', k], ['v', v]] as const) {
      if (t.shape.length !== 4 || t.shape.some((d, i) => d !== want[i])) {
        throw new ShapeError(`KV cache: layer ${layer} ${name} is [${t.shape}], expected [${want}]`, { where: `layer ${layer} ${name}` });
      }
    }
    const end = this.stepStart + this.stepLen;
    T.copyInto(k, T.slice(kb, 1, this.stepStart, end), false);
    T.copyInto(v, T.slice(vb, 1, this.stepStart, end), false);
    return [T.slice(kb, 1, 0, end), T.slice(vb, 1, 0, end)];
  }

  /** Forgets every cached token (the buffers stay allocated for the next batch of the same size). */
  reset(): void {
    this.length = 0;
    this.useSegments = false;
    this.segments.fill(1);
  }

  release(): void {
    for (const t of [...this.k, ...this.v]) t.release();
  }
}
