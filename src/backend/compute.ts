// The compute backend: the memory a tensor's storage lives in and every kernel that reads and writes it.
// `native.ts` is the C++ addon as one (CPU SIMD kernels); `reference-backend.ts` is the naive TypeScript kernels of
// `reference/` as another; a CUDA backend would be a third (docs/ARCHITECTURE.md, "Backends"). A Storage
// knows its backend and the ops call the kernels of their inputs' storage, never a global.
//
// Memory semantics, shared by every backend: a buffer is a Handle (a positive id in the backend's own table;
// 0 means "absent" where a buffer is optional) of `bytes` bytes, 64-byte aligned; kernels take (handle,
// byteOffset) pairs and element counts, and must bounds-check them against the table. `alloc` may hand out a
// cached block (zeroed when asked); `free` returns it to the cache. Calls are ordered: each sees the
// results of every call made before it (CPU backends finish a call before returning; a device backend may
// queue them on one stream, and then waits in `read`, `sumsq` and the cross-entropy kernels, which return
// values to the host). Each kernel's signature and meaning is documented once, on `Binding` in binding.ts;
// a backend implements the same argument order.
import type { Binding, ByteOffset, Handle, MemStats } from './binding.ts';

export type { ByteOffset, Handle, MemStats } from './binding.ts';
export { BINARY_OP, DTYPE_CODE, REDUCE_OP, UNARY_OP } from './binding.ts';

/** Memory of the backend: allocation, host <-> backend copies, and the caching allocator's statistics. */
export const MEMORY_METHODS = ['alloc', 'free', 'write', 'read', 'size', 'memStats', 'resetPeak', 'emptyCache'] as const;

/** Every kernel a compute backend implements, with Binding's signatures. */
export const KERNEL_METHODS = [
  'gemm',
  'unary', 'unaryBackward', 'binary', 'reduce', 'softmax', 'softmaxBackward', 'where',
  'stridedCopy', 'fill', 'dropoutMask', 'cast', 'embedding', 'embeddingBackward', 'argmax', 'topk', 'adamw', 'sumsq',
  'rmsnormForward', 'rmsnormBackward', 'layernormForward', 'layernormBackward', 'rope',
  'swigluForward', 'swigluBackward', 'attentionForward', 'attentionBackward',
  'crossEntropyForward', 'crossEntropyBackward', 'crossEntropySweep',
  'nf4Quantize', 'nf4Dequantize', 'dqQuantize', 'dqDequantize', 'int8Quantize', 'int8Dequantize',
] as const;

export type MemoryMethod = (typeof MEMORY_METHODS)[number];
export type KernelMethod = (typeof KERNEL_METHODS)[number];

export interface ComputeBackend extends Pick<Binding, MemoryMethod | KernelMethod> {
  /** 'native', 'reference' (SFTKIT_BACKEND), later 'cuda'. */
  readonly name: string;
  /**
   * A whole file as a read-only buffer of this backend: [handle, size in bytes]. The native backend maps it
   * (no copy, pages read on demand); a backend whose memory the host cannot map copies the bytes in.
   */
  loadFile(path: string): [Handle, number];
}
