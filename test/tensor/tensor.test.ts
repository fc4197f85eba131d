// Tensor basics: creation and read-back, views without copies, scopes and keep, RNG state, typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { activeBackend } from '../../src/backend/select.ts';
import { ShapeError } from '../../src/errors.ts';
import * as T from '../../src/tensor/index.ts';
import { Rng, Tensor, backward, keep, noGrad, scope } from '../../src/tensor/index.ts';

test('from / toArray round-trip in every dtype', () => {
  scope(() => {
    assert.deepEqual([...Tensor.from([1, 2, 3.5], [3]).toArray()], [1, 2, 3.5]);
    assert.deepEqual([...Tensor.from([-7, 0, 9], [3], 'int32').toArray()], [-7, 0, 9]);
    assert.deepEqual([...Tensor.from(Uint16Array.from([0x3f80, 0xc000]), [2], 'bfloat16').toArray()], [0x3f80, 0xc000]);
    assert.equal(Tensor.full([2, 2], 1.5).toArray()[3], 1.5);
  });
});

test('reshape, transpose, slice and expand are views sharing storage', () => {
  scope(() => {
    const a = Tensor.from([0, 1, 2, 3, 4, 5], [2, 3]);
    const r = T.reshape(a, [3, 2]);
    const t = T.transpose(a, 0, 1);
    const s = T.slice(a, 1, 1, 3);
    const e = T.expand(T.reshape(a, [1, 2, 3]), [4, 2, 3]);
    for (const v of [r, t, s, e]) assert.equal(v.storage, a.storage);
    assert.deepEqual([...t.toArray()], [0, 3, 1, 4, 2, 5]);
    assert.deepEqual([...s.toArray()], [1, 2, 4, 5]);
    assert.equal(t.isContiguous, false);
    // Reshaping a non-contiguous view copies.
    assert.notEqual(T.reshape(t, [6]).storage, a.storage);
  });
});

test('a scope releases its intermediates and keeps what it returns', () => {
  const before = activeBackend().memStats().liveBytes;
  const kept = scope(() => {
    const a = Tensor.full([256], 2);
    const b = T.mul(a, a);
    T.exp(b);
    return T.add(b, a);
  });
  assert.deepEqual([...kept.toArray().slice(0, 2)], [6, 6]);
  kept.release();
  assert.equal(activeBackend().memStats().liveBytes, before);
});

test('keep() lets a tensor outlive its scope; a released tensor cannot be read', () => {
  let cache: Tensor | null = null;
  scope(() => {
    cache = keep(Tensor.full([8], 3));
    Tensor.full([8], 4);
  });
  const c = cache as unknown as Tensor;
  assert.equal(c.toArray()[0], 3);
  c.release();
  assert.throws(() => c.toArray(), /not a live (native )?buffer/);
});

test('gradients accumulate across backward calls and hooks fire once per pass', () => {
  const w = Tensor.from([1, 2, 3], [3], 'float32', { persistent: true }).requireGrad();
  let fired = 0;
  w.onGradReady(() => fired++);
  for (let i = 0; i < 2; i++) {
    scope(() => {
      const y = T.sumAll(T.mul(w, w)); // uses w twice
      backward(y);
    });
  }
  assert.deepEqual([...(w.grad as Tensor).toArray()], [4, 8, 12]);
  assert.equal(fired, 2);
  w.grad?.release();
  w.release();
});

test('noGrad records nothing', () => {
  scope(() => {
    const w = Tensor.from([1, 2], [2]).requireGrad();
    const y = noGrad(() => T.mul(w, w));
    assert.equal(y.requiresGrad, false);
    assert.equal(y.gradFn, null);
  });
});

test('RNG state saves and restores exactly', () => {
  const r = new Rng(42);
  r.normal();
  const state = r.getState();
  const a = [r.normal(), r.uniform(), r.nextU32()];
  r.setState(state);
  assert.deepEqual([r.normal(), r.uniform(), r.nextU32()], a);
  assert.notDeepEqual(new Rng(1).permutation(10), new Rng(2).permutation(10));
  assert.deepEqual([...new Rng(1).permutation(10)].sort((p, q) => p - q), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('bad shapes and dtypes are ShapeErrors naming the op and shapes', () => {
  scope(() => {
    const a = Tensor.full([2, 3], 1);
    const b = Tensor.full([4], 1);
    assert.throws(() => T.add(a, b), (e: unknown) => e instanceof ShapeError && /add: shapes \[2, 3\] and \[4\]/.test(e.message));
    assert.throws(() => T.matmul(a, a), (e: unknown) => e instanceof ShapeError && /matmul: inner dims differ/.test(e.message));
    assert.throws(() => T.exp(Tensor.full([2], 1, 'int32')), (e: unknown) => e instanceof ShapeError && /exp: x must be float32/.test(e.message));
    assert.throws(() => T.reshape(a, [4, 2]), (e: unknown) => e instanceof ShapeError && /reshape/.test(e.message));
    assert.throws(() => T.slice(a, 1, 2, 5), ShapeError);
  });
});

test('an out-of-range embedding id is an error naming it, not a crash', () => {
  scope(() => {
    const w = Tensor.full([4, 2], 1);
    const ids = Tensor.from([1, 4], [2], 'int32');
    assert.throws(() => T.embedding(w, ids), /embedding.*4/);
  });
});
