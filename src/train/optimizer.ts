// The trainer's optimizer over a process group, over the model's trainable flat buffer (frozen weights have no
// gradient and no moments): plain AdamW with gradients all-reduced across data-parallel ranks, or ZeRO-1 (each rank keeps 1/N of the moments; reduce-scatter, local update, all-gather). Both save
// and load optimizer/rank_<r>.safetensors, and either can resume from the other's files or another world size.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_BUCKET_BYTES, allReduceGradients, type ProcessGroup, ShardedAdamW, ShardedGradients, ShardedParameters, shardRange } from '../distributed/index.ts';
import { FormatError, ShapeError } from '../errors.ts';
import { openSafetensors } from '../formats/safetensors.ts';
import { writeSafetensors } from '../formats/safetensors-writer.ts';
import type { ParameterSet } from '../nn/parameters.ts';
import type { FlatLayout } from '../tensor/index.ts';
import { AdamW, type AdamWOptions, globalGradNorm } from './adamw.ts';

export interface TrainOptimizer {
  readonly step: number;
  /** Starts a step's gradient accumulation (zero gradients). */
  zeroGrad(): void;
  /** After each micro-batch's backward (ZeRO-2 reduces the buckets backward left). */
  microBatchDone(): void;
  /** Combines this rank's gradients with the other ranks' (sum: the loss is already normalised globally). */
  reduceGradients(): void;
  /** Global L2 norm of the combined gradients (the same on every rank). */
  gradNorm(): number;
  update(lr: number, gradScale: number, skip: (name: string) => boolean): void;
  /**
   * After the last step, on every rank (a collective at ZeRO-3, which gives the model its full weights back;
   * nothing for the others). Not on a failure path: release() alone never waits for other ranks.
   */
  finish(): void;
  /** Writes this rank's state file into `dir` (optimizer/); returns its file name. */
  save(dir: string): string;
  /** Restores from the optimizer/ directory of a checkpoint written with any world size and either kind. */
  load(dir: string): void;
  release(): void;
}

const f32 = (bytes: Uint8Array): Float32Array => new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));

/** The full flat moments (layout order) and step from any checkpoint's optimizer/ directory. */
export function readFullMoments(dir: string, layout: FlatLayout): { m: Float32Array; v: Float32Array; step: number } {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => /^rank_\d+\.safetensors$/.test(f)) : [];
  files.sort((a, b) => Number(a.match(/\d+/)?.[0]) - Number(b.match(/\d+/)?.[0]));
  if (files.length === 0) throw new FormatError(`${dir}: no optimizer state (rank_<r>.safetensors)`, { where: dir });
  const m = new Float32Array(layout.size);
  const v = new Float32Array(layout.size);
  let step = -1;
  for (const file of files) {
    const path = join(dir, file);
    const f = openSafetensors(path);
    try {
      const s = Number(f.metadata['step']);
      if (!Number.isInteger(s) || s < 0) throw new FormatError(`${path}: metadata "step" is missing`, { where: path });
      if (step >= 0 && s !== step) throw new FormatError(`${path}: step ${s} differs from the other ranks' ${step}`, { where: path });
      step = s;
      if (f.metadata['kind'] === 'zero1-shard') {
        // A flat shard [start, start + count) of the layout.
        const start = Number(f.metadata['shard_start']);
        const size = Number(f.metadata['layout_size']);
        if (size !== layout.size) throw new FormatError(`${path}: saved for ${size} parameters, the model has ${layout.size}`, { where: path });
        const em = f32(f.read('exp_avg'));
        const ev = f32(f.read('exp_avg_sq'));
        m.set(em, start);
        v.set(ev, start);
        continue;
      }
      layout.names.forEach((name, i) => {
        const off = layout.offsets[i] as number;
        const n = (layout.shapes[i] as number[]).reduce((a, b) => a * b, 1);
        for (const [kind, dst] of [['exp_avg', m], ['exp_avg_sq', v]] as const) {
          const e = f.get(`${kind}.${name}`);
          if (!e || e.dtype !== 'F32') throw new FormatError(`${path}: tensor ${kind}.${name} is missing or not F32`, { where: `${path}: ${kind}.${name}` });
          const data = f32(f.read(e.name));
          if (data.length !== n) throw new FormatError(`${path}: tensor ${kind}.${name} has ${data.length} values, the model ${n}`, { where: `${path}: ${kind}.${name}` });
          dst.set(data, off);
        }
      });
    } finally {
      f.close();
    }
  }
  return { m, v, step };
}

