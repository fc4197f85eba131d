// Unknown config keys (issue 24, defect 12): the did-you-mean search is bounded, so a pasted 100 KB key is
// refused at once with a shortened name instead of costing seconds of edit distance per valid key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import { KEY_ALIASES, applyOverrides, configKeys, describeConfigKeys, loadRunConfig, nearestKey } from '../../src/train/config.ts';

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

test('names from other trainers suggest our key by meaning, not by spelling', () => {
  assert.equal(nearestKey('lr'), 'optimizer.learning_rate');
  assert.equal(nearestKey('learning_rate'), 'optimizer.learning_rate');
  assert.equal(nearestKey('optimizer.lr'), 'optimizer.learning_rate');
  assert.equal(nearestKey('max_steps'), 'runner_config.max_steps');
  assert.equal(nearestKey('bs'), 'runner_config.batch_size');
  assert.equal(nearestKey('num_train_epochs'), 'runner_config.epochs');
  assert.equal(nearestKey('early_stopping_patience'), 'callbacks.early_stopping.patience');
  assert.equal(nearestKey('metric_for_best_model'), 'callbacks.early_stopping.metric');
  assert.equal(nearestKey('logging_dir'), 'callbacks.tensorboard.log_dir');
  // Object.prototype's names are not aliases: spelling decides for them.
  assert.ok(configKeys().includes(nearestKey('constructor') as string));
  assert.ok(configKeys().includes(nearestKey('__proto__') as string));
  // Every alias leads to a key the schema has (a renamed key must rename its aliases).
  const keys = new Set(configKeys());
  for (const [alias, key] of Object.entries(KEY_ALIASES)) assert.ok(keys.has(key), `${alias} -> ${key}`);
});

test('describeConfigKeys lists every key with its kind and default, from the schema', () => {
  const info = new Map(describeConfigKeys().map((k) => [k.key, k]));
  assert.deepEqual([...info.keys()], configKeys());
  assert.deepEqual(info.get('optimizer.learning_rate'), { key: 'optimizer.learning_rate', kind: 'number', default: 1e-5 });
  assert.deepEqual(info.get('runner_config.max_steps'), { key: 'runner_config.max_steps', kind: 'integer', default: -1 });
  assert.deepEqual(info.get('lr_schedule.type'), { key: 'lr_schedule.type', kind: 'constant | linear | cosine', default: 'cosine' });
  assert.deepEqual(info.get('generation.template'), { key: 'generation.template', kind: 'string', default: undefined });
});
