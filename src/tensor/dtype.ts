// Tensor dtypes: fp32 is the compute type; bf16/f16 are storage types (cast to compute); int32 holds ids.
import { DTYPE_CODE } from '../backend/compute.ts';

export type DType = 'float32' | 'bfloat16' | 'float16' | 'int32';

export const DTYPES: readonly DType[] = ['float32', 'bfloat16', 'float16', 'int32'];

export function dtypeBytes(dtype: DType): number {
  return dtype === 'bfloat16' || dtype === 'float16' ? 2 : 4;
}

export function dtypeCode(dtype: DType): number {
  return DTYPE_CODE[dtype];
}

export function isDType(x: string): x is DType {
  return (DTYPES as readonly string[]).includes(x);
}
