// The reference kernels (reference/, naive TypeScript over JS ArrayBuffers) as a compute backend
// (SFTKIT_BACKEND=reference). Its memory keeps freed blocks in a cache keyed by exact size, as the native
// allocator keeps size buckets (and a CUDA backend's would), so a steady-state training step takes no new
// buffers here either and the engine's memory tests hold on both backends; exact sizes keep every kernel's
// bounds check exact. Files are copied in (loadFile): its buffers cannot be mapped.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import type { Binding, Handle, MemStats } from './binding.ts';
import { type ComputeBackend, KERNEL_METHODS } from './compute.ts';
import { reference } from './reference/index.ts';

const kernels = reference as Partial<Binding> & typeof reference;

/** Freed blocks by their size in bytes. */
const cache = new Map<number, Handle[]>();
/** Live blocks and their sizes. */
const live = new Map<Handle, number>();
const stats = { liveBytes: 0, peakBytes: 0, cachedBytes: 0, osAllocs: 0, liveBlocks: 0 };

function alloc(bytes: number, zero: boolean): Handle {
  if (!(Number.isInteger(bytes) && bytes >= 0)) throw new RangeError(`alloc: byte count ${bytes} is not a non-negative integer`);
  const reuse = cache.get(bytes)?.pop();
  let h: Handle;
  if (reuse !== undefined) {
    h = reuse;
    stats.cachedBytes -= bytes;
    if (zero && bytes > 0) kernels.write(h, 0, new Uint8Array(bytes));
  } else {
    h = kernels.alloc(bytes, true);
    stats.osAllocs += 1;
  }
  live.set(h, bytes);
  stats.liveBytes += bytes;
  stats.liveBlocks += 1;
  stats.peakBytes = Math.max(stats.peakBytes, stats.liveBytes);
  return h;
}

function free(h: Handle): void {
  const bytes = live.get(h);
  if (bytes === undefined) {
    // A file's contents (loadFile) are not cached: they go back to the table at once (an unknown handle throws there).
    kernels.free(h);
    return;
  }
  live.delete(h);
  stats.liveBytes -= bytes;
  stats.liveBlocks -= 1;
  stats.cachedBytes += bytes;
  const list = cache.get(bytes);
  if (list) list.push(h);
  else cache.set(bytes, [h]);
}

function size(h: Handle): number {
  return live.get(h) ?? kernels.size(h);
}

function memStats(): MemStats {
  return { ...stats, mappedBytes: kernels.memStats().mappedBytes };
}

function resetPeak(): void {
  stats.peakBytes = stats.liveBytes;
}

function emptyCache(): void {
  for (const list of cache.values()) for (const h of list) kernels.free(h);
  cache.clear();
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
