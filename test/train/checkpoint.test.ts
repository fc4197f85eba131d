// Training checkpoints: (epoch, step) order, the start-of-run sweep of what an interrupted run left, saves
// that fail leaving nothing behind, and trainer_state.json / rank_<r>.json checked field by field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SingleProcessGroup } from '../../src/distributed/index.ts';
import { FormatError } from '../../src/errors.ts';
import { sha256File } from '../../src/formats/checkpoint-dir.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { Rng } from '../../src/tensor/index.ts';
import { ArrayBatchSource } from '../../src/train/batches.ts';
import {
  CheckpointError,
  compareCheckpointNames,
  findResumeCheckpoint,
  parseCheckpointName,
  saveCheckpoint,
  sweepCheckpointRoot,
  verifyCheckpoint,
} from '../../src/train/checkpoint.ts';
import { parseRunConfig } from '../../src/train/config.ts';
import { createModel, loadModel } from '../../src/train/model-io.ts';
import type { TrainOptimizer } from '../../src/train/optimizer.ts';
import { Trainer } from '../../src/train/trainer.ts';

const MODEL = {
  model_type: 'llama', vocab_size: 37, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64, bos_token_id: 1, eos_token_id: 2,
};

function model(): CausalLM {
  return createModel(parseModelConfig(MODEL, 'tiny'), 3);
}

function rows(n: number): { inputIds: Int32Array; labels: Int32Array }[] {
  const rng = new Rng(7);
  return Array.from({ length: n }, () => {
    const inputIds = Int32Array.from({ length: 9 }, () => 3 + rng.int(30));
    return { inputIds, labels: Int32Array.from(inputIds) };
  });
}

/** Trains `steps` steps (one epoch of 2-row batches), saving every step and keeping `keep`; resumes from `resume` when given. */
async function train(out: string, opts: { steps: number; keep: number; resume?: string; notes?: string[] }): Promise<void> {
  const cfg = parseRunConfig(
    {
      seed: 0,
      output_dir: out,
      runner_config: { epochs: 1, max_steps: opts.steps, batch_size: 2 },
      optimizer: { learning_rate: 1e-2 },
      lr_schedule: { type: 'constant', warmup_ratio: 0 },
      callbacks: { checkpoint: { prefix: 'x', save_checkpoint_steps: 1, keep_checkpoint_max: opts.keep } },
    },
    'test',
  );
  const resume = opts.resume === undefined ? null : findResumeCheckpoint(join(out, 'checkpoint'), opts.resume, () => {});
  const m = resume ? loadModel(resume.dir) : model();
  try {
    const notes = opts.notes;
    const events = notes ? { note: (msg: string) => notes.push(msg) } : {};
    await new Trainer({ config: cfg, model: m, train: new ArrayBatchSource(rows(24), { batchSize: 2, shuffle: false }), assetsDir: null, resume, events }).run();
  } finally {
    m.release();
  }
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'sftkit-ckpt-'));
}

function listing(dir: string): string[] {
  return readdirSync(dir).sort();
}

function meta(root: string): { latest: string; checkpoints: string[] } {
  return JSON.parse(readFileSync(join(root, 'meta.json'), 'utf8')) as { latest: string; checkpoints: string[] };
}

