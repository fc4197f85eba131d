// The process group of a run with one process: every collective is the identity (a reduce-scatter copies
// the single block), so the trainer's code path is the same with and without MPI.
import { ShapeError } from '../errors.ts';
import { type Collectible, type ProcessGroup, type ReduceOp, checkCounts, dtypeBytesOf, toSpan } from './process-group.ts';

export class SingleProcessGroup implements ProcessGroup {
  readonly backend = 'single';
  readonly rank = 0;
  readonly size = 1;
  readonly localRank = 0;
  readonly localSize = 1;

  allReduce(x: Collectible, _op: ReduceOp = 'sum'): void {
    toSpan(x, 'allReduce');
  }

  reduceScatter(send: Collectible, recv: Collectible, opts: { op?: ReduceOp; counts?: number[] } = {}): void {
    const s = toSpan(send, 'reduceScatter');
    const r = toSpan(recv, 'reduceScatter');
    const count = opts.counts ? (checkCounts(opts.counts, 1, 'reduceScatter')[0] as number) : r.count;
    if (s.count < count || r.count < count || s.dtype !== r.dtype) {
      throw new ShapeError(`reduceScatter: send (${s.count} ${s.dtype}) and recv (${r.count} ${r.dtype}) do not hold a block of ${count}`);
    }
    if (count === 0) return;
    // Copied as 4-byte words, so float64 moves too.
    const words = (count * dtypeBytesOf(s.dtype)) / 4;
    s.backend.stridedCopy(s.handle, s.byteOffset, [1], r.handle, r.byteOffset, [1], [words], 4, false);
  }

  allGather(x: Collectible, counts?: number[]): void {
    toSpan(x, 'allGather');
    if (counts) checkCounts(counts, 1, 'allGather');
  }

  broadcast(x: Collectible, root = 0): void {
    toSpan(x, 'broadcast');
    if (root !== 0) throw new ShapeError(`broadcast: root ${root} is not a rank of a world of 1`);
  }

  allReduceNumbers(values: readonly number[]): number[] {
    return [...values];
  }

  barrier(): void {}

  abort(code: number): never {
    process.exit(code);
  }
}
