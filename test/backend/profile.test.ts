// The per-kernel profile: counts and times native calls while on, restores the plain binding when off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/backend/binding.ts';
import { formatProfile, profileRows, resetProfile, startProfile, stopProfile } from '../../src/backend/profile.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor, scope } from '../../src/tensor/index.ts';

test('profile counts kernel calls and restores the binding', () => {
  const plainGemm = native.gemm;
  startProfile();
  resetProfile();
  assert.notEqual(native.gemm, plainGemm);
  scope(() => {
    const a = Tensor.full([8, 8], 1);
    T.matmul(a, a);
    T.matmul(a, a);
  });
  stopProfile();
  assert.equal(native.gemm, plainGemm);
  const rows = profileRows();
  const gemm = rows.find((r) => r.name === 'gemm');
  assert.equal(gemm?.calls, 2);
  assert.ok((gemm?.seconds ?? -1) >= 0);
  assert.match(formatProfile(rows, 2), /gemm\s+1\.0/);
  scope(() => T.matmul(Tensor.full([2, 2], 1), Tensor.full([2, 2], 1)));
  assert.equal(profileRows().find((r) => r.name === 'gemm')?.calls, 2, 'nothing is counted after stop');
});