/** AdamW on every rank with all-reduced gradients (identical updates keep the replicas equal). */
export class ReplicatedAdamW implements TrainOptimizer {
  private readonly opt: AdamW;
  constructor(
    private readonly params: ParameterSet,
    private readonly pg: ProcessGroup,
    opts: AdamWOptions,
    private readonly bucketBytes = DEFAULT_BUCKET_BYTES,
  ) {
    params.restoreGradients();
    this.opt = new AdamW(params.values, params.grads, opts);
  }
  get step(): number {
    return this.opt.step;
  }
  zeroGrad(): void {
    this.params.zeroGrad();
  }
  microBatchDone(): void {}
  reduceGradients(): void {
    if (this.pg.size > 1) allReduceGradients(this.params.grads, this.pg, { op: 'sum', bucketBytes: this.bucketBytes });
  }
  gradNorm(): number {
    return globalGradNorm(this.params.grads);
  }
  update(lr: number, gradScale: number, skip: (name: string) => boolean): void {
    this.opt.update(lr, gradScale, skip);
  }
  finish(): void {}
  save(dir: string): string {
    // Every rank holds the same moments: rank 0 writes them, named per tensor.
    if (this.pg.rank !== 0) return '';
    // The trainable weights only: frozen ones have no moments.
    const names = this.params.trainableNames;
    const specs = names.flatMap((name) => {
      const shape = [...this.params.get(name).shape];
      return [
        { name: `exp_avg.${name}`, dtype: 'F32' as const, shape },
        { name: `exp_avg_sq.${name}`, dtype: 'F32' as const, shape },
      ];
    });
    writeSafetensors(
      join(dir, 'rank_0.safetensors'),
      specs,
      (spec) => {
        const [kind, ...rest] = spec.name.split('.');
        const a = (kind === 'exp_avg' ? this.opt.m : this.opt.v).get(rest.join('.')).toArray() as Float32Array;
        return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      },
      { step: String(this.opt.step), kind: 'full' },
    );
    return 'rank_0.safetensors';
  }
  load(dir: string): void {
    const { m, v, step } = readFullMoments(dir, this.params.values.layout);
    // The moment buffers share the parameters' flat layout: write them whole.
    if (m.length > 0) {
      this.opt.m.storage.backend.write(this.opt.m.storage.handle, 0, m);
      this.opt.v.storage.backend.write(this.opt.v.storage.handle, 0, v);
    }
    this.opt.step = step;
  }
  release(): void {
    this.opt.release();
  }
}

/**
 * ZeRO-1: this rank's 1/N of the moments. ZeRO-2 (stage 2): also 1/N of the gradients; the full gradient
 * buffer is freed and backward's gradients go through reduce-scattered buckets (distributed/zero2.ts).
 * ZeRO-3 (stage 3): also 1/N of the weights, gathered layer by layer as the model reads them
 * (distributed/zero3.ts), with one gradient bucket per layer group.
 */
