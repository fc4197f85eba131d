// sftkit's one dtype vocabulary: PyTorch's names for every element type a tensor, a weight file, a kernel or a
// collective knows, and the one table that gives each its byte size and its code in every format that numbers it.
// A shared leaf (like errors.ts): every layer imports it, it imports nothing.

interface DtypeRow {
  /** Bytes per element. */
  readonly bytes: number;
  readonly float: boolean;
  /** safetensors' name (GGUF's ggml names agree for F32, F16 and BF16). */
  readonly safetensors: string;
  /** PyTorch's storage class in `.bin` pickles (torch.save). */
  readonly torchStorage: string;
  /** Element-type code of the native kernels (native/ glue), null where no kernel takes it. */
  readonly kernel: number | null;
  /** Datatype code of the MPI collectives (native/mpi), null where none is wired. */
  readonly mpi: number | null;
}

export const DTYPE_TABLE = {
  float64: { bytes: 8, float: true, safetensors: 'F64', torchStorage: 'DoubleStorage', kernel: null, mpi: 4 },
  float32: { bytes: 4, float: true, safetensors: 'F32', torchStorage: 'FloatStorage', kernel: 0, mpi: 0 },
  bfloat16: { bytes: 2, float: true, safetensors: 'BF16', torchStorage: 'BFloat16Storage', kernel: 1, mpi: null },
  float16: { bytes: 2, float: true, safetensors: 'F16', torchStorage: 'HalfStorage', kernel: 2, mpi: null },
  int64: { bytes: 8, float: false, safetensors: 'I64', torchStorage: 'LongStorage', kernel: null, mpi: null },
  int32: { bytes: 4, float: false, safetensors: 'I32', torchStorage: 'IntStorage', kernel: 3, mpi: 3 },
  int16: { bytes: 2, float: false, safetensors: 'I16', torchStorage: 'ShortStorage', kernel: null, mpi: null },
  int8: { bytes: 1, float: false, safetensors: 'I8', torchStorage: 'CharStorage', kernel: null, mpi: null },
  uint8: { bytes: 1, float: false, safetensors: 'U8', torchStorage: 'ByteStorage', kernel: null, mpi: null },
  bool: { bytes: 1, float: false, safetensors: 'BOOL', torchStorage: 'BoolStorage', kernel: null, mpi: null },
} as const satisfies Record<string, DtypeRow>;

type Table = typeof DTYPE_TABLE;

/** Every dtype, by PyTorch's name (`torch_dtype` in config.json, `--dtype` and `model.dtype`). */
export type Dtype = keyof Table;
export const DTYPE_NAMES = Object.keys(DTYPE_TABLE) as Dtype[];

/** The dtypes a tensor holds: those the kernels take (fp32 computes; bf16/f16 are storage; int32 holds ids). */
export type TensorDtype = { [K in Dtype]: Table[K]['kernel'] extends number ? K : never }[Dtype];
/** The dtypes the collectives reduce, gather and broadcast. */
export type CollectiveDtype = { [K in Dtype]: Table[K]['mpi'] extends number ? K : never }[Dtype];
/** safetensors' names of the dtypes (a weight file's header). */
export type SafetensorsDtype = Table[Dtype]['safetensors'];

/** The dtypes training may compute in (`model.dtype`, autocast): bf16 is mixed precision over fp32 weights. */
export const COMPUTE_DTYPES = ['float32', 'bfloat16'] as const satisfies readonly TensorDtype[];
export type ComputeDtype = (typeof COMPUTE_DTYPES)[number];
/** The float dtypes conversion writes (`convert --dtype`). */
export const CONVERT_DTYPES = ['float32', 'bfloat16', 'float16'] as const satisfies readonly Dtype[];
export type ConvertDtype = (typeof CONVERT_DTYPES)[number];

function codes<C extends 'kernel' | 'mpi'>(column: C): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of DTYPE_NAMES) {
    const code = DTYPE_TABLE[d][column];
    if (code !== null) out[d] = code;
  }
  return out;
}

/** Kernel element-type codes (what native/ reads as its dtype argument). */
export const KERNEL_DTYPE_CODES = codes('kernel') as { readonly [K in TensorDtype]: Table[K]['kernel'] };
/** MPI datatype codes of the collectives. */
export const MPI_DTYPE_CODES = codes('mpi') as { readonly [K in CollectiveDtype]: Table[K]['mpi'] };

export function dtypeBytes(d: Dtype): number {
  return DTYPE_TABLE[d].bytes;
}

export function isDtype(x: unknown): x is Dtype {
  return typeof x === 'string' && Object.hasOwn(DTYPE_TABLE, x);
}

const BY_SAFETENSORS = new Map<string, Dtype>(DTYPE_NAMES.map((d) => [DTYPE_TABLE[d].safetensors, d]));

/** The dtype of a safetensors name (`BF16` -> bfloat16), or null for a name we do not know. */
export function dtypeOfSafetensors(name: string): Dtype | null {
  return BY_SAFETENSORS.get(name) ?? null;
}
