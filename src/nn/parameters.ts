// A model's weights: the trainable ones as views of one flat buffer, with gradients as views of a second one
// (so the optimizer, clipping and all-reduce each see one block), and the frozen ones in a FrozenStore
// (frozen-store.ts): no gradient, no optimizer state, each in its own storage dtype, possibly memory-mapped.
import type { ComputeBackend } from '../backend/compute.ts';
import { ShapeError } from '../errors.ts';
import { FlatBuffer, type FlatLayout, type Rng, type RowSource, Tensor, flatLayout, loadInto, numel } from '../tensor/index.ts';
import { type FrozenDtype, FrozenStore } from './frozen-store.ts';
import type { LoraState } from './lora-state.ts';

export interface ParamSpec {
  name: string;
  shape: number[];
  /** How to initialise: normal(0, std), zeros, ones. */
  init: { kind: 'normal'; std: number } | { kind: 'zeros' } | { kind: 'ones' };
}

/** Which weights are frozen and how they are stored (`freeze` of the run config, `model.base_dtype`). */
export interface WeightOptions {
  /** Frozen weights (by name); every other one is trainable. */
  frozen?: (name: string) => boolean;
  /** Storage dtype of frozen weights (default float32: the values are kept exactly). */
  frozenDtype?: FrozenDtype;
  /**
   * Draw the initial values (default true). A model about to be loaded from a checkpoint skips it: every
   * weight is then written by the loader, and a frozen weight may be a mapping of the file instead.
   */
  initialise?: boolean;
  /**
   * Allocate the full gradient buffer (default true). ZeRO-2 passes false: its gradients live in shard buckets,
   * and a buffer made and dropped later would still have raised the process's peak memory.
   */
  gradients?: boolean;
  /**
   * ZeRO-3 from the start: the trainable weights are never allocated whole; `shard` makes the holder of this
   * rank's part (distributed/zero3.ts's ShardedParameters) and initial or loaded values are written into it.
   */
  shard?: { worldSize: number; make: (layout: FlatLayout, backend: ComputeBackend) => TrainableShards };
}

/** Parameter counts and resident bytes of the two kinds (for the memory estimate). */
export interface WeightCounts {
  trainableParams: number;
  frozenParams: number;
  frozenBytes: number;
  /** Frozen bytes that are file mappings (resident only as their pages are read). */
  frozenMappedBytes: number;
}

/**
 * ZeRO-3's sharded trainable weights (distributed/zero3.ts's ShardedParameters) as the weight set uses them:
 * weight() and read() may gather a layer group from every rank (collectives), load() writes this rank's part.
 */
export interface TrainableShards {
  readonly layout: FlatLayout;
  weight(name: string): Tensor;
  read(name: string): Float32Array;
  load(name: string, data: Float32Array): void;
  beginSave(): void;
  endSave(): void;
  /** The full flat buffer, gathered from every rank. */
  gatherAll(): FlatBuffer;
  release(): void;
}

function initialValues(spec: ParamSpec, rng: Rng | null): Float32Array {
  const data = new Float32Array(numel(spec.shape));
  if (spec.init.kind === 'normal') rng?.fillNormal(data, 0, spec.init.std);
  else if (spec.init.kind === 'ones') data.fill(1);
  return data;
}

export class ParameterSet {
  /**
   * The trainable weights, one flat buffer (layout order = model order of the trainable names). Empty while
   * ZeRO-3 shards them (shardTrainable): `layout` is theirs then, and weight() gathers them.
   */
  values: FlatBuffer;
  /** Their gradients, same layout. */
  grads: FlatBuffer;
  readonly frozen: FrozenStore;
  /** Every weight's name, trainable or frozen, in model order. */
  readonly names: string[];
  /** LoRA adapters (lora.ts), when attached: their weights are trainable and not among `names`. */
  lora: LoraState | null = null;
  /** The adapter weights' names (`<module>.lora_A.weight`, …), in the order they were attached. */
  adapterNames: string[] = [];
  private readonly specs: Map<string, ParamSpec>;
  private withGradients: boolean;
  private shards: TrainableShards | null = null;

  constructor(specs: readonly ParamSpec[], rng: Rng, opts: WeightOptions = {}) {
    const isFrozen = opts.frozen ?? (() => false);
    this.names = specs.map((s) => s.name);
    this.specs = new Map(specs.map((s) => [s.name, s]));
    this.frozen = new FrozenStore(opts.frozenDtype ?? 'float32');
    const trainable = specs.filter((s) => !isFrozen(s.name));
    this.withGradients = opts.gradients ?? true;
    if (opts.shard) {
      this.withGradients = false;
      this.values = new FlatBuffer(flatLayout([]));
      this.grads = new FlatBuffer(flatLayout([]));
      this.shards = opts.shard.make(flatLayout(trainable), this.values.storage.backend);
    } else {
      ({ values: this.values, grads: this.grads } = this.allocateTrainable(trainable));
    }
    const init = opts.initialise ?? true;
    // The RNG is drawn in model order over every weight, frozen or not, so a frozen run starts from the same
    // values as a fully trainable one.
    for (const spec of specs) {
      if (isFrozen(spec.name)) {
        if (init) this.frozen.set(spec.name, spec.shape, initialValues(spec, rng));
        else this.frozen.expect(spec.name, spec.shape);
      } else if (init && spec.init.kind !== 'zeros') {
        if (this.shards) this.shards.load(spec.name, initialValues(spec, rng));
        else loadInto(this.values.get(spec.name), initialValues(spec, rng));
      }
    }
  }

