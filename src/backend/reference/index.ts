// The reference compute backend: naive pure-TypeScript kernels with the addon's exact signatures and semantics
// (native/kernels/*.cc, the scalar paths), over a handle table of JS ArrayBuffers. It is the second backend
// behind the compute seam, and the yardstick the native kernels can be checked against without a C++ toolchain.
import type { Binding } from '../binding.ts';
import { attentionBackward, attentionForward } from './attention.ts';
import { binary, unary, unaryBackward, where } from './elementwise.ts';
import { gemm } from './gemm.ts';
import { crossEntropyBackward, crossEntropyForward, crossEntropySweep } from './cross-entropy.ts';
import { cast, dropoutMask, embedding, embeddingBackward, fill, stridedCopy } from './data.ts';
import { alloc, emptyCache, free, fromBytes, memStats, read, resetPeak, size, write } from './memory.ts';
import { layernormBackward, layernormForward, rmsnormBackward, rmsnormForward, rope, swigluBackward, swigluForward } from './nn.ts';
import { adamw } from './optimizer.ts';
import { dqDequantize, dqQuantize, int8Dequantize, int8Quantize, nf4Dequantize, nf4Quantize } from './quant.ts';
import { argmax, reduce, softmax, softmaxBackward, sumsq, topk } from './reduce.ts';

/** The Binding members the reference backend implements, with Binding's signatures. */
export const REFERENCE_COVERS = [
  // memory
  'alloc', 'free', 'write', 'read', 'size', 'memStats', 'resetPeak', 'emptyCache',
  // GEMM
  'gemm',
  // elementwise, reductions, data movement
  'unary', 'unaryBackward', 'binary', 'reduce', 'softmax', 'softmaxBackward', 'where', 'stridedCopy', 'fill', 'dropoutMask', 'cast',
  'embedding', 'embeddingBackward', 'argmax', 'topk', 'sumsq',
  // fused NN kernels
  'rmsnormForward', 'rmsnormBackward', 'layernormForward', 'layernormBackward', 'rope', 'swigluForward', 'swigluBackward',
  'attentionForward', 'attentionBackward', 'crossEntropyForward', 'crossEntropyBackward', 'crossEntropySweep',
  // optimizer
  'adamw',
  // low-precision frozen weights
  'nf4Quantize', 'nf4Dequantize', 'dqQuantize', 'dqDequantize', 'int8Quantize', 'int8Dequantize',
] as const satisfies readonly (keyof Binding)[];

export type ReferenceCovered = (typeof REFERENCE_COVERS)[number];

/**
 * The Binding members it leaves to others: host services (file mapping, threads, ISA and bf16-path selection,
 * which the reference has no use for; `fromBytes` takes a file's contents instead of `mmap`) and MPI collectives.
 */
export const REFERENCE_LEAVES = [
  'mmap', 'getThreads', 'setThreads', 'detectedIsa', 'getIsa', 'setIsa', 'hasAvx512Bf16', 'hasAmxBf16', 'getBf16Path', 'setBf16Path',
  'mpiAvailable', 'mpiInit', 'mpiFinalize', 'mpiAllReduce', 'mpiReduceScatter', 'mpiAllGather', 'mpiBroadcast', 'mpiBarrier', 'mpiAbort',
] as const satisfies readonly (keyof Binding)[];

// Every Binding member is either covered or left on purpose: a new addon export fails to compile here until decided.
type Undecided = Exclude<keyof Binding, ReferenceCovered | (typeof REFERENCE_LEAVES)[number]>;
const everyMemberDecided: [Undecided] extends [never] ? true : Undecided = true;
void everyMemberDecided;

/** The reference backend: Binding's kernels and memory calls, plus `fromBytes` for read-only file contents. */
export const reference: Pick<Binding, ReferenceCovered> & { fromBytes: typeof fromBytes } = {
  alloc, free, write, read, size, memStats, resetPeak, emptyCache, fromBytes,
  gemm,
  unary, unaryBackward, binary, reduce, softmax, softmaxBackward, where, stridedCopy, fill, dropoutMask, cast,
  embedding, embeddingBackward, argmax, topk, sumsq,
  rmsnormForward, rmsnormBackward, layernormForward, layernormBackward, rope, swigluForward, swigluBackward,
  attentionForward, attentionBackward, crossEntropyForward, crossEntropyBackward, crossEntropySweep,
  adamw,
  nf4Quantize, nf4Dequantize, dqQuantize, dqDequantize, int8Quantize, int8Dequantize,
};
