// The tokenizer identity contract (DESIGN.md): vocabulary, normalizer and special ids, not where the tokenizer was
// loaded from nor its add_bos/add_eos defaults; records made under the earlier identity (v1) stay valid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateRecordsFor, type RecordsManifest } from '../../src/data/records.ts';
import { DataError } from '../../src/errors.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BASE = join(ROOT, 'assets', 'demo', 'base-model');
const BPE = join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'bpe.model');

function folder(dir: string, name: string, config: Record<string, unknown> | null): string {
  const d = join(dir, name);
  mkdirSync(d);
  copyFileSync(BPE, join(d, 'tokenizer.model'));
  if (config !== null) writeFileSync(join(d, 'tokenizer_config.json'), JSON.stringify(config));
  return d;
}

test('add_bos_token and add_eos_token do not change the identity; the special ids do', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-identity-'));
  try {
    const bare = Tokenizer.fromSentencePiece(join(folder(dir, 'bare', null), 'tokenizer.model'));
    const llama2 = Tokenizer.fromDir(folder(dir, 'llama2', { add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }));
    const eos = Tokenizer.fromDir(folder(dir, 'eos', { add_bos_token: false, add_eos_token: true }));
    assert.equal(llama2.addBos, true);
    assert.equal(bare.addBos, false);
    assert.equal(llama2.identity, bare.identity);
    assert.equal(eos.identity, bare.identity);
    // A pad token named by the config is a special id of the tokenizer: another identity.
    const padded = Tokenizer.fromDir(folder(dir, 'padded', { pad_token: '<unk>' }));
    assert.equal(padded.padId, 0);
    assert.equal(bare.padId, null);
    assert.notEqual(padded.identity, bare.identity);
    // --model_file reads the tokenizer_config.json beside the file, so it loads the folder's tokenizer.
    const fromFile = Tokenizer.fromModelFile(join(dir, 'padded', 'tokenizer.model'));
    assert.equal(fromFile.padId, 0);
    assert.equal(fromFile.identity, padded.identity);
    assert.equal(Tokenizer.fromModelFile(join(dir, 'bare', 'tokenizer.model')).identity, bare.identity);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('records made under the v1 identity (which hashed add_bos/add_eos) are still accepted', () => {
  const tok = Tokenizer.fromDir(BASE);
  // What sftkit wrote into records before the identity dropped add_bos: from the folder (add_bos_token true)
  // and from `--model_file tokenizer.model` (no config read, add_bos false).
  const v1Folder = '1c6539ddea8d5590011072c5acc06cc24a5e281572aff4169a5f9182df903318';
  const v1ModelFile = 'c0a42788efa8b11928589ee959342ede037982c0daa644b48d7cffcb9426b8a6';
  assert.ok(tok.earlierIdentities().includes(v1Folder));
  assert.ok(tok.earlierIdentities().includes(v1ModelFile));
  assert.equal(tok.earlierIdentities().length, 4);
  const manifest = (identity: string): RecordsManifest =>
    ({ tokenizer: { identity, kind: 'sentencepiece', vocab_size: 4096, bos_id: 1, eos_id: 2 }, seq_length: 8, pad_id: 0, report: { max_token_id: 100 } }) as unknown as RecordsManifest;
  const setup = { tokenizerIdentity: tok.identity, earlierIdentities: () => tok.earlierIdentities(), seqLength: 8, vocabSize: 4096 };
  for (const id of [tok.identity, v1Folder, v1ModelFile]) validateRecordsFor(manifest(id), setup);
  assert.throws(() => validateRecordsFor(manifest('0'.repeat(64)), setup), (e: unknown) => e instanceof DataError && /tokenized with another tokenizer/.test(e.message));
});
