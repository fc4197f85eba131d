// Tensor dtypes: fp32 is the compute type; bf16/f16 are storage types (cast to compute); int32 holds ids.
// Names, sizes and kernel codes come from src/dtype.ts, sftkit's one dtype vocabulary.
import { DTYPE_TABLE, KERNEL_DTYPE_CODES, type TensorDtype } from '../dtype.ts';

export type DType = TensorDtype;

export const DTYPES = Object.keys(KERNEL_DTYPE_CODES) as readonly DType[];

export function dtypeBytes(dtype: DType): number {
  return DTYPE_TABLE[dtype].bytes;
}

export function dtypeCode(dtype: DType): number {
  return KERNEL_DTYPE_CODES[dtype];
}

export function isDType(x: string): x is DType {
  return (DTYPES as readonly string[]).includes(x);
}