export class ZeroAdamW implements TrainOptimizer {
  private readonly opt: ShardedAdamW;
  /** Stage 2 and 3's sharded gradients (null at stage 1). */
  readonly sharded: ShardedGradients | null;
  /** Stage 3's sharded weights (null at stages 1 and 2). */
  readonly weights: ShardedParameters | null = null;
  constructor(
    private readonly params: ParameterSet,
    private readonly pg: ProcessGroup,
    opts: AdamWOptions,
    readonly stage: 1 | 2 | 3 = 1,
    bucketBytes = DEFAULT_BUCKET_BYTES,
  ) {
    if (stage < 3 && params.sharded) throw new ShapeError(`ZeRO-${stage}: the model's weights are sharded (ZeRO-3); unshard() them first`);
    if (stage === 3) {
      // A model loaded at stage 3 holds its shard already (weightOptionsOf with a process group); otherwise
      // the full buffer is sharded now.
      const held = params.trainableShards;
      if (held && !(held instanceof ShardedParameters)) throw new ShapeError('ZeRO-3: the model is sharded by something else');
      const weights = held ?? params.shardTrainable((values) => new ShardedParameters(values, pg));
      weights.freeAll();
      this.weights = weights;
      const sharded = new ShardedGradients({ layout: weights.layout, storage: weights.shardValues }, pg, { buckets: weights.buckets(), onReduced: (i) => weights.bucketReduced(i), bucketBytes });
      this.sharded = sharded;
      weights.setOnLeaf((leaf, name) => sharded.attachLeaf(leaf, name));
      this.opt = new ShardedAdamW({ layout: weights.layout, storage: weights.shardValues }, null, pg, { ...opts, gradOp: 'sum', shardGrads: sharded.shardGrads, shardParams: weights.shardValues });
    } else if (stage === 2) {
      this.sharded = new ShardedGradients(params.values, pg, { bucketBytes });
      params.dropGradients();
      this.sharded.attach(params.values);
      this.opt = new ShardedAdamW(params.values, null, pg, { ...opts, gradOp: 'sum', shardGrads: this.sharded.shardGrads });
    } else {
      this.sharded = null;
      params.restoreGradients();
      this.opt = new ShardedAdamW(params.values, params.grads, pg, { ...opts, gradOp: 'sum', bucketBytes });
    }
  }
  get step(): number {
    return this.opt.step;
  }
  zeroGrad(): void {
    if (this.sharded) this.sharded.zero();
    else this.params.zeroGrad();
  }
  microBatchDone(): void {
    this.sharded?.finish();
  }
  reduceGradients(): void {
    // Stages 2 and 3 reduced every bucket during the micro-batches' backward.
    if (!this.sharded) this.opt.reduceGradients();
  }
  gradNorm(): number {
    return this.opt.gradNorm();
  }
  update(lr: number, gradScale: number, skip: (name: string) => boolean): void {
    // Gathered copies of the weights would be stale after the shard's update.
    this.weights?.freeAll();
    this.opt.update(lr, gradScale, skip);
  }
  finish(): void {
    if (this.weights) this.params.unshard();
  }
  save(dir: string): string {
    const { m, v, step } = this.opt.readState();
    const file = `rank_${this.pg.rank}.safetensors`;
    const shard = this.opt.shard;
    writeSafetensors(
      join(dir, file),
      [
        { name: 'exp_avg', dtype: 'F32', shape: [m.length] },
        { name: 'exp_avg_sq', dtype: 'F32', shape: [v.length] },
      ],
      (spec) => {
        const a = spec.name === 'exp_avg' ? m : v;
        return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      },
      // The same file at stages 1, 2 and 3 (a flat shard of the moments); zero_stage is informative.
      { step: String(step), kind: 'zero1-shard', zero_stage: String(this.stage), shard_start: String(shard.start), layout_size: String(this.params.layout.size), world_size: String(this.pg.size) },
    );
    return file;
  }
  load(dir: string): void {
    // Whatever world size wrote it: rebuild the full moments, then take this rank's shard.
    const layout = this.params.layout;
    const { m, v, step } = readFullMoments(dir, layout);
    const s = shardRange(layout, this.pg.rank, this.pg.size);
    this.opt.loadState({ m: m.slice(s.start, s.start + s.count), v: v.slice(s.start, s.start + s.count), step });
  }
  release(): void {
    // Stage 3 without finish() (a failure): the model keeps its shard (model.release() frees it); later
    // gathers no longer route gradients here.
    this.weights?.setOnLeaf(null);
    this.weights?.freeAll();
    this.opt.release();
    // The model keeps no gradient buffer; an optimizer built on it later makes one (restoreGradients).
    this.sharded?.release();
  }
}
