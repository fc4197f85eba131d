// A full disk while the data commands write (issue 24, defect 1): the command fails naming the file, exits
// non-zero and leaves neither a truncated output nor a temp file. The disk is made "full" for real: writes to
// /dev/full fail with ENOSPC, and a file-size limit (ulimit -f, SIGXFSZ ignored) makes writes past it fail or
// come back short, as a filling disk does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileError } from '../../src/errors.ts';
import { writeAllSync } from '../../src/formats/write-file.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'sftkit.js');
const linux = process.platform === 'linux';

/** Runs the CLI with writes limited to `kib` KiB per file. */
function sftkitLimited(kib: number, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const quoted = args.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const r = spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f ${kib}; exec '${process.execPath}' '${bin}' ${quoted}`], { cwd: root, encoding: 'utf8', env: { ...process.env, SFTKIT_THREADS: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('a write to a full device is a FileError naming the file', { skip: !existsSync('/dev/full') }, () => {
  const fd = openSync('/dev/full', 'w');
  try {
    assert.throws(() => writeAllSync(fd, Buffer.alloc(1000, 1), 'out/conv.json'), (err: unknown) => {
      assert.ok(err instanceof FileError);
      assert.equal(err.message, 'out/conv.json: cannot write: no space left on the device (ENOSPC)');
      assert.equal(err.where, 'out/conv.json');
      assert.match(err.hint ?? '', /free disk space/);
      return true;
    });
  } finally {
    closeSync(fd);
  }
});

test('data alpaca on a full disk exits non-zero naming the file and leaves nothing behind', { skip: !linux }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-full-'));
  try {
    const out = join(dir, 'conv.json');
    // The converted file is ~2.4 MB; 200 KiB fit.
    const r = sftkitLimited(200, ['data', 'alpaca', '--data_path', 'assets/demo/alpaca_train.json', '--output_path', out]);
    assert.notEqual(r.status, 0, r.stdout);
    assert.doesNotMatch(r.stdout, /wrote/);
    assert.match(r.stderr, new RegExp(`${out.replaceAll('.', '\\.')}: cannot write: the file is larger than this process may write \\(EFBIG\\)`));
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('data preprocess on a full disk exits non-zero naming the shard and leaves no records or temp folder', { skip: !linux }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-full-'));
  try {
    const text = Array.from({ length: 5000 }, (_, i) => `The people of the year ${1800 + i} asked the Congress for roads, schools and peace.`).join('\n\n');
    writeFileSync(join(dir, 'corpus.txt'), text);
    const records = join(dir, 'records');
    // ~100,000 tokens: ~400 rows of 257 int32, ~400 KB per shard file; 64 KiB fit.
    const r = sftkitLimited(64, ['data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(dir, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '256', '--output_file', records]);
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stderr, /\.records\.tmp-\d+-[0-9a-f]+\/input_ids-00000\.bin: cannot write: the file is larger than this process may write \(EFBIG\)/);
    assert.deepEqual(readdirSync(dir), ['corpus.txt']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
