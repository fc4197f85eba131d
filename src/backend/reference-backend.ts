// The reference kernels (reference/, naive TypeScript over JS ArrayBuffers) as a compute backend
// (SFTKIT_BACKEND=reference). Buffers are JS memory, a new one per alloc and dropped at free (so a freed
// handle is dead at once, as on native, and kernels bounds-check against exact sizes). The memory statistics
// keep the native allocator's books: a freed block is counted as cached under its size and an allocation of a
// size in the cache counts as a reuse, not an OS allocation, so the engine's memory tests (no leak, no new
// blocks in a steady-state step) check the same allocation pattern on both backends. Files are copied in
// (loadFile): its buffers cannot be mapped.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import type { Binding, Handle, MemStats } from './binding.ts';
import { type ComputeBackend, KERNEL_METHODS } from './compute.ts';
import { reference } from './reference/index.ts';

const kernels = reference as Partial<Binding> & typeof reference;

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

function missing(name: string): () => never {
  return () => {
    throw new ConfigError(`the reference backend has no ${name} kernel`, { where: 'SFTKIT_BACKEND', hint: 'use SFTKIT_BACKEND=native' });
  };
}

function build(): ComputeBackend {
  const be: Record<string, unknown> = {
    name: 'reference', alloc, free, size, memStats, resetPeak, emptyCache, loadFile, read: kernels.read, write: kernels.write,
  };
  for (const m of KERNEL_METHODS) be[m] = kernels[m] ?? missing(m);
  return be as unknown as ComputeBackend;
}

export const referenceBackend: ComputeBackend = build();
