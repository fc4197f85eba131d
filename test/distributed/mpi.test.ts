// Multi-process tests under `mpirun`: exact collectives, bucketed gradient all-reduce, ZeRO-1 against plain
// AdamW, ZeRO-2 and ZeRO-3 against 1 rank × N batch, no hang when a rank fails, and `sftkit launch` writing one log per worker. They skip without MPI
// unless SFTKIT_REQUIRE_MPI=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, mpirunWorker, needMpi, root, run } from './mpi-helper.ts';

function okLines(out: string, np: number): void {
  for (let r = 0; r < np; r++) assert.match(out, new RegExp(`^ok rank ${r}\\b`, 'm'));
}

test('collectives give exact values on 2 and 3 ranks', (t) => {
  if (!needMpi(t)) return;
  for (const np of [2, 3]) {
    const r = mpirunWorker(np, 'collectives');
    assert.equal(r.status, 0, describe(r));
    okLines(r.stdout, np);
  }
});

test('bucketed gradient all-reduce equals the sum (and the average) of every rank', (t) => {
  if (!needMpi(t)) return;
  const r = mpirunWorker(2, 'gradients');
  assert.equal(r.status, 0, describe(r));
  okLines(r.stdout, 2);
});

test('ZeRO-1: 2 ranks with ShardedAdamW match 1 process of AdamW on the summed gradients over 5 steps', (t) => {
  if (!needMpi(t)) return;
  const r = mpirunWorker(2, 'zero');
  assert.equal(r.status, 0, describe(r));
  okLines(r.stdout, 2);
  for (const m of r.stdout.matchAll(/^ok rank \d+ (\S+)$/gm)) assert.ok(Number(m[1]) <= 1e-6);
});

test('ZeRO-2: 2 and 4 ranks, many buckets reduce-scattered in backward, match 1 rank × N batch over 5 steps', (t) => {
  if (!needMpi(t)) return;
  for (const np of [2, 4]) {
    const r = mpirunWorker(np, 'zero2', [], 120_000);
    assert.equal(r.status, 0, describe(r));
    okLines(r.stdout, np);
    for (const m of r.stdout.matchAll(/^ok rank \d+ (\S+)$/gm)) assert.ok(Number(m[1]) <= 1e-6, `${np} ranks: ${m[1]}`);
  }
});

test('ZeRO-3: 2 and 4 ranks, weights gathered by layer group (with and without recompute), match 1 rank × N batch over 5 steps', (t) => {
  if (!needMpi(t)) return;
  for (const [np, mode] of [[2, 'recompute'], [4, 'recompute'], [2, 'keep']] as const) {
    const r = mpirunWorker(np, 'zero3', [mode], 120_000);
    assert.equal(r.status, 0, describe(r));
    okLines(r.stdout, np);
    for (const m of r.stdout.matchAll(/^ok rank \d+ (\S+)$/gm)) assert.ok(Number(m[1]) <= 1e-6, `${np} ranks, ${mode}: ${m[1]}`);
  }
});

test('a failing rank ends every rank with a non-zero status well within 60 s', (t) => {
  if (!needMpi(t)) return;
  for (const mode of ['throw', 'reject', 'exit-code', 'signal', 'zero3']) {
    const r = mpirunWorker(2, 'fail', [mode], 60_000);
    assert.equal(r.timedOut, false, `${mode}: the job hung\n${describe(r)}`);
    assert.ok(r.status !== 0, `${mode}: exit status ${r.status}\n${describe(r)}`);
    assert.doesNotMatch(r.stdout, /rank 0 was not stopped/, mode);
    assert.ok(r.seconds < 60, `${mode}: ${r.seconds} s`);
  }
});

test('sftkit launch runs N workers with one log each, and fails when they fail', (t) => {
  if (!needMpi(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-launch-'));
  try {
    const bin = join(root, 'bin', 'sftkit.js');
    const ok = run(process.execPath, [bin, 'launch', '--worker_num', '2', '--log_dir', dir, '--join', '--', 'mpi-info'], 60_000, {
      SFTKIT_THREADS: '',
    });
    assert.equal(ok.status, 0, describe(ok));
    for (const r of [0, 1]) {
      const log = readFileSync(join(dir, `worker_${r}.log`), 'utf8');
      assert.match(log, new RegExp(`^rank ${r} of 2 \\(local ${r} of 2\\), backend mpi, \\d+ threads, all-reduce ok$`, 'm'));
      assert.match(ok.stdout, new RegExp(`^\\[worker ${r}\\] rank ${r} of 2`, 'm'));
    }
    const bad = run(process.execPath, [bin, 'launch', '--worker_num', '2', '--log_dir', dir, '--', 'no-such-command'], 60_000);
    assert.notEqual(bad.status, 0, describe(bad));
    assert.match(readFileSync(join(dir, 'worker_1.log'), 'utf8'), /unknown command 'no-such-command'/);
    assert.match(bad.stderr, /the job failed/);
  } finally {
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
});
