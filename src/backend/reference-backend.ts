// The reference kernels (reference/, naive TypeScript over JS ArrayBuffers) as a compute backend
// (SFTKIT_BACKEND=reference). Its memory is reference/memory.ts: a handle table with the addon's size-bucketed
// cache and statistics (a freed handle is dead at once; its buffer waits in the cache), so the engine's memory
// tests (no leak, no new blocks in a steady-state step) hold on both backends. Files are copied in (loadFile):
// JS memory cannot be mapped.
import { readFileSync } from 'node:fs';
import type { Binding, Handle } from './binding.ts';
import { type ComputeBackend, KERNEL_METHODS, type KernelMethod, MEMORY_METHODS, type MemoryMethod } from './compute.ts';
import { reference } from './reference/index.ts';

function loadFile(path: string): [Handle, number] {
  const bytes = readFileSync(path);
  return [reference.fromBytes(bytes), bytes.byteLength];
}

function build(): ComputeBackend {
  // Every memory call and kernel of the interface, checked at compile time.
  const covered: Pick<Binding, MemoryMethod | KernelMethod> = reference;
  const be: Record<string, unknown> = { name: 'reference', loadFile };
  for (const m of [...MEMORY_METHODS, ...KERNEL_METHODS]) be[m] = covered[m];
  return be as unknown as ComputeBackend;
}

export const referenceBackend: ComputeBackend = build();
