// Test helper: the tiny weight fixtures of test/fixtures/weights/ copied with a byte-level BPE tokenizer.json
// (64 ids: the fixtures' vocab_size), so they can be exported to GGUF.
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'weights');

/** A byte-level BPE tokenizer.json for the 64-token fixtures, with the given pre-tokenizer. */
/** `full`: every id below 64 is a real token (no [PAD] fillers), so no generated id is an unused one. */
export function tokenizerJson(pre: unknown, endOfText = false, full = false): string {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  'abcdefghijklmnopqrstuvwxyz'.split('').forEach((c, i) => (vocab[c] = 3 + i));
  vocab['Ġ'] = 29;
  vocab['he'] = 30;
  vocab['ll'] = 31;
  vocab['Ġt'] = 32;
  if (full) {
    'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123'.split('').forEach((c, i) => (vocab[c] = 33 + i));
    if (!endOfText) vocab['4'] = 63;
  }
  const special = (id: number, content: string): unknown => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return JSON.stringify({
    version: '1.0',
    truncation: null,
    padding: null,
    // GPT-2's config names id 63 as BOS and EOS.
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>'), ...(endOfText ? [special(63, '<|endoftext|>')] : [])],
    normalizer: null,
    pre_tokenizer: pre,
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: ['h e', 'l l', 'Ġ t'] },
  });
}

export const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
export const splitThenBytes = (regex: string): unknown => ({
  type: 'Sequence',
  pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, { ...BYTE_LEVEL, use_regex: false }],
});

export function withTokenizer(fixture: string, pre: unknown, tmp: string, full = false): string {
  const dir = join(tmp, fixture);
  cpSync(join(FIXTURES, fixture), dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), tokenizerJson(pre, fixture.startsWith('gpt2'), full));
  return dir;
}

