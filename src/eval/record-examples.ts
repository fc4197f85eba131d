// Generation examples from QA token records: the prompt is a row's tokens before its first trained label,
// the reference is the trained reply that follows (without its EOS), decoded with the tokenizer.
import type { RowStore } from '../data/row-store.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import type { GenerationExample } from './generation-eval.ts';

export function examplesFromRecords(records: RowStore, tokenizer: Tokenizer, limit = Infinity): GenerationExample[] {
  const out: GenerationExample[] = [];
  const L = records.rowLength;
  const ids = new Int32Array(L);
  const labels = new Int32Array(L);
  for (let r = 0; r < records.rows && out.length < limit; r++) {
    records.readInto(r, { inputIds: ids, labels });
    const first = labels.findIndex((l) => l !== -100);
    if (first <= 0) continue; // nothing trained, or no prompt
    let end = first;
    while (end < L && labels[end] !== -100) end++;
    const reply = Array.from(ids.subarray(first, end)).filter((id) => id !== tokenizer.eosId);
    out.push({ prompt: Array.from(ids.subarray(0, first)), references: tokenizer.decode(reply, { skipSpecial: true }).trim() });
  }
  return out;
}
