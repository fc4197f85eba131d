// Regenerates test/fixtures/data/conversations.parquet and text.parquet, the Parquet inputs of the preprocess tests,
// with hyparquet-writer (not a dependency of sftkit: install it outside the project first).
// Run from the repository root:
//   npm install --no-save --prefix /tmp/pqw hyparquet-writer@0.17.0
//   NODE_PATH=/tmp/pqw/node_modules node scripts/reference/parquet_fixtures.mjs
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { parquetWriteBuffer } = await import(require.resolve('hyparquet-writer', { paths: (process.env.NODE_PATH ?? '').split(':') }));

const write = (name, buffer) => {
  const path = `test/fixtures/data/${name}`;
  writeFileSync(`${path}.tmp`, Buffer.from(buffer));
  renameSync(`${path}.tmp`, path);
  console.log(`wrote ${path} (${buffer.byteLength} bytes)`);
};

// The conversations of conversations.jsonl as OpenAI-style `messages` (a list of {role, content} structs, as HF
// chat datasets store them), two rows per row group so that the reader crosses row groups.
const messages = readFileSync('test/fixtures/data/conversations.jsonl', 'utf8').trim().split('\n').map((l) => {
  const rec = JSON.parse(l);
  if (rec.messages) return rec.messages;
  const role = { human: 'user', gpt: 'assistant', system: 'system' };
  return [...(rec.system ? [{ role: 'system', content: rec.system }] : []), ...rec.conversations.map((t) => ({ role: role[t.from], content: t.value }))];
});
write('conversations.parquet', parquetWriteBuffer({
  columnData: [{ name: 'messages', data: messages }, { name: 'id', data: messages.map((_, i) => BigInt(i)) }],
  schema: [
    { name: 'root', num_children: 2 },
    { name: 'messages', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
    { name: 'role', repetition_type: 'OPTIONAL', type: 'BYTE_ARRAY', converted_type: 'UTF8' },
    { name: 'content', repetition_type: 'OPTIONAL', type: 'BYTE_ARRAY', converted_type: 'UTF8' },
    { name: 'id', repetition_type: 'REQUIRED', type: 'INT64' },
  ],
  rowGroupSize: 2,
}));

// Documents for text pretraining data: a `text` column.
const texts = [
  'Fellow citizens, the state of the Union is strong.\n\nWe meet in a time of change.',
  'Our economy grew by three percent. Unemployment fell.',
  'In the coming year we will build roads, bridges and schools.',
  'Thank you, and may God bless America.',
  'The budget is balanced for the first time in a generation.',
];
write('text.parquet', parquetWriteBuffer({ columnData: [{ name: 'text', data: texts, type: 'STRING' }], rowGroupSize: 2 }));