  private allocateTrainable(specs: readonly ParamSpec[]): { values: FlatBuffer; grads: FlatBuffer } {
    const layout = flatLayout(specs);
    const values = new FlatBuffer(layout);
    const grads = new FlatBuffer(this.withGradients ? layout : flatLayout([]));
    for (const name of layout.names) {
      const t = values.get(name);
      t.name = name;
      t.requiresGrad = true;
      t.grad = this.withGradients ? grads.get(name) : null;
    }
    return { values, grads };
  }

  /** The trainable weights' flat layout (also while they are sharded). */
  get layout(): FlatLayout {
    return this.shards?.layout ?? this.values.layout;
  }

  /** Trainable weight names (the flat buffer's layout order). */
  get trainableNames(): string[] {
    return this.layout.names;
  }

  /** Whether ZeRO-3 holds the trainable weights (shardTrainable, or WeightOptions.shard). */
  get sharded(): boolean {
    return this.shards !== null;
  }

  /** ZeRO-3's holder of the trainable weights, or null. */
  get trainableShards(): TrainableShards | null {
    return this.shards;
  }

  /**
   * ZeRO-3: hands the trainable weights to `make` (which keeps this rank's shard of them) and frees the full
   * buffer and any full gradient buffer. From then on weight(), read() and load() go through the shards.
   */
  shardTrainable<S extends TrainableShards>(make: (values: FlatBuffer) => S): S {
    if (this.shards) throw new ShapeError('the trainable weights are sharded already');
    if (this.lora) throw new ShapeError('ZeRO-3 does not shard LoRA adapters (use zero_stage 0 to 2 with LoRA)');
    this.dropGradients();
    const shards = make(this.values);
    const backend = this.values.storage.backend;
    this.values.release();
    this.values = new FlatBuffer(flatLayout([]));
    // The allocator would keep the full buffer's block cached for reuse: hand it back to the system.
    backend.emptyCache();
    this.shards = shards;
    return shards;
  }

  /** Leaves ZeRO-3: every rank gets the full trainable buffer again (a collective). */
  unshard(): void {
    const shards = this.shards;
    if (!shards) return;
    const full = shards.gatherAll();
    shards.release();
    this.shards = null;
    this.values.release();
    this.values = full;
    for (const name of full.layout.names) {
      const t = full.get(name);
      t.name = name;
      t.requiresGrad = true;
      t.grad = null;
    }
  }

  /** Around a consolidated save (every rank calls both; between them the writing rank reads every weight in order). */
  beginSave(): void {
    this.shards?.beginSave();
  }

  endSave(): void {
    this.shards?.endSave();
  }

  /** The random streams a forward draws from (LoRA's dropout): recompute replays them. */
  get forwardRngs(): Rng[] {
    return this.lora ? [this.lora.rng] : [];
  }

  /** Whether any trainable weight's name starts with `prefix` (a block that needs a backward under recompute). */
  hasTrainableUnder(prefix: string): boolean {
    return this.trainableNames.some((n) => n.startsWith(prefix));
  }

  isFrozen(name: string): boolean {
    return this.frozen.has(name);
  }

  private spec(name: string): ParamSpec {
    const s = this.specs.get(name);
    if (!s) throw new ShapeError(`no parameter named ${name}`, { where: name });
    return s;
  }

  shape(name: string): number[] {
    return this.spec(name).shape;
  }

  /**
   * The weight as stored: a view of the trainable buffer, or the frozen tensor in its storage dtype (which may
   * be bfloat16 or a read-only mapping). Compute code reads `weight(name)` instead.
   */
  get(name: string): Tensor {
    this.spec(name);
    if (this.frozen.has(name)) return this.frozen.stored(name);
    return this.shards ? this.shards.weight(name) : this.values.get(name);
  }

  /** The weight as float32 for compute: trainable views as they are, frozen weights widened (step-scoped). */
  weight(name: string): Tensor {
    this.spec(name);
    if (this.frozen.has(name)) return this.frozen.dense(name);
    return this.shards ? this.shards.weight(name) : this.values.get(name);
  }

