// Perplexity over token records: loss = Σ token losses / Σ trained tokens over every batch, through the
// fused vocab-chunked cross-entropy (logits of a whole batch never exist at once).
import { shiftRows } from '../data/shift.ts';
import { DataError } from '../errors.ts';
import { type CausalLM, lossSum } from '../models/model.ts';
import { positionIds } from '../models/rope.ts';
import { Tensor, noGrad, scope } from '../tensor/index.ts';

/** A batch as the data loader yields it: rows of seq_length + 1 tokens (the trainer's shift applies). */
export interface TokenBatch {
  inputIds: Int32Array;
  labels: Int32Array;
  segmentIds?: Int32Array | null;
}

export interface PerplexityResult {
  /** Mean loss per trained token (nats). */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  /** Trained tokens (labels != -100) counted. */
  tokens: number;
}

/** Sums token losses batch by batch; `result()` gives the token-weighted mean over all of them. */
export class PerplexityAccumulator {
  private sum = 0;
  private count = 0;
  private batches = 0;
  private readonly model: CausalLM;
  private readonly seqLength: number;

  constructor(model: CausalLM, opts: { seqLength: number }) {
    if (!Number.isInteger(opts.seqLength) || opts.seqLength < 1) throw new DataError(`perplexity: seq_length must be a positive integer, got ${opts.seqLength}`, { where: 'seq_length' });
    this.model = model;
    this.seqLength = opts.seqLength;
  }

  add(batch: TokenBatch): void {
    const W = this.seqLength + 1;
    const where = `eval batch ${this.batches}`;
    const n = batch.inputIds.length;
    if (n === 0 || n % W !== 0) throw new DataError(`${where}: ${n} input ids are not rows of seq_length + 1 = ${W}`, { where: `${where} input_ids` });
    if (batch.labels.length !== n) throw new DataError(`${where}: ${batch.labels.length} labels for ${n} input ids`, { where: `${where} labels` });
    if (batch.segmentIds && batch.segmentIds.length !== n) throw new DataError(`${where}: ${batch.segmentIds.length} segment ids for ${n} input ids`, { where: `${where} segment_ids` });
    const S = this.seqLength;
    // Inputs are row[:-1] and targets labels[1:] (the token-records contract).
    const { rows: B, ids, targets, segments } = shiftRows(batch, W);
    const { sum, count } = noGrad(() =>
      scope(() => {
        const hidden = this.model.forward(Tensor.from(ids, [B, S], 'int32'), { positions: positionIds(B, S, { segments }), segments }); // (B, S, D)
        const r = lossSum(this.model, hidden, Tensor.from(targets, [B, S], 'int32'));
        return { sum: r.lossSum.item(), count: r.count };
      }),
    );
    this.sum += sum;
    this.count += count;
    this.batches++;
  }

  result(): PerplexityResult {
    if (this.count === 0) throw new DataError(`perplexity: the ${this.batches} eval batches have no trained tokens (every label is -100)`, { where: 'eval dataset labels' });
    const loss = this.sum / this.count;
    return { loss, perplexity: Math.exp(loss), tokens: this.count };
  }
}

/** Loss, perplexity and trained-token count of `model` over every batch. */
export function perplexity(model: CausalLM, batches: Iterable<TokenBatch>, opts: { seqLength: number }): PerplexityResult {
  const acc = new PerplexityAccumulator(model, opts);
  for (const b of batches) acc.add(b);
  return acc.result();
}
