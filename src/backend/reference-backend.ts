// The reference kernels (reference/, naive TypeScript over JS ArrayBuffers) as a compute backend
// (SFTKIT_BACKEND=reference). Buffers are JS memory, a new one per alloc and dropped at free (so a freed
// handle is dead at once, as on native, and kernels bounds-check against exact sizes). The memory statistics
// keep the native allocator's books: a freed block is counted as cached under its size and an allocation of a
// size in the cache counts as a reuse, not an OS allocation, so the engine's memory tests (no leak, no new
// blocks in a steady-state step) check the same allocation pattern on both backends. Files are copied in
// (loadFile): its buffers cannot be mapped.
import { readFileSync } from 'node:fs';
import type { Binding, Handle, MemStats } from './binding.ts';
import { BINARY_OP, type ComputeBackend, KERNEL_METHODS, type KernelMethod } from './compute.ts';
import { reference } from './reference/index.ts';

const kernels = reference;

/** Blocks the native allocator would hold in its cache: count per size in bytes. */
const cached = new Map<number, number>();
/** Live blocks and their sizes. */
const live = new Map<Handle, number>();
const stats = { liveBytes: 0, peakBytes: 0, cachedBytes: 0, osAllocs: 0, liveBlocks: 0 };

function alloc(bytes: number, zero: boolean): Handle {
  const h = kernels.alloc(bytes, zero);
  const n = cached.get(bytes) ?? 0;
  if (n > 0) {
    cached.set(bytes, n - 1);
    stats.cachedBytes -= bytes;
  } else {
    stats.osAllocs += 1;
  }
  live.set(h, bytes);
  stats.liveBytes += bytes;
  stats.liveBlocks += 1;
  stats.peakBytes = Math.max(stats.peakBytes, stats.liveBytes);
  return h;
}

function free(h: Handle): void {
  kernels.free(h); // throws on an unknown or freed handle
  const bytes = live.get(h);
  if (bytes === undefined) return; // a file's contents (loadFile)
  live.delete(h);
  stats.liveBytes -= bytes;
  stats.liveBlocks -= 1;
  stats.cachedBytes += bytes;
  cached.set(bytes, (cached.get(bytes) ?? 0) + 1);
}

function size(h: Handle): number {
  return kernels.size(h);
}

function memStats(): MemStats {
  return { ...stats, mappedBytes: kernels.memStats().mappedBytes };
}

function resetPeak(): void {
  stats.peakBytes = stats.liveBytes;
}

function emptyCache(): void {
  cached.clear();
  stats.cachedBytes = 0;
}

function loadFile(path: string): [Handle, number] {
  const bytes = readFileSync(path);
  return [kernels.fromBytes(bytes), bytes.byteLength];
}

/**
 * crossEntropyBackward with dw accumulated as the native kernel does: the chunk's whole contribution
 * dlogitsᵀ·h is formed first and then added to dw once (a GEMM with beta = 1), so a second backward into the
 * same .grad doubles it exactly. The reference kernel adds row by row; it runs here into a zeroed scratch.
 */
function crossEntropyBackward(...args: Parameters<Binding['crossEntropyBackward']>): void {
  const [, , , , , , , , , , dw, dwOff, , d, V] = args;
  const bytes = V * d * 4;
  if (dw === 0 || bytes === 0) {
    reference.crossEntropyBackward(...args);
    return;
  }
  const scratch = reference.alloc(bytes, true);
  try {
    args[10] = scratch;
    args[11] = 0;
    reference.crossEntropyBackward(...args);
    reference.binary(BINARY_OP.add, dw, dwOff, [1], scratch, 0, [1], dw, dwOff, [V * d]);
  } finally {
    reference.free(scratch);
  }
}

function build(): ComputeBackend {
  // Every kernel of the interface, checked at compile time.
  const kernelSet: Pick<Binding, KernelMethod> = reference;
  const be: Record<string, unknown> = {
    name: 'reference', alloc, free, size, memStats, resetPeak, emptyCache, loadFile, read: reference.read, write: reference.write,
  };
  for (const m of KERNEL_METHODS) be[m] = kernelSet[m];
  be.crossEntropyBackward = crossEntropyBackward;
  return be as unknown as ComputeBackend;
}

export const referenceBackend: ComputeBackend = build();
