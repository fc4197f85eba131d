// Collectives between processes (MPI through the addon). They read and write native memory: a buffer of any
// other compute backend is refused with a ConfigError (a CUDA backend would bring NCCL or CUDA-aware MPI
// here, taking device handles). Every call but available() throws when the addon was built without MPI.
import { type CollectiveDtype, MPI_DTYPE_CODES, dtypeBytes } from '../dtype.ts';
import { ConfigError } from '../errors.ts';
import { native as addon } from './binding.ts';
import type { ComputeBackend, ByteOffset, Handle } from './compute.ts';
import { nativeBackend } from './native.ts';

export { MPI_DTYPE, MPI_OP } from './binding.ts';

function nativeMemory(backend: ComputeBackend, op: string): void {
  if (backend !== nativeBackend) {
    throw new ConfigError(`${op}: MPI needs the native backend (this buffer is on the ${backend.name} backend)`, {
      where: 'SFTKIT_BACKEND',
      hint: 'run multi-process jobs with SFTKIT_BACKEND=native (the default)',
    });
  }
}

/** Bytes per element of an MPI_DTYPE code. */
const BYTES_OF_CODE = new Map<number, number>(
  (Object.entries(MPI_DTYPE_CODES) as [CollectiveDtype, number][]).map(([d, code]) => [code, dtypeBytes(d)]),
);

export type CollectiveOp = 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast';

/**
 * Bytes each collective was handed by this process since start (or resetTraffic): the whole buffer of an
 * all-reduce or broadcast, the send buffer of a reduce-scatter, the gathered buffer of an all-gather (the
 * payload; a ring moves (N-1)/N of it per link). Counted for calls that reach MPI.
 */
const traffic: Record<CollectiveOp, { calls: number; bytes: number }> = {
  allReduce: { calls: 0, bytes: 0 },
  reduceScatter: { calls: 0, bytes: 0 },
  allGather: { calls: 0, bytes: 0 },
  broadcast: { calls: 0, bytes: 0 },
};

function countTraffic(op: CollectiveOp, elements: number, dtype: number): void {
  traffic[op].calls += 1;
  traffic[op].bytes += elements * (BYTES_OF_CODE.get(dtype) ?? 0);
}

export const mpi = {
  /** Whether the addon was built with MPI. */
  available: (): boolean => addon.mpiAvailable(),
  /** Initializes MPI once (idempotent): [rank, size, localRank, localSize]. */
  init: (): [number, number, number, number] => addon.mpiInit(),
  finalize: (): void => addon.mpiFinalize(),
  /** In place over count elements of dtype (MPI_DTYPE) with op (MPI_OP). */
  allReduce(backend: ComputeBackend, h: Handle, off: ByteOffset, count: number, dtype: number, op: number): void {
    nativeMemory(backend, 'allReduce');
    addon.mpiAllReduce(h, off, count, dtype, op);
    countTraffic('allReduce', count, dtype);
  },
  /** send: one block per rank in rank order; recv gets this rank's block reduced over ranks. */
  reduceScatter(
    backend: ComputeBackend, send: Handle, sendOff: ByteOffset, recv: Handle, recvOff: ByteOffset, counts: number[], dtype: number, op: number,
  ): void {
    nativeMemory(backend, 'reduceScatter');
    addon.mpiReduceScatter(send, sendOff, recv, recvOff, counts, dtype, op);
    countTraffic('reduceScatter', counts.reduce((a, b) => a + b, 0), dtype);
  },
  /** In place: rank r's block is copied to every rank. */
  allGather(backend: ComputeBackend, h: Handle, off: ByteOffset, counts: number[], dtype: number): void {
    nativeMemory(backend, 'allGather');
    addon.mpiAllGather(h, off, counts, dtype);
    countTraffic('allGather', counts.reduce((a, b) => a + b, 0), dtype);
  },
  broadcast(backend: ComputeBackend, h: Handle, off: ByteOffset, count: number, dtype: number, root: number): void {
    nativeMemory(backend, 'broadcast');
    addon.mpiBroadcast(h, off, count, dtype, root);
    countTraffic('broadcast', count, dtype);
  },
  barrier: (): void => addon.mpiBarrier(),
  /** What the collectives were handed so far, per operation (a copy). */
  traffic: (): Record<CollectiveOp, { calls: number; bytes: number }> => structuredClone(traffic),
  resetTraffic(): void {
    for (const t of Object.values(traffic)) {
      t.calls = 0;
      t.bytes = 0;
    }
  },
  /** Ends every rank of the job with this exit code; never returns. */
  abort: (code: number): never => addon.mpiAbort(code),
};
