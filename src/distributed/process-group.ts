// The process-group interface every distributed backend implements (MPI now, NCCL later), and the spans
// of native memory its collectives work on: whole contiguous tensors or element ranges of a flat buffer.
import type { ComputeBackend } from '../backend/compute.ts';
import { type CollectiveDtype, dtypeBytes } from '../dtype.ts';
import { ShapeError } from '../errors.ts';
import type { Tensor } from '../tensor/index.ts';

/** The dtypes the collectives move (src/dtype.ts's CollectiveDtype). */
export type CollectiveDType = CollectiveDtype;
/** 'avg' is a sum followed by × 1/size (float32 and float64 only). */
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

/** `count` elements of `dtype` starting `byteOffset` bytes into buffer `handle` of `backend`. */
export interface Span {
  backend: ComputeBackend;
  handle: number;
  byteOffset: number;
  count: number;
  dtype: CollectiveDType;
}

export type Collectible = Tensor | Span;

export interface ProcessGroup {
  readonly backend: 'single' | 'mpi';
  readonly rank: number;
  readonly size: number;
  /** Rank among the processes on this node, and their number (thread-pool sizing, per-node work). */
  readonly localRank: number;
  readonly localSize: number;
  /** In place: x = op over ranks of x. */
  allReduce(x: Collectible, op?: ReduceOp): void;
  /**
   * send holds one block per rank in rank order (counts[r] elements each; equal blocks of recv.count when counts
   * is omitted); recv receives this rank's block reduced over ranks. send and recv must not overlap.
   */
  reduceScatter(send: Collectible, recv: Collectible, opts?: { op?: ReduceOp; counts?: number[] }): void;
  /** In place: rank r's block of x (counts[r] elements at sum(counts[:r]); equal blocks when omitted) reaches every rank. */
  allGather(x: Collectible, counts?: number[]): void;
  /** In place: x on every rank becomes root's x. */
  broadcast(x: Collectible, root?: number): void;
  /** Sums (or maxes, mins) a few numbers across ranks in double precision: losses, token counts, norms. */
  allReduceNumbers(values: readonly number[], op?: 'sum' | 'max' | 'min'): number[];
  barrier(): void;
  /** Ends every rank of the job with this exit code. */
  abort(code: number): never;
}

export function dtypeBytesOf(dtype: CollectiveDType): number {
  return dtypeBytes(dtype);
}

/** A tensor as a span; it must be contiguous float32 or int32. */
export function toSpan(x: Collectible, op: string): Span {
  if (!('storage' in x)) return x;
  if (!x.isContiguous) throw new ShapeError(`${op}: tensor ${x.name || '(unnamed)'} must be contiguous`, { where: op });
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new ShapeError(`${op}: dtype ${x.dtype} is not supported by collectives (float32, int32)`, { where: op });
  }
  return { backend: x.storage.backend, handle: x.handle, byteOffset: x.byteOffset, count: x.size, dtype: x.dtype };
}

/** Equal block sizes: `total` split into `size` blocks, which must divide evenly. */
export function equalCounts(total: number, size: number, op: string): number[] {
  if (total % size !== 0) throw new ShapeError(`${op}: ${total} elements do not split into ${size} equal blocks`, { where: op });
  return new Array<number>(size).fill(total / size);
}

/** Block sizes given by the caller: one per rank, non-negative integers. */
export function checkCounts(counts: readonly number[], size: number, op: string): number[] {
  if (counts.length !== size) throw new ShapeError(`${op}: ${counts.length} block counts for ${size} ranks`, { where: op });
  for (const c of counts) {
    if (!Number.isInteger(c) || c < 0) throw new ShapeError(`${op}: block count ${c} is not a non-negative integer`, { where: op });
  }
  return [...counts];
}
