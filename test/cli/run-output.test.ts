// `sftkit run`'s output folder (issue 24, defect 12): not created before the inputs are validated, removed again
// when a run fails before writing into it, and an unwritable or misplaced one is a FileError naming it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutputDir } from '../../src/cli/output-dir.ts';
import { FileError } from '../../src/errors.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');
const TINY = ['--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--batch_size', '2', '--runner_config.max_steps', '1'];

function sftkit(args: string[], asUser?: number): { status: number | null; stdout: string; stderr: string } {
  const env = { ...process.env, SFTKIT_THREADS: '1' };
  const r =
    asUser === undefined
      ? spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env })
      : spawnSync('setpriv', [`--reuid=${asUser}`, `--regid=${asUser}`, '--clear-groups', process.execPath, bin, ...args], { cwd: root, encoding: 'utf8', env: { ...env, HOME: tmpdir() } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-run-out-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function records(dir: string, seqLength: number): string {
  const text = Array.from({ length: 40 }, (_, i) => `The Congress shall meet on day ${i} of the session.`).join('\n\n');
  writeFileSync(join(dir, 'corpus.txt'), text);
  const out = join(dir, `records-${seqLength}`);
  const r = sftkit(['data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', String(seqLength), '--output_file', out]);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

test('failing runs leave no output folder behind', () =>
  withDir((dir) => {
    const out = join(dir, 'a', 'b', 'out');
    const missing = sftkit(['run', ...TINY, '--train_dataset_dir', join(dir, 'no-such-records'), '--output_dir', out]);
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /no-such-records/);
    // Good training records, but evaluation asked for without its records: refused before training.
    const noEval = sftkit(['run', ...TINY, '--train_dataset_dir', records(dir, 16), '--output_dir', out, '--do_eval']);
    assert.notEqual(noEval.status, 0, noEval.stdout);
    assert.match(noEval.stderr, /eval_dataset\.dataset_dir is not set/);
    assert.equal(existsSync(join(dir, 'a')), false);
  }));

test('an output_dir that is a file is a FileError naming it, before any work', () =>
  withDir((dir) => {
    const file = join(dir, 'out');
    writeFileSync(file, 'not a folder');
    const r = sftkit(['run', ...TINY, '--train_dataset_dir', records(dir, 16), '--output_dir', file]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`sftkit: output_dir ${file.replaceAll('.', '\\.')} is a file, not a folder`));
    assert.doesNotMatch(r.stdout, /step 1/);
  }));

// Root writes into read-only folders anyway; the check is run as nobody when the tests run as root.
const uid = process.getuid?.() ?? -1;
const canDrop = uid === 0 && spawnSync('setpriv', ['--version']).status === 0;
test('a read-only output folder is reported as such, not as ENOENT', { skip: uid !== 0 ? false : !canDrop }, () =>
  withDir((dir) => {
    chmodSync(dir, 0o755);
    const recs = records(dir, 16);
    for (const f of [recs, ...readdirSync(recs).map((n) => join(recs, n))]) chmodSync(f, 0o755);
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    const nobody = uid === 0 ? 65534 : undefined;
    for (const out of [ro, join(ro, 'sub')]) {
      const r = sftkit(['run', ...TINY, '--train_dataset_dir', recs, '--output_dir', out], nobody);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`sftkit: ${out.replaceAll('.', '\\.')}: cannot (write into|create) the output folder: permission denied \\(EACCES\\)\\nhint: choose an output folder you may write to`));
      assert.doesNotMatch(r.stderr, /ENOENT/);
    }
  }));

test('OutputDir removes only the folders it created, and only while they hold no file', () =>
  withDir((dir) => {
    const out = new OutputDir(join(dir, 'x', 'y', 'out'));
    out.ensure();
    mkdirSync(join(out.path, 'checkpoint'));
    out.removeIfUnused();
    assert.deepEqual(readdirSync(dir), []);

    const kept = new OutputDir(join(dir, 'x', 'out'));
    kept.ensure();
    writeFileSync(join(kept.path, 'metrics.jsonl'), '{}\n');
    kept.removeIfUnused();
    assert.deepEqual(readdirSync(kept.path), ['metrics.jsonl']);

    // A folder that was there before is never removed.
    const existing = new OutputDir(join(dir, 'x'));
    existing.ensure();
    rmSync(join(dir, 'x', 'out'), { recursive: true });
    existing.removeIfUnused();
    assert.equal(existsSync(join(dir, 'x')), true);
    writeFileSync(join(dir, 'file'), '');
    assert.throws(() => new OutputDir(join(dir, 'file')).ensure(), (err: unknown) => err instanceof FileError && /is a file, not a folder/.test(err.message));
  }));
