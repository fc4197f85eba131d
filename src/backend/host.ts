// Host services of the addon, whatever compute backend runs: file mapping, the native thread pool, the CPU's
// instruction set and the bf16 GEMM path it picked.
import { native as addon } from './binding.ts';

export { BF16_PATH, ISA } from './binding.ts';

export interface Host {
  /** Read-only mapping of a whole file into native memory: [handle of the native backend, size in bytes]. */
  mmap(path: string): [number, number];
  getThreads(): number;
  setThreads(n: number): void;
  detectedIsa(): number;
  getIsa(): number;
  /** Clamps to the detected level; returns the level now active. */
  setIsa(isa: number): number;
  hasAvx512Bf16(): boolean;
  hasAmxBf16(): boolean;
  /** The bf16 GEMM path (BF16_PATH) of the native kernels. */
  getBf16Path(): number;
  /** Clamps to what the CPU runs; returns the path now active. */
  setBf16Path(path: number): number;
}

export const host: Host = {
  mmap: addon.mmap,
  getThreads: addon.getThreads,
  setThreads: addon.setThreads,
  detectedIsa: addon.detectedIsa,
  getIsa: addon.getIsa,
  setIsa: addon.setIsa,
  hasAvx512Bf16: addon.hasAvx512Bf16,
  hasAmxBf16: addon.hasAmxBf16,
  getBf16Path: addon.getBf16Path,
  setBf16Path: addon.setBf16Path,
};
