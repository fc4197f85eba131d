// The run config schema: every shipped YAML under configs/ validates; defaults follow the contract;
// dotted overrides reach any key; unknown keys name the nearest valid key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import { applyOverrides, configKeys, loadRunConfig, parseRunConfig, parseValue } from '../../src/train/config.ts';

const root = join(import.meta.dirname, '..', '..');

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

test('every YAML under configs/ validates', () => {
  const files = yamlFiles(join(root, 'configs'));
  assert.ok(files.length >= 3);
  for (const f of files) assert.doesNotThrow(() => loadRunConfig(f), `${f}`);
});

test('defaults follow the config contract', () => {
  const c = parseRunConfig({}, 'defaults');
  assert.equal(c.run_mode, 'finetune');
  assert.equal(c.optimizer.learning_rate, 1e-5);
  assert.equal(c.lr_schedule.type, 'cosine');
  assert.equal(c.lr_schedule.warmup_ratio, 0.03);
  assert.equal(c.parallel_config.data_parallel, 'auto');
  assert.equal(c.callbacks.checkpoint.keep_checkpoint_max, 5);
  assert.equal(c.train_dataset.shuffle, true);
  assert.equal(c.eval_dataset.shuffle, false);
  assert.equal(c.generation.template, undefined); // resolved at generation time: recorded template, else vicuna
});

test('MindFormers llama2-7b settings are kept', () => {
  const c = loadRunConfig(join(root, 'configs/llama2/finetune_llama2_7b.yaml'));
  assert.equal(c.runner_config.epochs, 2);
  assert.equal(c.runner_config.batch_size, 2);
  assert.equal(c.optimizer.learning_rate, 1e-6);
  assert.equal(c.parallel_config.optimizer_shard, true);
  assert.equal(c.callbacks.checkpoint.save_checkpoint_steps, 100);
  assert.equal(c.model.dtype, 'bfloat16');
});

test('dotted overrides reach any key and are typed like YAML', () => {
  const c = loadRunConfig(join(root, 'configs/gpt2/finetune_gpt2.yaml'), {
    'optimizer.learning_rate': parseValue('2e-5'),
    'runner_config.batch_size': parseValue('8'),
    'freeze.include': parseValue("[wte, 'h\\.0\\..*']"),
    'callbacks.eval.do_eval': parseValue('true'),
  });
  assert.equal(c.optimizer.learning_rate, 2e-5);
  assert.equal(c.runner_config.batch_size, 8);
  assert.deepEqual(c.freeze.include, ['wte', 'h\\.0\\..*']);
  assert.equal(c.callbacks.eval.do_eval, true);
  assert.ok(configKeys().includes('generation.top_p'));
});

test('unknown keys and bad values are ConfigErrors naming the key', () => {
  assert.throws(() => parseRunConfig({ optimizer: { learnig_rate: 1 } }, 'a.yaml'), (e: unknown) =>
    e instanceof ConfigError && /a\.yaml: unknown key 'optimizer\.learnig_rate' \(did you mean 'optimizer\.learning_rate'\?\)/.test(e.message));
  assert.throws(() => applyOverrides({}, { 'runner_config.batchsize': 2 }), /did you mean '--runner_config\.batch_size'/);
  assert.throws(() => parseRunConfig({ run_mode: 'fintune' }, 'b.yaml'), (e: unknown) => e instanceof ConfigError && /b\.yaml: run_mode/.test(e.message));
  assert.throws(() => parseRunConfig({ runner_config: { batch_size: 0 } }, 'c.yaml'), /c\.yaml: runner_config\.batch_size/);
});

test('parallel_config.zero_stage: optimizer_shard true is stage 1, contradictions and stage 3 with LoRA are refused', () => {
  const pc = (p: Record<string, unknown>) => parseRunConfig({ parallel_config: p }, 'run.yaml').parallel_config;
  assert.deepEqual([pc({}).zero_stage, pc({}).optimizer_shard], [0, false]);
  assert.deepEqual([pc({ optimizer_shard: true }).zero_stage, pc({ optimizer_shard: true }).optimizer_shard], [1, true]);
  assert.deepEqual([pc({ zero_stage: 2 }).zero_stage, pc({ zero_stage: 2 }).optimizer_shard], [2, true]);
  assert.equal(pc({ zero_stage: 2, optimizer_shard: true }).zero_stage, 2);
  assert.equal(pc({ zero_stage: 0, optimizer_shard: false }).zero_stage, 0);
  assert.throws(() => pc({ zero_stage: 2, optimizer_shard: false }), (e: unknown) => e instanceof ConfigError && /optimizer_shard false contradicts zero_stage 2/.test(e.message));
  assert.throws(() => pc({ zero_stage: 0, optimizer_shard: true }), (e: unknown) => e instanceof ConfigError && /contradicts zero_stage 0/.test(e.message));
  assert.deepEqual([pc({ zero_stage: 3 }).zero_stage, pc({ zero_stage: 3, optimizer_shard: true }).optimizer_shard], [3, true]);
  assert.throws(
    () => parseRunConfig({ parallel_config: { zero_stage: 3 }, lora: { rank: 8 } }, 'run.yaml'),
    (e: unknown) => e instanceof ConfigError && /zero_stage 3 shards full-parameter training/.test(e.message) && e.where === 'run.yaml: parallel_config.zero_stage',
  );
  assert.throws(() => pc({ zero_stage: 4 }), ConfigError);
  assert.equal(pc({}).bucket_mb, 25);
  assert.equal(pc({ bucket_mb: 0.5 }).bucket_mb, 0.5);
  for (const bad of [0, -1, 5000, 'big']) assert.throws(() => pc({ bucket_mb: bad }), (e: unknown) => e instanceof ConfigError && /parallel_config\.bucket_mb/.test(e.message), String(bad));
  const c = loadRunConfig(join(root, 'configs/llama2/finetune_llama2_7b.yaml'), { 'parallel_config.zero_stage': parseValue('2') });
  assert.equal(c.parallel_config.zero_stage, 2);
});
