// A tokenizer.json whose post_processor breaks the tokenizers library while encoding (issue 24, defect 12): the
// library throws a bare TypeError; sftkit turns it into a FormatError naming the file. Loading encodes and decodes
// a probe text, so the error shows when the file is loaded rather than at the first real encode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const GPT2 = join(import.meta.dirname, '..', '..', 'node_modules', '@lenml', 'tokenizer-gpt2', 'models', 'tokenizer.json');

test('a TypeError from the tokenizers library while encoding is a FormatError naming tokenizer.json, at load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-tokjson-'));
  try {
    const json = JSON.parse(readFileSync(GPT2, 'utf8')) as Record<string, unknown>;
    json['post_processor'] = { type: 'TemplateProcessing' };
    const path = join(dir, 'tokenizer.json');
    writeFileSync(path, JSON.stringify(json));
    assert.throws(() => Tokenizer.fromTokenizerJson(path), (err: unknown) => {
      assert.ok(err instanceof FormatError, String(err));
      assert.equal(err.message, `${path}: cannot build the tokenizer: type is not iterable`);
      assert.equal(err.where, path);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
