// The C++ addon as a compute backend: its allocator (size-bucketed cache of 64-byte-aligned blocks) and its
// SIMD kernels, called directly (the functions are the addon's own; nothing sits between an op and the kernel).
import { native as addon } from './binding.ts';
import { type ComputeBackend, KERNEL_METHODS, MEMORY_METHODS } from './compute.ts';

function build(): ComputeBackend {
  const be: Record<string, unknown> = { name: 'native', loadFile: (path: string) => addon.mmap(path) };
  for (const m of [...MEMORY_METHODS, ...KERNEL_METHODS]) be[m] = addon[m];
  return be as unknown as ComputeBackend;
}

export const nativeBackend: ComputeBackend = build();
