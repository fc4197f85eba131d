// The common shape of one weight file (safetensors or PyTorch .bin): tensor metadata up front, bytes on demand.
import type { WeightDtype } from './dtypes.ts';

export interface TensorInfo {
  name: string;
  dtype: WeightDtype;
  shape: number[];
}

export interface TensorFile {
  readonly path: string;
  readonly tensors: readonly TensorInfo[];
  /** A tensor's contiguous little-endian bytes, read now (one tensor in memory at a time). */
  read(name: string): Uint8Array;
  close(): void;
}
