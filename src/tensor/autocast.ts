// Mixed-precision compute scope, in the spirit of torch.autocast: inside autocast('bfloat16', fn) every GEMM
// that matmul and the fused cross-entropy start runs in bf16 compute (operands rounded to bf16, fp32
// accumulation, fp32 outputs); every other op, the weights and the gradients stay fp32.
// An op reads the scope when it runs forward and keeps that choice for its backward (which runs later,
// outside the scope), as autocast does; recompute re-enters the scope its block was first run under.

import { BF16_PATH, ISA, host } from '../backend/host.ts';
import { activeBackend } from '../backend/select.ts';
import type { ComputeDtype } from '../dtype.ts';

/** The precision of GEMM operands: fp32, or bf16 with fp32 accumulation (src/dtype.ts's compute dtypes). */
export type { ComputeDtype } from '../dtype.ts';

let current: ComputeDtype = 'float32';

/** Runs fn with GEMMs in `dtype` compute, restoring the previous setting afterwards (also on throw). */
export function autocast<T>(dtype: ComputeDtype, fn: () => T): T {
  const before = current;
  current = dtype;
  try {
    return fn();
  } finally {
    current = before;
  }
}

/** The compute dtype of the innermost autocast scope (float32 outside any). */
export function computeDtype(): ComputeDtype {
  return current;
}

/** Whether GEMMs started now run in bf16 compute. */
export function bf16Compute(): boolean {
  return current === 'bfloat16';
}

/** Which kernel bf16 GEMMs run on now, in words (for the trainer's start-up line and benchmarks). */
export function bf16GemmPath(): string {
  const backend = activeBackend();
  if (backend.name !== 'native') return `${backend.name} backend: operands rounded to bf16 (nearest even), fp32 accumulation`;
  const isa = host.getIsa();
  const path = host.getBf16Path();
  if (isa >= ISA.avx512 && path === BF16_PATH.amx) return 'AMX tiles (tdpbf16ps)';
  if (isa >= ISA.avx512 && path === BF16_PATH.amxEmulated) return 'AMX tile layout, tile product emulated (test mode)';
  if (isa >= ISA.avx512 && path === BF16_PATH.native) return 'vdpbf16ps (AVX512_BF16)';
  if (isa >= ISA.avx512 && path === BF16_PATH.emulated) return 'vdpbf16ps layout, instruction emulated (test mode)';
  // Which rule picked the fallback is native/runtime.cc's business; this line only names the choice.
  const why = host.hasAvx512Bf16() ? 'vdpbf16ps not chosen: SFTKIT_BF16_GEMM chooses' : 'this CPU has no AVX512_BF16';
  const kernel = isa >= ISA.avx512 ? 'AVX-512' : isa >= ISA.avx2 ? 'AVX2' : 'scalar';
  return `fp32 fallback (${why}): operands rounded to bf16 into the ${kernel} fp32 micro-kernel`;
}
