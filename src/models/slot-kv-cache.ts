// A KV cache for continuous batching: a fixed number of rows (slots) that sequences enter and leave between
// steps. Columns are shared: a decode step writes one new column for every active row (one contiguous copy
// per layer, as KvCache does), and each cell carries a segment id, 1 where it holds a token of the row's
// current sequence and 0 elsewhere, so attention masks what other sequences (or earlier occupants) left in
// the row. A prompt is written right-aligned against the current column, so the row's tokens end where the
// next decode column begins; when the columns run out, compact() packs every row's tokens to the left.
import { ConfigError, ShapeError } from '../errors.ts';
import * as T from '../tensor/index.ts';
import { Tensor } from '../tensor/index.ts';
import type { ModelConfig } from './config.ts';
import type { CacheStep, ForwardCache } from './kv-cache.ts';

export interface SlotKvCacheOptions {
  layers: number;
  /** Rows: the most sequences decoded together. */
  slots: number;
  /** Columns per row; at least the longest sequence (prompt + generated) a row will hold. */
  capacity: number;
  kvHeads: number;
  headDim: number;
}

/** Which rows and columns the next forward step reads and writes. */
type Plan =
  | { kind: 'prefill'; row0: number; rows: number; column: number; S: number }
  | { kind: 'decode'; rows: number; column: number };

export class SlotKvCache implements ForwardCache {
  readonly slots: number;
  readonly capacity: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Columns in use (the next decode step writes column `columns`). */
  columns = 0;
  private readonly k: Tensor[];
  private readonly v: Tensor[];
  /** Segment id of every cell (slots, capacity): nonzero where it holds a token of the row's sequence. */
  private readonly cells: Int32Array;
  private plan: Plan | null = null;

