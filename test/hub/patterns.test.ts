// --include/--exclude globs: huggingface_hub's allow/ignore semantics ('*' crosses '/', 'dir/' means its contents).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { globToRegExp, makeFileFilter } from '../../src/hub/patterns.ts';

const FILES = ['config.json', 'model.safetensors', 'model-00001-of-00002.safetensors', 'pytorch_model.bin', 'tokenizer.json', 'sub/a.json', 'sub/deep/b.bin', 'original/params.json', '.gitattributes', 'a[1].txt'];

test('glob table', () => {
  const rows: Array<[string, string[]]> = [
    ['*.json', ['config.json', 'tokenizer.json', 'sub/a.json', 'original/params.json']],
    ['*.safetensors', ['model.safetensors', 'model-00001-of-00002.safetensors']],
    ['model-?????-of-?????.safetensors', ['model-00001-of-00002.safetensors']],
    ['sub/', ['sub/a.json', 'sub/deep/b.bin']],
    ['sub/*', ['sub/a.json', 'sub/deep/b.bin']],
    ['*/*.json', ['sub/a.json', 'original/params.json']],
    ['[ct]*.json', ['config.json', 'tokenizer.json']],
    ['[!ct]*.json', ['sub/a.json', 'original/params.json']],
    ['a[[]1].txt', ['a[1].txt']],
    ['.*', ['.gitattributes']],
    ['config.json', ['config.json']],
    ['CONFIG.json', []],
  ];
  for (const [glob, expected] of rows) {
    const re = globToRegExp(glob);
    assert.deepEqual(FILES.filter((f) => re.test(f)), expected, glob);
  }
});

test('include keeps, exclude drops, exclude wins', () => {
  const keep = makeFileFilter({ include: ['*.json', '*.safetensors'], exclude: ['original/*', 'model-*'] });
  assert.deepEqual(FILES.filter(keep), ['config.json', 'model.safetensors', 'tokenizer.json', 'sub/a.json']);
  assert.deepEqual(FILES.filter(makeFileFilter({})), FILES);
  assert.deepEqual(FILES.filter(makeFileFilter({ exclude: ['*.bin', '*.safetensors'] })), ['config.json', 'tokenizer.json', 'sub/a.json', 'original/params.json', '.gitattributes', 'a[1].txt']);
});
