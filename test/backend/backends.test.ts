// The compute-backend seam: SFTKIT_BACKEND picks the active backend; tensors know theirs and ops run its
// kernels; the reference backend computes what the native one does; collectives refuse non-native memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MPI_DTYPE, MPI_OP, mpi } from '../../src/backend/collectives.ts';
import { nativeBackend } from '../../src/backend/native.ts';
import { referenceBackend } from '../../src/backend/reference-backend.ts';
import { activeBackend, withBackend } from '../../src/backend/select.ts';
import { initProcessGroup } from '../../src/distributed/index.ts';
import { ConfigError, ShapeError } from '../../src/errors.ts';
import * as T from '../../src/tensor/index.ts';
import { Storage, Tensor, scope } from '../../src/tensor/index.ts';
import { closeRel, randomF32 } from '../helpers/native.ts';

const root = join(import.meta.dirname, '..', '..');

function probe(value: string | undefined): { status: number | null; stdout: string; stderr: string } {
  const code = "import('./src/backend/select.ts').then(({ activeBackend }) => console.log(activeBackend().name))";
  const env = { ...process.env };
  if (value === undefined) delete env.SFTKIT_BACKEND;
  else env.SFTKIT_BACKEND = value;
  return spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { cwd: root, env, encoding: 'utf8' });
}

test('SFTKIT_BACKEND picks the active backend: native by default, reference on request, anything else refused', () => {
  assert.equal(probe(undefined).stdout.trim(), 'native');
  assert.equal(probe('native').stdout.trim(), 'native');
  assert.equal(probe('reference').stdout.trim(), 'reference');
  const bad = probe('cuda');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /SFTKIT_BACKEND=cuda is not a compute backend \(native, reference\)/);
});

test('tensors are made on the active backend (or the one named) and ops allocate where their inputs live', () => {
  scope(() => {
    const a = Tensor.from([1, -2, 3], [3]);
    assert.equal(a.backend, activeBackend());
    const r = Tensor.from([1, -2, 3], [3], 'float32', { backend: referenceBackend });
    assert.equal(r.backend, referenceBackend);
    assert.equal(T.exp(r).backend, referenceBackend);
    withBackend(referenceBackend, () => assert.equal(Tensor.zeros([2]).backend, referenceBackend));
    assert.equal(Tensor.zeros([2]).backend, activeBackend());
  });
});

test('an op on tensors of two backends is a ShapeError naming the op', () => {
  scope(() => {
    const n = Tensor.from([1, 2], [2], 'float32', { backend: nativeBackend });
    const r = Tensor.from([1, 2], [2], 'float32', { backend: referenceBackend });
    assert.throws(() => T.add(n, r), (e: unknown) => e instanceof ShapeError && /add: inputs live on different compute backends \(native, reference\)/.test(e.message));
  });
});

test('the reference backend computes what the native one does (elementwise, broadcast, reductions, softmax, views, backward)', () => {
  const x = randomF32(4 * 6, 11);
  const y = randomF32(6, 12);
  const run = (backend: typeof nativeBackend): Float32Array[] =>
    withBackend(backend, () =>
      scope(() => {
        const a = Tensor.from(x, [4, 6]).requireGrad();
        const b = Tensor.from(y, [6]).requireGrad();
        const h = T.silu(T.mul(T.add(a, b), T.scale(b, 0.5)));
        const s = T.softmax(T.transpose(h, 0, 1));
        const loss = T.sumAll(T.mul(s, T.transpose(T.expand(T.sum(h, 0, true), [4, 6]), 0, 1))); // (6, 4)
        T.backward(loss);
        const out = [s.toArray() as Float32Array, (a.grad as Tensor).toArray() as Float32Array, (b.grad as Tensor).toArray() as Float32Array];
        a.grad?.release();
        b.grad?.release();
        return out;
      }),
    );
  const want = run(nativeBackend);
  const got = run(referenceBackend);
  ['softmax', 'da', 'db'].forEach((name, i) => closeRel(name, got[i] as Float32Array, want[i] as Float32Array, 1e-5));
});

test('Storage.mmap on the reference backend copies the file in, read-only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-backends-'));
  try {
    const path = join(dir, 'w.bin');
    const values = Float32Array.from([0.5, -1, 2, 4]);
    writeFileSync(path, Buffer.from(values.buffer));
    const s = Storage.mmap(path, referenceBackend);
    try {
      assert.equal(s.backend, referenceBackend);
      assert.equal(s.readonly, true);
      assert.equal(s.bytes, 16);
      const t = new Tensor(s, [4], [1], 0, 'float32');
      assert.deepEqual(Array.from(t.toArray()), [0.5, -1, 2, 4]);
      assert.throws(() => referenceBackend.write(s.handle, 0, new Float32Array(1)), /read-only/);
    } finally {
      s.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('collectives need native memory: the reference backend is a ConfigError, never a bad pointer', () => {
  const r = Storage.alloc(16, { persistent: true }, referenceBackend);
  try {
    assert.throws(
      () => mpi.allReduce(referenceBackend, r.handle, 0, 4, MPI_DTYPE.float32, MPI_OP.sum),
      (e: unknown) => e instanceof ConfigError && /MPI needs the native backend/.test(e.message),
    );
  } finally {
    r.release();
  }
  withBackend(referenceBackend, () => {
    assert.throws(() => initProcessGroup({ worldSize: 2 }), (e: unknown) => e instanceof ConfigError && /MPI needs the native backend/.test(e.message));
  });
});
