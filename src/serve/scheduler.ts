// Continuous batching: every active sequence owns a row of one SlotKvCache, and each decode step is one
// batched forward over all of them (each row at its own position). Between steps, waiting sequences are
// prefilled (together, left-padded and masked as generate() does) into free rows and join the next step;
// a finished or cancelled sequence leaves at once, the last row moving into its place so the active rows stay
// rows [0, n). A bounded queue refuses work past its size. Tokens are chosen with src/generate's sampling, one
// seeded Rng per sequence, so a request decodes the same tokens alone or among others (up to float rounding).
// Sequences of different LoRA adapters over the base (and of the base) share a forward: each row applies its
// own adapter (nn/row-lora.ts).
import { nextToken, type ResolvedSampling } from '../generate/index.ts';
import { logits, type CausalLM } from '../models/model.ts';
import { withRowAdapters } from '../nn/row-lora.ts';
import { SlotKvCache } from '../models/slot-kv-cache.ts';
import * as T from '../tensor/index.ts';
import { Rng, Tensor, autocast, noGrad, scope } from '../tensor/index.ts';
import { RequestError } from './errors.ts';
import type { ServedModel } from './registry.ts';

export type FinishReason = 'eos' | 'length' | 'stop' | 'cancelled' | 'error';

export interface SequenceSpec {
  /** The entry the request named: the base model or a LoRA adapter over it. */
  model: ServedModel;
  promptIds: readonly number[];
  /** Most tokens to generate (>= 1; prompt + this fits the scheduler's context). */
  maxTokens: number;
  sampling: ResolvedSampling;
  seed: number;
  eosIds: ReadonlySet<number>;
  /** Each chosen token, as chosen; return true to stop here (a stop string matched). */
  onToken(id: number): boolean;
  /** Once, when the sequence ends for any reason. */
  onFinish(reason: FinishReason, error?: Error): void;
}

export class Sequence {
  readonly tokens: number[] = [];
  readonly seen: number[];
  readonly rng: Rng;
  state: 'queued' | 'active' | 'done' = 'queued';
  cancelled = false;
  /** The cache row while active. */
  row = -1;

  constructor(readonly spec: SequenceSpec) {
    this.seen = [...spec.promptIds];
    this.rng = new Rng(spec.seed);
  }
}

export interface SchedulerOptions {
  /** Sequences decoded together (cache rows). */
  slots: number;
  /** Longest sequence, prompt + generated, a request may ask for. */
  context: number;
  /** Sequences that may wait for a row; one more is refused (429). */
  maxQueue: number;
  /** Most tokens (rows x padded length) one prefill forward takes; a longer single prompt still goes alone. */
  prefillTokens?: number;
  dtype?: 'float32' | 'bfloat16';
}

export interface SchedulerStats {
  active: number;
  queued: number;
  steps: number;
  prefills: number;
  /** Sequences per decode step, summed over steps (this / steps = mean batch). */
  decodedRows: number;
  /** Sequences ended by cancel(). */
  cancelled: number;
}