  constructor(opts: SlotKvCacheOptions) {
    for (const [name, v] of Object.entries(opts)) {
      if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`slot KV cache: ${name} must be a positive integer, got ${v}`, { where: `kv-cache ${name}` });
    }
    this.slots = opts.slots;
    this.capacity = opts.capacity;
    this.kvHeads = opts.kvHeads;
    this.headDim = opts.headDim;
    const shape = [opts.slots, opts.capacity, opts.kvHeads, opts.headDim];
    this.k = Array.from({ length: opts.layers }, () => Tensor.zeros(shape, 'float32', { persistent: true }));
    this.v = Array.from({ length: opts.layers }, () => Tensor.zeros(shape, 'float32', { persistent: true }));
    this.cells = new Int32Array(opts.slots * opts.capacity);
  }

  static forConfig(config: ModelConfig, slots: number, capacity: number): SlotKvCache {
    const [kvHeads, headDim] = config.family === 'llama' ? [config.numKeyValueHeads, config.headDim] : [config.nHead, config.nEmbd / config.nHead];
    return new SlotKvCache({ layers: config.numHiddenLayers, slots, capacity, kvHeads, headDim });
  }

  get layers(): number {
    return this.k.length;
  }

  /** Bytes the buffers hold. */
  get bytes(): number {
    return 2 * this.layers * this.slots * this.capacity * this.kvHeads * this.headDim * 4;
  }

  /** Tokens row `row` holds. */
  count(row: number): number {
    let n = 0;
    for (let c = 0; c < this.columns; c++) if (this.cells[row * this.capacity + c] !== 0) n++;
    return n;
  }

  /**
   * Plans a prefill of rows [row0, row0 + rows), each with its prompt right-aligned in S columns (the caller
   * left-pads shorter prompts and marks the pads with segment 0 in forward's segments). Whatever the rows
   * held before is forgotten.
   */
  planPrefill(row0: number, rows: number, S: number): void {
    if (!Number.isInteger(row0) || !Number.isInteger(rows) || row0 < 0 || rows < 1 || row0 + rows > this.slots) {
      throw new ShapeError(`slot KV cache: rows ${row0}..${row0 + rows - 1} outside its ${this.slots} slots`, { where: 'slot cache prefill' });
    }
    if (S > this.capacity) throw new ShapeError(`slot KV cache: a ${S}-token prompt exceeds its ${this.capacity} columns`, { where: 'slot cache prefill' });
    const column = Math.max(0, this.columns - S);
    this.columns = Math.max(this.columns, S);
    for (let r = row0; r < row0 + rows; r++) this.cells.fill(0, r * this.capacity, (r + 1) * this.capacity);
    this.plan = { kind: 'prefill', row0, rows, column, S };
  }

  /** Whether a decode step has a free column (else compact() first). */
  get full(): boolean {
    return this.columns >= this.capacity;
  }

  /** Plans a decode step of one token for each of rows [0, rows). */
  planDecode(rows: number): void {
    if (!Number.isInteger(rows) || rows < 1 || rows > this.slots) throw new ShapeError(`slot KV cache: ${rows} rows, it has ${this.slots}`, { where: 'slot cache decode' });
    if (this.full) throw new ShapeError(`slot KV cache: all ${this.capacity} columns in use`, { where: 'slot cache decode', hint: 'compact() before the step' });
    this.plan = { kind: 'decode', rows, column: this.columns };
  }

  begin(B: number, S: number, segments: Int32Array | null): CacheStep {
    if (T.isGradEnabled()) throw new ConfigError('KV cache: decoding with a cache records no gradients; run it inside noGrad()', { where: 'forward cache' });
    const plan = this.plan;
    if (!plan) throw new ShapeError('slot KV cache: forward without planPrefill() or planDecode()', { where: 'forward cache' });
    if (segments && segments.length !== B * S) throw new ShapeError(`slot KV cache: ${segments.length} segment ids for ${B}x${S} tokens`, { where: 'forward segments' });
    if (plan.kind === 'prefill') {
      if (B !== plan.rows || S !== plan.S) throw new ShapeError(`slot KV cache: a ${B}x${S} step, planned ${plan.rows}x${plan.S}`, { where: 'forward cache' });
      // Decode steps query with segment 1: a prompt's tokens must carry 1 and its padding 0.
      if (segments?.some((id) => id !== 0 && id !== 1)) throw new ShapeError('slot KV cache: prefill segment ids must be 1 (token) or 0 (padding)', { where: 'forward segments' });
      for (let b = 0; b < B; b++) {
        const at = (plan.row0 + b) * this.capacity + plan.column;
        for (let t = 0; t < S; t++) this.cells[at + t] = segments ? (segments[b * S + t] as number) : 1;
      }
      // The step's keys are exactly its own columns: a fresh sequence sees nothing older.
      const seg = segments ? Tensor.from(segments, [B, S], 'int32') : null;
      return { past: 0, qSegments: seg, kSegments: seg };
    }
    if (B !== plan.rows || S !== 1) throw new ShapeError(`slot KV cache: a ${B}x${S} decode step, planned ${plan.rows}x1`, { where: 'forward cache' });
    const keys = plan.column + 1;
    const k = new Int32Array(B * keys);
    for (let b = 0; b < B; b++) {
      this.cells[b * this.capacity + plan.column] = 1;
      k.set(this.cells.subarray(b * this.capacity, b * this.capacity + keys), b * keys);
    }
    this.columns = keys;
    return { past: plan.column, qSegments: Tensor.from(new Int32Array(B).fill(1), [B, 1], 'int32'), kSegments: Tensor.from(k, [B, keys], 'int32') };
  }

  append(layer: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const kb = this.k[layer];
    const vb = this.v[layer];
    const plan = this.plan;
    if (!kb || !vb || !plan) throw new ShapeError(`slot KV cache: layer ${layer} of ${this.layers}`, { where: 'forward cache' });
    const [row0, rows, from, S] = plan.kind === 'prefill' ? [plan.row0, plan.rows, plan.column, plan.S] : [0, plan.rows, plan.column, 1];
    const want = [rows, S, this.kvHeads, this.headDim];
    for (const [name, t] of [['k', k], ['v', v]] as const) {
      if (t.shape.length !== 4 || t.shape.some((d, i) => d !== want[i])) {
        throw new ShapeError(`slot KV cache: layer ${layer} ${name} is [${t.shape}], expected [${want}]`, { where: `layer ${layer} ${name}` });
      }
    }
    const kr = T.slice(kb, 0, row0, row0 + rows);
    const vr = T.slice(vb, 0, row0, row0 + rows);
    T.copyInto(k, T.slice(kr, 1, from, from + S), false);
    T.copyInto(v, T.slice(vr, 1, from, from + S), false);
    // Prefill reads only its own columns; decode reads every column so far, masked per row by segment.
    const start = plan.kind === 'prefill' ? from : 0;
    return [T.slice(kr, 1, start, from + S), T.slice(vr, 1, start, from + S)];
  }

  /** Moves row `from`'s sequence into row `to` (keeping the active rows contiguous when one leaves). */
  moveRow(from: number, to: number): void {
    if (from === to) return;
    const cols = this.columns;
    if (cols > 0) {
      T.scope(() => {
        for (const buf of [...this.k, ...this.v]) T.copyInto(T.slice(T.slice(buf, 0, from, from + 1), 1, 0, cols), T.slice(T.slice(buf, 0, to, to + 1), 1, 0, cols), false);
      });
    }
    this.cells.copyWithin(to * this.capacity, from * this.capacity, (from + 1) * this.capacity);
    this.clearRow(from);
  }

  /** Forgets row `row`'s sequence. */
  clearRow(row: number): void {
    this.cells.fill(0, row * this.capacity, (row + 1) * this.capacity);
  }

  /**
   * Packs the tokens of rows [0, rows) to the left, each row right-aligned against the new column count (the
   * longest row's length), so decoding can go on; rows past `rows` are forgotten.
   */
  compact(rows: number): void {
    const counts = Array.from({ length: rows }, (_, r) => this.count(r));
    const columns = Math.max(0, ...counts);
    T.scope(() => {
      for (let r = 0; r < rows; r++) {
        // Runs of the row's cells, in order; gathered into a new tensor first since source and target overlap.
        const runs: [number, number][] = [];
        for (let c = 0; c < this.columns; c++) {
          if (this.cells[r * this.capacity + c] === 0) continue;
          const last = runs[runs.length - 1];
          if (last && last[1] === c) last[1] = c + 1;
          else runs.push([c, c + 1]);
        }
        const n = counts[r] as number;
        if (n === 0) continue;
        const to = columns - n;
        if (runs.length === 1 && (runs[0] as [number, number])[0] === to) continue;
        for (const buf of [...this.k, ...this.v]) {
          const row = T.slice(buf, 0, r, r + 1);
          const gathered = T.concat(runs.map(([a, b]) => T.slice(row, 1, a, b)), 1);
          T.copyInto(gathered, T.slice(row, 1, to, columns), false);
        }
        this.cells.fill(0, r * this.capacity, (r + 1) * this.capacity);
        this.cells.fill(1, r * this.capacity + to, r * this.capacity + columns);
      }
    });
    for (let r = rows; r < this.slots; r++) this.clearRow(r);
    this.columns = columns;
  }

  /** Forgets every sequence (buffers stay allocated). */
  reset(): void {
    this.cells.fill(0);
    this.columns = 0;
    this.plan = null;
  }

  release(): void {
    for (const t of [...this.k, ...this.v]) t.release();
  }
}
