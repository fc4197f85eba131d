// Unknown config keys (issue 24, defect 12): the did-you-mean search is bounded, so a pasted 100 KB key is
// refused at once with a shortened name instead of costing seconds of edit distance per valid key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import { applyOverrides, loadRunConfig, nearestKey } from '../../src/train/config.ts';

test('a typo still gets its suggestion', () => {
  assert.equal(nearestKey('optimizer.learnig_rate'), 'optimizer.learning_rate');
  assert.equal(nearestKey('x'.repeat(129)), null);
});

test('a 100 KB unknown YAML key is refused in well under a second, its name shortened', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cfg-'));
  try {
    const key = 'k'.repeat(100_000);
    const path = join(dir, 'run.yaml');
    writeFileSync(path, `seed: 0\noptimizer: {"${key}": 1}\n`);
    const t0 = performance.now();
    assert.throws(() => loadRunConfig(path), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, `${path}: unknown key 'optimizer.${'k'.repeat(50)}…(100010 characters)'`);
      return true;
    });
    assert.ok(performance.now() - t0 < 1000, `took ${performance.now() - t0} ms`);
    const t1 = performance.now();
    assert.throws(() => applyOverrides({}, { [key]: 1 }), /^ConfigError: override --k{60}…\(100000 characters\): unknown key$/);
    assert.ok(performance.now() - t1 < 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
