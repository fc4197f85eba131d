// The one dtype vocabulary (src/dtype.ts): its codes agree with the native enums they stand for, and every
// other dtype list in the tree is derived from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DTYPE_CODE, MPI_DTYPE } from '../../src/backend/binding.ts';
import { COMPUTE_DTYPES, DTYPE_NAMES, DTYPE_TABLE, KERNEL_DTYPE_CODES, MPI_DTYPE_CODES, dtypeOfSafetensors, isDtype } from '../../src/dtype.ts';
import { DTYPE_BYTES, TARGET_DTYPES, WEIGHT_DTYPES, castFloat, isFloatDtype, torchDtypeName } from '../../src/formats/dtypes.ts';
import { DTYPES, dtypeBytes, dtypeCode } from '../../src/tensor/dtype.ts';
import { Tensor } from '../../src/tensor/index.ts';
import { runConfigSchema } from '../../src/train/config.ts';

const native = join(import.meta.dirname, '..', '..', 'native');

/** `enum DType : int { kF32 = 0, ... }` of a C++ header, as name -> code. */
function cppEnum(file: string): Map<string, number> {
  const m = /enum DType : int \{([^}]*)\}/.exec(readFileSync(join(native, file), 'utf8'));
  assert.ok(m, `${file} declares enum DType`);
  return new Map((m[1] as string).split(',').map((e) => e.trim().split(/\s*=\s*/)).map(([k, v]) => [k as string, Number(v)]));
}

test('kernel and MPI codes are the native enums; byte sizes are what the kernels read', () => {
  assert.deepEqual(
    new Map(Object.entries(KERNEL_DTYPE_CODES)),
    new Map([...cppEnum('kernels/kernels.h')].map(([k, v]) => [({ kF32: 'float32', kBF16: 'bfloat16', kF16: 'float16', kI32: 'int32' } as Record<string, string>)[k], v])),
  );
  assert.deepEqual(
    new Map(Object.entries(MPI_DTYPE_CODES)),
    new Map([...cppEnum('mpi_comm.h')].map(([k, v]) => [({ kF32: 'float32', kI32: 'int32', kF64: 'float64' } as Record<string, string>)[k], v])),
  );
  assert.equal(DTYPE_CODE, KERNEL_DTYPE_CODES);
  assert.equal(MPI_DTYPE, MPI_DTYPE_CODES);
  for (const d of DTYPES) {
    const t = Tensor.zeros([3, 5], d);
    assert.equal(t.toArray().BYTES_PER_ELEMENT, dtypeBytes(d), d);
    assert.equal(dtypeCode(d), DTYPE_TABLE[d].kernel);
    t.release();
  }
});

test('the formats and tensor lists are the vocabulary seen through one column', () => {
  assert.deepEqual([...DTYPES].sort(), ['bfloat16', 'float16', 'float32', 'int32']);
  assert.deepEqual([...WEIGHT_DTYPES], ['F64', 'F32', 'BF16', 'F16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL']);
  assert.deepEqual(DTYPE_BYTES, { F64: 8, F32: 4, BF16: 2, F16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 });
  assert.deepEqual(TARGET_DTYPES, { float32: 'F32', bfloat16: 'BF16', float16: 'F16' });
  for (const d of DTYPE_NAMES) {
    const st = DTYPE_TABLE[d].safetensors;
    assert.equal(dtypeOfSafetensors(st), d);
    assert.equal(torchDtypeName(st), d);
    assert.equal(isFloatDtype(st), d.startsWith('float') || d === 'bfloat16');
  }
  assert.equal(dtypeOfSafetensors('Q8_0'), null);
  assert.equal(isDtype('toString'), false);
  // A cast by the table's names: 1.5 in bf16 is 0x3fc0.
  assert.deepEqual(Array.from(castFloat(new Uint8Array(new Float32Array([1.5]).buffer), TARGET_DTYPES.float32, TARGET_DTYPES.bfloat16)), [0xc0, 0x3f]);
  // model.dtype takes exactly the compute dtypes.
  assert.equal(runConfigSchema.safeParse({ model: { dtype: 'float16' } }).success, false);
  for (const d of COMPUTE_DTYPES) assert.equal(runConfigSchema.parse({ model: { dtype: d } }).model.dtype, d);
});