  /** A frozen low-precision (bfloat16, NF4, int8) matrix as rows a linear expands panel by panel; null otherwise. */
  frozenRows(name: string): RowSource | null {
    this.spec(name);
    return this.frozen.has(name) ? this.frozen.rows(name) : null;
  }

  /** Float32 values of a weight (checkpoint writing, tests). */
  read(name: string): Float32Array {
    this.spec(name);
    if (this.frozen.has(name)) return this.frozen.read(name);
    return this.shards ? this.shards.read(name) : (this.values.get(name).toArray() as Float32Array);
  }

  /** Writes float32 values into a weight, whichever store holds it (checkpoint loading). */
  load(name: string, data: Float32Array): void {
    const s = this.spec(name);
    if (this.frozen.has(name)) this.frozen.set(name, s.shape, data);
    else if (this.shards) this.shards.load(name, data);
    else loadInto(this.values.get(name), data);
  }

  /**
   * Moves the weights `which` selects from the trainable buffer to the frozen store (`freeze` by regex): they
   * lose their gradient and, since the optimizer is built over the trainable buffer, their optimizer state.
   * The trainable buffers are rebuilt without them. Views of the old buffers taken before this call are
   * released with them. Frozen weights stay frozen.
   */
  freeze(which: (name: string) => boolean): void {
    const moving = this.trainableNames.filter(which);
    if (moving.length === 0) return;
    if (this.shards) throw new ShapeError('cannot freeze weights while ZeRO-3 shards them');
    const old = { values: this.values, grads: this.grads };
    for (const name of moving) this.frozen.set(name, this.spec(name).shape, old.values.get(name).toArray() as Float32Array);
    const keep = this.trainableNames.filter((n) => !which(n)).map((n) => this.spec(n));
    ({ values: this.values, grads: this.grads } = this.allocateTrainable(keep));
    for (const s of keep) loadInto(this.values.get(s.name), old.values.get(s.name).toArray() as Float32Array);
    old.values.release();
    old.grads.release();
  }

  /**
   * Adds LoRA adapter weights to the trainable buffer with their initial values (lora.ts's attachLora, which
   * freezes the base first). The trainable buffers are rebuilt; the weights trainable before keep their values.
   */
  addAdapters(adapters: readonly { name: string; shape: number[]; values: Float32Array }[], state: LoraState): void {
    if (this.shards) throw new ShapeError('cannot add adapters while ZeRO-3 shards the weights');
    for (const a of adapters) {
      if (this.specs.has(a.name)) throw new ShapeError(`parameter ${a.name} exists already`, { where: a.name });
    }
    const old = { values: this.values, grads: this.grads };
    const keep = this.trainableNames.map((n) => this.spec(n));
    const added: ParamSpec[] = adapters.map((a) => ({ name: a.name, shape: a.shape, init: { kind: 'zeros' } }));
    for (const s of added) this.specs.set(s.name, s);
    ({ values: this.values, grads: this.grads } = this.allocateTrainable([...keep, ...added]));
    for (const s of keep) loadInto(this.values.get(s.name), old.values.get(s.name).toArray() as Float32Array);
    for (const a of adapters) loadInto(this.values.get(a.name), a.values);
    old.values.release();
    old.grads.release();
    this.adapterNames.push(...adapters.map((a) => a.name));
    this.lora = state;
  }

  counts(): WeightCounts {
    const trainableParams = this.trainableNames.reduce((n, k) => n + numel(this.spec(k).shape), 0);
    const frozenParams = this.frozen.names.reduce((n, k) => n + numel(this.spec(k).shape), 0);
    return { trainableParams, frozenParams, frozenBytes: this.frozen.bytes(), frozenMappedBytes: this.frozen.mappedBytes() };
  }

  zeroGrad(): void {
    this.grads.zero();
  }

  /** Whether the trainable weights have their full gradient buffer (see dropGradients()). */
  get hasGradients(): boolean {
    return this.withGradients;
  }

  /**
   * Frees the full gradient buffer (ZeRO-2 redirects every gradient into shard buckets instead): `grads`
   * becomes an empty buffer and the weights' .grad null, until restoreGradients().
   */
  dropGradients(): void {
    if (!this.withGradients) return;
    this.withGradients = false;
    this.grads.release();
    this.grads = new FlatBuffer(flatLayout([]));
    for (const name of this.trainableNames) this.values.get(name).grad = null;
  }

  /** A zeroed full gradient buffer again, linked to the weights' .grad. */
  restoreGradients(): void {
    if (this.withGradients) return;
    if (this.shards) throw new ShapeError('the trainable weights are sharded (ZeRO-3): a full gradient buffer needs unshard() first');
    this.withGradients = true;
    this.grads.release();
    this.grads = new FlatBuffer(this.values.layout);
    for (const name of this.trainableNames) this.values.get(name).grad = this.grads.get(name);
  }

  release(): void {
    this.shards?.release();
    this.values.release();
    this.grads.release();
    this.frozen.release();
  }
}