export class BatchScheduler {
  readonly opts: Required<SchedulerOptions>;
  private readonly cache: SlotKvCache;
  private readonly active: Sequence[] = [];
  private readonly queue: Sequence[] = [];
  private running = false;
  private closed = false;
  private readonly counters = { steps: 0, prefills: 0, decodedRows: 0, cancelled: 0 };
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly model: CausalLM,
    opts: SchedulerOptions,
  ) {
    this.opts = { prefillTokens: 4096, dtype: 'float32', ...opts };
    // Twice the context in columns: a compaction then frees at least a context's worth of decode steps.
    this.cache = SlotKvCache.forConfig(model.config, opts.slots, 2 * opts.context);
  }

  get stats(): SchedulerStats {
    return { active: this.active.length, queued: this.queue.length, ...this.counters };
  }

  /** Queues a sequence; 429 when the queue is full, 503 once closed. */
  submit(spec: SequenceSpec): Sequence {
    if (this.closed) throw new RequestError('the server is shutting down', { status: 503, type: 'server_error', code: 'shutting_down' });
    const free = this.opts.slots - this.active.length;
    if (this.queue.length >= this.opts.maxQueue + Math.max(0, free)) {
      throw new RequestError(`too many requests: ${this.active.length} generating and ${this.queue.length} waiting (queue limit ${this.opts.maxQueue})`, {
        status: 429,
        type: 'rate_limit_error',
        code: 'rate_limit_exceeded',
      });
    }
    const seq = new Sequence(spec);
    this.queue.push(seq);
    this.kick();
    return seq;
  }

  /** Stops a sequence (a client went away): it leaves its row before the next step. */
  cancel(seq: Sequence): void {
    if (seq.state === 'done') return;
    seq.cancelled = true;
    const q = this.queue.indexOf(seq);
    if (q >= 0) {
      this.queue.splice(q, 1);
      this.finish(seq, 'cancelled');
    }
    this.kick();
  }

  /** Resolves when nothing is active or queued (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.running && this.active.length === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Cancels everything and frees the cache. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of [...this.queue, ...this.active]) this.cancel(s);
    await this.idle();
    this.cache.release();
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.dropCancelled();
        if (this.active.length === 0 && this.queue.length === 0) break;
        try {
          this.admit();
          this.dropCancelled();
          if (this.active.length > 0) this.decode();
        } catch (err) {
          // A failing step ends the sequences it touched, never the server.
          for (const s of [...this.active]) this.leave(s, 'error', err as Error);
          this.cache.reset();
        }
        // Let the event loop run: responses flush, new requests arrive, disconnects cancel.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private dropCancelled(): void {
    for (let r = this.active.length - 1; r >= 0; r--) {
      const s = this.active[r] as Sequence;
      if (s.cancelled) this.leave(s, 'cancelled');
    }
  }

  /** Prefills waiting sequences into free rows, as many as fit the prefill budget (at least one). */
  private admit(): void {
    const free = this.opts.slots - this.active.length;
    if (free <= 0 || this.queue.length === 0) return;
    const group: Sequence[] = [];
    let longest = 0;
    while (group.length < free && this.queue.length > 0) {
      const next = this.queue[0] as Sequence;
      const len = Math.max(longest, next.spec.promptIds.length);
      if (group.length > 0 && len * (group.length + 1) > this.opts.prefillTokens) break;
      group.push(next);
      this.queue.shift();
      longest = len;
    }
    if (this.active.length === 0) this.cache.reset();
    const row0 = this.active.length;
    const B = group.length;
    const S = longest;
    const ids = new Int32Array(B * S);
    const segments = new Int32Array(B * S);
    const positions = new Int32Array(B * S);
    group.forEach((seq, b) => {
      const p = seq.spec.promptIds;
      const pad = S - p.length;
      for (let t = 0; t < p.length; t++) {
        ids[b * S + pad + t] = p[t] as number;
        segments[b * S + pad + t] = 1;
        positions[b * S + pad + t] = t;
      }
      seq.state = 'active';
      seq.row = row0 + b;
      this.active.push(seq);
    });
    this.cache.planPrefill(row0, B, S);
    const padded = group.some((s) => s.spec.promptIds.length !== S);
    const rows = this.forward(group, ids, S, positions, padded ? segments : null);
    this.counters.prefills++;
    this.choose(group, rows);
  }

  private decode(): void {
    const n = this.active.length;
    if (this.cache.full) this.cache.compact(n);
    this.cache.planDecode(n);
    const ids = new Int32Array(n);
    const positions = new Int32Array(n);
    this.active.forEach((s, r) => {
      ids[r] = s.tokens[s.tokens.length - 1] as number;
      positions[r] = s.seen.length - 1;
    });
    const rows = this.forward(this.active, ids, 1, positions, null);
    this.counters.steps++;
    this.counters.decodedRows += n;
    this.choose([...this.active], rows);
  }

  /** One cached forward of `seqs`' rows; the logits (B * vocab) of each row's last position. */
  private forward(seqs: readonly Sequence[], ids: Int32Array, S: number, positions: Int32Array, segments: Int32Array | null): Float32Array {
    const B = ids.length / S;
    const adapters = seqs.map((s) => s.spec.model.adapter);
    const run = (): Float32Array =>
      noGrad(() =>
        scope(() => {
          const input = Tensor.from(ids, [B, S], 'int32');
          const hidden = withRowAdapters(adapters, () => this.model.forward(input, { positions, segments, cache: this.cache })); // (B, S, D)
          return logits(this.model, T.slice(hidden, 1, S - 1, S)).toArray() as Float32Array; // (B, 1, V)
        }),
      );
    return this.opts.dtype === 'float32' ? run() : autocast(this.opts.dtype, run);
  }

  /** Picks each sequence's next token from its logits row and retires those that are done. */
  private choose(seqs: readonly Sequence[], all: Float32Array): void {
    const V = all.length / seqs.length;
    const done: [Sequence, FinishReason][] = [];
    seqs.forEach((seq, i) => {
      const { spec } = seq;
      const id = nextToken(all.subarray(i * V, (i + 1) * V), seq.seen, spec.sampling, seq.rng, seq.tokens);
      seq.tokens.push(id);
      seq.seen.push(id);
      let stop = false;
      try {
        stop = spec.onToken(id);
      } catch {
        done.push([seq, 'error']);
        return;
      }
      if (spec.eosIds.has(id)) done.push([seq, 'eos']);
      else if (stop) done.push([seq, 'stop']);
      else if (seq.tokens.length >= spec.maxTokens) done.push([seq, 'length']);
    });
    // Highest rows first, so each move fills a hole from a row that is staying.
    done.sort((a, b) => b[0].row - a[0].row);
    for (const [seq, reason] of done) this.leave(seq, reason);
  }

  private leave(seq: Sequence, reason: FinishReason, error?: Error): void {
    const r = seq.row;
    const last = this.active.length - 1;
    if (r < 0 || this.active[r] !== seq) return;
    if (r !== last) {
      const moved = this.active[last] as Sequence;
      this.cache.moveRow(last, r);
      moved.row = r;
      this.active[r] = moved;
    } else this.cache.clearRow(r);
    this.active.pop();
    seq.row = -1;
    this.finish(seq, reason, error);
  }

  private finish(seq: Sequence, reason: FinishReason, error?: Error): void {
    if (seq.state === 'done') return;
    seq.state = 'done';
    if (reason === 'cancelled') this.counters.cancelled++;
    try {
      seq.spec.onFinish(reason, error);
    } catch {
      // A callback that throws (a closed socket) must not stop the batch.
    }
  }
}
