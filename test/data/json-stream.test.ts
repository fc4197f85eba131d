// The streaming JSON / JSONL reader: the same records as parsing the whole file, whatever the chunk size (records
// cut across reads anywhere, in the middle of UTF-8 characters and escapes), and errors naming file:line:column.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataError } from '../../src/errors.ts';
import { readJsonRecords, streamJsonRecords } from '../../src/data/json-input.ts';

const dir = mkdtempSync(join(tmpdir(), 'sftkit-json-stream-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (text: string | Uint8Array): string => {
  const path = join(dir, `f${n++}.json`);
  writeFileSync(path, text);
  return path;
};
const values = (path: string, chunkBytes?: number): unknown[] => [...streamJsonRecords(path, chunkBytes === undefined ? {} : { chunkBytes })].map((r) => r.value);

const SAMPLES: unknown[] = [
  { conversations: [{ from: 'human', value: 'Hi, "quoted" \\ back\\slash ] } [ {' }, { from: 'gpt', value: 'é 日本 😀 \u2028' }] },
  [1, [2, [3, {}]], []],
  'a string with , and ] inside',
  -1.5e-7, true, null, {},
];

test('arrays and JSONL: every chunk size gives the records of a whole-file parse', () => {
  const array = file(`\ufeff  \n[${SAMPLES.map((v) => JSON.stringify(v, null, 2)).join(' ,\n')}]\n \n`);
  const jsonl = file(`\n${SAMPLES.map((v) => JSON.stringify(v)).join('\r\n')}\n\n`);
  for (const chunk of [1, 2, 3, 5, 7, 64, 1 << 20]) {
    assert.deepEqual(values(array, chunk), SAMPLES, `array, chunk ${chunk}`);
    assert.deepEqual(values(jsonl, chunk), SAMPLES, `jsonl, chunk ${chunk}`);
  }
  const recs = readJsonRecords(jsonl);
  assert.deepEqual(recs.map((r) => r.where), SAMPLES.map((_, i) => `${jsonl}:${i + 2}`));
  assert.deepEqual(readJsonRecords(array).map((r) => r.where), SAMPLES.map((_, i) => `${array}[${i}]`));
  assert.deepEqual(values(file('[]')), []);
  assert.deepEqual(values(file(' \n ')), []);
  assert.deepEqual(values(file('')), []);
  assert.deepEqual(values(file('\ufeff')), []);
});

test('malformed input: DataErrors naming file:line:column', () => {
  const cases: Array<[string, RegExp]> = [
    ['[1, 2', /:1:6: invalid JSON: unexpected end of the file/],
    ['[1,\n2,]', /:2:3: invalid JSON: unexpected "\]"/],
    ['[1,,2]', /:1:4: invalid JSON: unexpected ","/],
    ['[1] x', /:1:5: invalid JSON: unexpected text after/],
    ['[\n  {"a": 1},\n  {"a": tru}\n]', /:3:13: invalid JSON/],
    ['{"a": 1}\n{"a": }\n', /:2:8: invalid JSON/],
    ['[1 2]', /:1:4: invalid JSON/],
    ['[{"a": [1}]', /:1:\d+: invalid JSON/],
  ];
  for (const [text, re] of cases) {
    const path = file(text);
    for (const chunk of [1, 3, 1 << 20]) {
      assert.throws(() => values(path, chunk), (e: unknown) => e instanceof DataError && re.test(e.message) && e.message.startsWith(path), `${JSON.stringify(text)} chunk ${chunk}`);
    }
  }
  assert.throws(() => values(join(dir, 'missing.jsonl')), /missing\.jsonl: cannot read \(ENOENT\)/);
});

test('a consumer that stops early leaves no file open', () => {
  const path = file(Array.from({ length: 100 }, (_, i) => JSON.stringify({ i })).join('\n'));
  for (let k = 0; k < 2000; k++) {
    for (const rec of streamJsonRecords(path, { chunkBytes: 16 })) if (rec.index === 3) break;
  }
});
