// The addon's runtime services: handles and bounds checks, the caching allocator's statistics, mmap,
// the thread pool size (SFTKIT_THREADS) and ISA selection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ISA, host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';

test('buffers round-trip bytes and refuse out-of-bounds, misaligned and freed access', () => {
  const h = native.alloc(64, true);
  native.write(h, 8, new Float32Array([1.5, -2]));
  const back = new Float32Array(4);
  native.read(h, 0, back);
  assert.deepEqual([...back], [0, 0, 1.5, -2]);
  assert.throws(() => native.read(h, 60, new Float32Array(2)), /too small/);
  assert.throws(() => native.write(h, -4, new Float32Array(1)), /misaligned|offset/);
  assert.equal(native.size(h), 64);
  native.free(h);
  assert.throws(() => native.read(h, 0, back), /not a live native buffer/);
  assert.throws(() => native.free(h), /unknown or already freed/);
  assert.throws(() => native.read(123456789, 0, back), /not a live native buffer/);
});

test('the allocator reuses freed blocks of the same bucket and tracks live and peak bytes', () => {
  native.emptyCache();
  const before = native.memStats();
  const a = native.alloc(10_000, false);
  const mid = native.memStats();
  assert.ok(mid.liveBytes - before.liveBytes >= 10_000);
  assert.ok(mid.peakBytes >= mid.liveBytes);
  native.free(a);
  const freed = native.memStats();
  assert.equal(freed.liveBytes, before.liveBytes);
  assert.ok(freed.cachedBytes > 0);
  const b = native.alloc(9_000, false); // same bucket (8192 < n <= 10240)
  assert.equal(native.memStats().osAllocs, freed.osAllocs, 'served from the cache');
  native.free(b);
});

test('mmap maps a file read-only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-mmap-'));
  try {
    const path = join(dir, 'ids.bin');
    writeFileSync(path, Buffer.from(new Int32Array([7, 8, 9]).buffer));
    const [h, size] = host.mmap(path);
    assert.equal(size, 12);
    const out = new Int32Array(3);
    native.read(h, 0, out);
    assert.deepEqual([...out], [7, 8, 9]);
    assert.throws(() => native.write(h, 0, new Int32Array(1)), /read-only/);
    native.free(h);
    assert.throws(() => host.mmap(join(dir, 'missing.bin')), /cannot open .*missing\.bin/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SFTKIT_THREADS sets the pool size; setThreads resizes it', () => {
  const code = "import('./src/backend/host.ts').then(({host}) => console.log(host.getThreads()))";
  const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { env: { ...process.env, SFTKIT_THREADS: '3' }, encoding: 'utf8' });
  assert.equal(run.stdout.trim(), '3', run.stderr);
  const n = host.getThreads();
  host.setThreads(1);
  assert.equal(host.getThreads(), 1);
  host.setThreads(n);
  assert.throws(() => host.setThreads(0), /thread count/);
});

test('ISA selection clamps to what the CPU supports', () => {
  const detected = host.detectedIsa();
  assert.ok(detected >= ISA.scalar && detected <= ISA.avx512);
  const before = host.getIsa();
  assert.equal(host.setIsa(ISA.scalar), ISA.scalar);
  assert.equal(host.setIsa(99), detected);
  host.setIsa(before);
});

test('SFTKIT_ISA caps the ISA the CPU is taken to have (to run the suite as another CPU would)', () => {
  const code = "import('./src/backend/host.ts').then(({host}) => console.log(JSON.stringify([host.detectedIsa(), host.hasAvx512Bf16(), host.getBf16Path()])))";
  const probe = (isa: string): [number, boolean, number] => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { env: { ...process.env, SFTKIT_ISA: isa }, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return JSON.parse(run.stdout.trim()) as [number, boolean, number];
  };
  const detected = host.detectedIsa();
  assert.deepEqual(probe('scalar'), [ISA.scalar, false, 0]);
  assert.deepEqual(probe('avx2'), [Math.min(detected, ISA.avx2), false, 0]);
  assert.deepEqual(probe('avx512'), [Math.min(detected, ISA.avx512), false, 0]);
  // unset or unknown: everything the CPU has
  assert.deepEqual(probe('')[0], detected);
  assert.deepEqual(probe('avx512_bf16')[1], host.hasAvx512Bf16());
});
