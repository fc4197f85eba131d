// Collectives between processes (MPI through the addon). They read and write native memory: a buffer of any
// other compute backend is refused with a ConfigError (a CUDA backend would bring NCCL or CUDA-aware MPI
// here, taking device handles). Every call but available() throws when the addon was built without MPI.
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
  },
  /** send: one block per rank in rank order; recv gets this rank's block reduced over ranks. */
  reduceScatter(
    backend: ComputeBackend, send: Handle, sendOff: ByteOffset, recv: Handle, recvOff: ByteOffset, counts: number[], dtype: number, op: number,
  ): void {
    nativeMemory(backend, 'reduceScatter');
    addon.mpiReduceScatter(send, sendOff, recv, recvOff, counts, dtype, op);
  },
  /** In place: rank r's block is copied to every rank. */
  allGather(backend: ComputeBackend, h: Handle, off: ByteOffset, counts: number[], dtype: number): void {
    nativeMemory(backend, 'allGather');
    addon.mpiAllGather(h, off, counts, dtype);
  },
  broadcast(backend: ComputeBackend, h: Handle, off: ByteOffset, count: number, dtype: number, root: number): void {
    nativeMemory(backend, 'broadcast');
    addon.mpiBroadcast(h, off, count, dtype, root);
  },
  barrier: (): void => addon.mpiBarrier(),
  /** Ends every rank of the job with this exit code; never returns. */
  abort: (code: number): never => addon.mpiAbort(code),
};