test('checkpoint names order by parsed (epoch, step), never as strings', async () => {
  assert.deepEqual(['x-1_10', 'x-10_0', 'x-1_9', 'x-2_1', 'x-1_100'].sort(compareCheckpointNames), ['x-1_9', 'x-1_10', 'x-1_100', 'x-2_1', 'x-10_0']);
  assert.deepEqual(parseCheckpointName('my-run-3_12'), { prefix: 'my-run', epoch: 3, step: 12 });
  for (const bad of ['.x-1_2.tmp', 'x-1_2.pruned', 'x-1', 'meta.json', 'x-a_2']) assert.equal(parseCheckpointName(bad), null, bad);

  const out = tmp();
  try {
    await train(out, { steps: 10, keep: 20 });
    const root = join(out, 'checkpoint');
    // Without meta.json, resume takes the highest (epoch, step): x-1_10, which a string sort puts before x-1_2.
    rmSync(join(root, 'meta.json'));
    assert.equal(findResumeCheckpoint(root, null, () => assert.fail('no warning expected')).name, 'x-1_10');
    // The next save counts the checkpoints on disk in that order, so pruning keeps the newest ones.
    await train(out, { steps: 11, keep: 3 });
    assert.deepEqual(meta(root), { latest: 'x-1_11', checkpoints: ['x-1_9', 'x-1_10', 'x-1_11'] });
    assert.deepEqual(listing(root), ['meta.json', 'x-1_10', 'x-1_11', 'x-1_9']);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('a run starts by sweeping temp files, half-deleted and uncommitted checkpoints, one log line each', async () => {
  const out = tmp();
  try {
    await train(out, { steps: 4, keep: 2 });
    const root = join(out, 'checkpoint');
    assert.deepEqual(listing(root), ['meta.json', 'x-1_3', 'x-1_4']);
    // What kill -9 can leave: a save's temp folder, a meta.json temp file, a prune cut short, a checkpoint
    // renamed into place but never committed to meta.json, and (older sftkit) a half-deleted checkpoint.
    mkdirSync(join(root, '.x-1_6.tmp', 'optimizer'), { recursive: true });
    writeFileSync(join(root, '.x-1_6.tmp', 'optimizer', 'rank_0.safetensors'), 'partial');
    writeFileSync(join(root, '.meta.json.tmp-4242'), '{"latest": "x-1_');
    mkdirSync(join(root, '.x-1_2.pruned'));
    writeFileSync(join(root, '.x-1_2.pruned', 'config.json'), '{}');
    cpSync(join(root, 'x-1_4'), join(root, 'x-1_5'), { recursive: true });
    mkdirSync(join(root, 'x-1_1'));
    writeFileSync(join(root, 'x-1_1', 'config.json'), '{}');
    // Not ours: left alone.
    mkdirSync(join(root, 'notes'));

    const lines: string[] = [];
    const removed = sweepCheckpointRoot(root, { keep: null, log: (m) => lines.push(m) });
    assert.deepEqual(removed, ['.meta.json.tmp-4242', '.x-1_2.pruned', '.x-1_6.tmp', 'x-1_1', 'x-1_5']);
    assert.equal(lines.length, 5);
    assert.match(lines[2] as string, /^checkpoint housekeeping: removed .*\/\.x-1_6\.tmp: the temp folder of a save that never finished$/);
    assert.match(lines[4] as string, /x-1_5: a checkpoint that meta\.json does not list/);
    assert.deepEqual(listing(root), ['meta.json', 'notes', 'x-1_3', 'x-1_4']);

    // The checkpoint a run resumes from stays even when meta.json does not list it.
    cpSync(join(root, 'x-1_4'), join(root, 'x-1_5'), { recursive: true });
    assert.deepEqual(sweepCheckpointRoot(root, { keep: 'x-1_5', log: () => {} }), []);
    // Without a readable meta.json nothing complete is removed: it is what resume falls back to.
    writeFileSync(join(root, 'meta.json'), '{"latest": 3}');
    assert.deepEqual(sweepCheckpointRoot(root, { keep: null, log: () => {} }), []);
    writeFileSync(join(root, 'meta.json'), JSON.stringify({ latest: 'x-1_4', checkpoints: ['x-1_3', 'x-1_4'] }));

    // The trainer sweeps at the start of a run and reports it as notes.
    mkdirSync(join(root, '.x-1_5.tmp'));
    const notes: string[] = [];
    await train(out, { steps: 6, keep: 2, resume: 'x-1_4', notes });
    assert.deepEqual(notes.map((n) => n.replace(/.*removed (\S+):.*/, '$1').split('/').pop()), ['.x-1_5.tmp', 'x-1_5']);
    assert.deepEqual(listing(root), ['meta.json', 'notes', 'x-1_5', 'x-1_6']);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('a save that fails (a full disk) leaves no temp folder and names the checkpoint', async () => {
  const out = tmp();
  const m = model();
  try {
    const root = join(out, 'checkpoint');
    const full: TrainOptimizer = {
      step: 0,
      zeroGrad: () => {},
      microBatchDone: () => {},
      reduceGradients: () => {},
      gradNorm: () => 0,
      update: () => {},
      finish: () => {},
      save: (dir: string) => {
        writeFileSync(join(dir, 'rank_0.safetensors'), 'half of it');
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      },
      load: () => {},
      release: () => {},
    };
    const save = saveCheckpoint({
      root,
      name: 'x-1_1',
      model: m,
      optimizer: full,
      state: {
        epoch: 0, step: 1, consumed_samples: 2, loss_scale: 1, world_size: 1, config: {},
        lr_schedule: { type: 'constant', total_steps: 1, warmup_steps: 0, lr: 1e-3, lr_end: 0 },
      },
      rank: { rank: 0, rng: new Rng(1).getState(), loader: { epoch: 0, batch: 1 } },
      assetsDir: null,
      keepMax: 2,
      pg: new SingleProcessGroup(),
    });
    await assert.rejects(save, (e: unknown) => e instanceof FormatError && /could not write checkpoint .*x-1_1: ENOSPC/.test(e.message) && e.where === join(root, 'x-1_1'));
    assert.deepEqual(listing(root), []);
  } finally {
    m.release();
    rmSync(out, { recursive: true, force: true });
  }
});

/** Rewrites one JSON file of a checkpoint and its hash in sftkit.json, as a tool (or an attacker) could. */
function edit(dir: string, file: string, change: (json: Record<string, unknown>) => void): void {
  const path = join(dir, file);
  const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  change(json);
  writeFileSync(path, JSON.stringify(json));
  const manifestPath = join(dir, 'sftkit.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { files: Record<string, string> };
  manifest.files[file] = sha256File(path);
  writeFileSync(manifestPath, JSON.stringify(manifest));
}

function rejects(dir: string, field: string | null, message: RegExp): void {
  assert.throws(
    () => verifyCheckpoint(dir),
    (e: unknown) => e instanceof CheckpointError && e.field === field && message.test(e.message),
  );
}

test('trainer_state.json and rank_<r>.json are checked field by field; resume falls back past a bad one', async () => {
  const out = tmp();
  try {
    await train(out, { steps: 3, keep: 2 });
    const root = join(out, 'checkpoint');
    const dir = join(root, 'x-1_3');
    const saved = ['trainer_state.json', 'rank_0.json', 'sftkit.json'].map((f) => [f, readFileSync(join(dir, f), 'utf8')] as const);
    const restore = (): void => {
      for (const [f, text] of saved) writeFileSync(join(dir, f), text);
    };
    assert.equal(verifyCheckpoint(dir).state.step, 3);

    // A step stored as a string is refused (it used to be string-concatenated into a name like x-1_31).
    edit(dir, 'trainer_state.json', (j) => (j.step = '3'));
    rejects(dir, 'step', /trainer_state\.json: field "step" .*expected number.*\(found "3"\)$/);
    const warnings: string[] = [];
    assert.equal(findResumeCheckpoint(root, null, (w) => warnings.push(w)).name, 'x-1_2');
    assert.match(warnings[0] ?? '', /^checkpoint x-1_3 is unusable \(.*trainer_state\.json: field "step"/);
    // Named explicitly, there is no fallback: the error itself.
    assert.throws(() => findResumeCheckpoint(root, 'x-1_3', () => {}), CheckpointError);
    restore();

    edit(dir, 'trainer_state.json', (j) => delete j.lr_schedule);
    rejects(dir, 'lr_schedule', /field "lr_schedule" .*\(found nothing\)$/);
    restore();
    edit(dir, 'trainer_state.json', (j) => ((j.lr_schedule as Record<string, unknown>).type = 'exponential'));
    rejects(dir, 'lr_schedule.type', /found "exponential"/);
    restore();
    edit(dir, 'trainer_state.json', (j) => (j.optimizer_files = { '../../etc/passwd': 'a'.repeat(64) }));
    rejects(dir, 'optimizer_files', /field "optimizer_files" has a key "\.\.\/\.\.\/etc\/passwd": expected a plain file name$/);
    restore();
    edit(dir, 'trainer_state.json', (j) => (j.world_size = 2));
    rejects(dir, 'world_size', /is 2, but rank_1\.json is missing/);
    restore();

    edit(dir, 'rank_0.json', (j) => ((j.rng as Record<string, unknown>).s = [0, 0, 0, 0]));
    rejects(dir, 'rng.s', /rank_0\.json: field "rng\.s" the RNG state is all zeros/);
    restore();
    edit(dir, 'rank_0.json', (j) => ((j.rng as Record<string, unknown>).s = [1, 2, '3', 4]));
    rejects(dir, 'rng.s.2', /found "3"/);
    restore();
    edit(dir, 'rank_0.json', (j) => ((j.rng as Record<string, unknown>).spare = 'x'));
    rejects(dir, 'rng.spare', /found "x"/);
    restore();
    edit(dir, 'rank_0.json', (j) => (j.rank = 1));
    rejects(dir, 'rank', /is 1, but the file is rank 0's/);
    restore();
    edit(dir, 'rank_0.json', (j) => delete j.rng);
    rejects(dir, 'rng', /found nothing/);
    restore();

    // A file changed behind sftkit.json's back still fails its hash first.
    writeFileSync(join(dir, 'rank_0.json'), '{"rank": "0"}');
    assert.throws(() => verifyCheckpoint(dir), (e: unknown) => e instanceof FormatError && /rank_0\.json: content does not match its sha256/.test(e.message));
    restore();
    assert.equal(verifyCheckpoint(dir).ranks[0]?.rank, 0);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
