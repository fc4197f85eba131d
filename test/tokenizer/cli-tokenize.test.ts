// `sftkit tokenize` end to end: lines of a file (raw bytes, invalid UTF-8 included) give spm_encode's ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'tokenizer');

function sftkit(args: string[], input?: string | Buffer): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), ...args], { cwd: ROOT, input, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('tokenize --model_file --input: one JSON array of spm_encode ids per line', () => {
  const rows = gunzipSync(readFileSync(join(FIXTURES, 'spm-tables.jsonl.gz')))
    .toString('utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { text?: string; bytes?: string; bpe: { ids: number[] } })
    .filter((_, i, all) => i % 10 === 0 || all[i]!.bytes !== undefined);
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-cli-'));
  try {
    const file = join(dir, 'lines.txt');
    writeFileSync(file, Buffer.concat(rows.map((r) => Buffer.concat([r.text !== undefined ? Buffer.from(r.text) : Buffer.from(r.bytes!, 'base64'), Buffer.from('\n')]))));
    const r = sftkit(['tokenize', '--model_file', join(FIXTURES, 'bpe.model'), '--input', file, '--add_bos', '--add_eos']);
    assert.equal(r.status, 0, r.stderr);
    const got = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as number[]);
    assert.deepEqual(got, rows.map((row) => [1, ...row.bpe.ids, 2]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tokenize --tokenizer --pieces from stdin: special-token text stays text', () => {
  const r = sftkit(['tokenize', '--tokenizer', join(ROOT, 'node_modules', '@lenml', 'tokenizer-gpt2', 'models'), '--pieces'], 'Hello world\n<|endoftext|>');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l) as string[]), [
    ['Hello', '\u0120world'],
    ['<', '|', 'end', 'of', 'text', '|', '>'],
  ]);
});

test('tokenize refuses missing or conflicting tokenizer flags and bad model files', () => {
  const none = sftkit(['tokenize'], '');
  assert.equal(none.status, 1);
  assert.match(none.stderr, /give exactly one of --model_file/);
  const bad = sftkit(['tokenize', '--model_file', join(ROOT, 'package.json')], 'x\n');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /package\.json: .*protobuf/);
});
