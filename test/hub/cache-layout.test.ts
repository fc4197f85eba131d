// Names that reach the disk: repo ids, revisions, server file names, etags and commits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkBlobEtag, checkCommitHash, checkRepoFilePath, refPath, repoCacheFolder, validateRepoId, validateRevision } from '../../src/hub/cache-layout.ts';

test('repo ids as huggingface_hub validates them, and their cache folders', () => {
  for (const id of ['gpt2', 'openai-community/gpt2', 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', 'a_b/c.d']) assert.doesNotThrow(() => validateRepoId(id), id);
  for (const id of ['', 'a/b/c', '../x', 'a--b/c', 'a/b..c', '-a/b', 'a/b.', '/abs', 'a b']) assert.throws(() => validateRepoId(id), /is not a valid repo id/, id);
  assert.equal(repoCacheFolder('/c', 'openai-community/gpt2'), '/c/models--openai-community--gpt2');
  assert.equal(repoCacheFolder('/c', 'gpt2'), '/c/models--gpt2');
});

test('revisions stay under refs/', () => {
  assert.equal(refPath('/r', 'refs/pr/1'), '/r/refs/refs/pr/1');
  for (const rev of ['main', 'v1.0', 'refs/pr/1']) assert.doesNotThrow(() => validateRevision(rev));
  for (const rev of ['', '../x', 'a/../../b', 'a//b', 'a\\b']) assert.throws(() => validateRevision(rev), /is not a valid revision/, rev);
});

test('server-given names are refused when they could escape', () => {
  for (const p of ['config.json', 'a/b/c.bin', '.gitattributes', 'a..b', '...']) assert.equal(checkRepoFilePath(p, 'r'), p);
  for (const p of ['', '/etc/passwd', '../x', 'a/../../x', 'a/./b', './a', 'a//b', 'a/', 'a\\b', 'C:x', 'c:/x', 'a\0b', 'a\nb']) {
    assert.throws(() => checkRepoFilePath(p, 'r'), /refusing file/, JSON.stringify(p));
  }
  assert.throws(() => checkBlobEtag('../../x', 'r'), /invalid etag/);
  assert.throws(() => checkBlobEtag('A'.repeat(40), 'r'), /invalid etag/);
  assert.equal(checkBlobEtag('a'.repeat(64), 'r'), 'a'.repeat(64));
  assert.throws(() => checkCommitHash('main', 'r'), /invalid commit id/);
});
