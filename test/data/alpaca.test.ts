// sftkit data alpaca: MindFormers' prompts and output bytes (golden from scripts/reference/data_golden.py), input kinds, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertAlpacaFile } from '../../src/data/index.ts';
import { DataError, ConfigError } from '../../src/errors.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'data');
const golden = JSON.parse(readFileSync(join(FIX, 'golden_vicuna.json'), 'utf8')) as { alpaca_converted: string };
const tmp = (): string => mkdtempSync(join(tmpdir(), 'sftkit-data-'));

test('alpaca conversion writes exactly what the Python reference writes', () => {
  const out = join(tmp(), 'conv.json');
  const r = convertAlpacaFile(join(FIX, 'alpaca_small.json'), out);
  assert.equal(readFileSync(out, 'utf8'), golden.alpaca_converted);
  assert.deepEqual(r, { samples: 8, withInput: 3 });
  const conv = JSON.parse(readFileSync(out, 'utf8')) as Array<{ id: string; conversations: Array<{ from: string; value: string }> }>;
  // Field values go in literally: no format fields, no replacement patterns.
  assert.match(conv[3]?.conversations[0]?.value ?? '', /### Instruction:\nExplain what \{input\} means in a Python format string and what \$& does/);
  assert.equal(conv[3]?.conversations[1]?.value, '{input} is a replacement field; $& inserts the whole match. Both are kept literally here: {instruction} $1 $$.');
  assert.deepEqual(conv.map((c) => c.id), ['1', '2', '3', '4', '5', '6', '7', '8']);
});

test('alpaca conversion reads JSONL and refuses to overwrite without force', () => {
  const dir = tmp();
  const src = join(dir, 'a.jsonl');
  const records = JSON.parse(readFileSync(join(FIX, 'alpaca_small.json'), 'utf8')) as unknown[];
  writeFileSync(src, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const out = join(dir, 'conv.json');
  convertAlpacaFile(src, out);
  assert.equal(readFileSync(out, 'utf8'), golden.alpaca_converted);
  writeFileSync(out, 'keep me');
  assert.throws(() => convertAlpacaFile(src, out), (e: unknown) => e instanceof ConfigError && /already exists/.test(e.message));
  assert.equal(readFileSync(out, 'utf8'), 'keep me');
  convertAlpacaFile(src, out, { force: true });
  assert.equal(readFileSync(out, 'utf8'), golden.alpaca_converted);
});

test('alpaca errors name file:line:column, sample and field', () => {
  const dir = tmp();
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]');
  assert.throws(() => convertAlpacaFile(bad, join(dir, 'o.json')), (e: unknown) => e instanceof DataError && e.message.startsWith(`${bad}:3:`) && /invalid JSON/.test(e.message));
  const badl = join(dir, 'bad.jsonl');
  writeFileSync(badl, '{"instruction": "a", "output": "b"}\n\n{"instruction": "a", "output": }\n');
  assert.throws(() => convertAlpacaFile(badl, join(dir, 'o.json')), (e: unknown) => e instanceof DataError && e.message.startsWith(`${badl}:3:33: invalid JSON`));
  const missing = join(dir, 'missing.json');
  writeFileSync(missing, JSON.stringify([{ instruction: 'a', output: 'b' }, { instruction: 'a' }]));
  assert.throws(() => convertAlpacaFile(missing, join(dir, 'o.json')), (e: unknown) => e instanceof DataError && e.message === `${missing}[1]: field "output" must be a string (it is missing)`);
  const typed = join(dir, 'typed.jsonl');
  writeFileSync(typed, JSON.stringify({ instruction: 'a', input: 3, output: 'b' }));
  assert.throws(() => convertAlpacaFile(typed, join(dir, 'o.json')), (e: unknown) => e instanceof DataError && e.message === `${typed}:1: field "input" must be a string (got number)`);
  assert.equal(existsSync(join(dir, 'o.json')), false);
});
