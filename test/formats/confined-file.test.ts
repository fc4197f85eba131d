// Model, checkpoint and hub-cache folders are read without following a symlink out of them (issue 24, defects 7
// and 9): a planted link to /etc/passwd is refused, links inside the folder (HF cache blobs) are fine, and a
// folder standing where a weight file should be is an error naming it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { convertHfToCheckpoint } from '../../src/convert/hf-to-checkpoint.ts';
import { confinementRoot, readConfinedText } from '../../src/formats/confined-file.ts';
import { readManifest, resolveCheckpointDir } from '../../src/formats/checkpoint-dir.ts';
import { openWeightSource } from '../../src/formats/weight-source.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'weights', 'llama-st-sharded');
const SPM = join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'bpe.model');

function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-confined-'));
  return Promise.resolve(fn(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function modelFolder(dir: string): string {
  const model = join(dir, 'model');
  cpSync(FIXTURE, model, { recursive: true });
  return model;
}

test('convert refuses a tokenizer file that links to /etc/passwd and writes nothing', () =>
  withDir(async (dir) => {
    const model = modelFolder(dir);
    rmSync(join(model, 'special_tokens_map.json'));
    symlinkSync('/etc/passwd', join(model, 'special_tokens_map.json'));
    // The output's parents do not exist yet: the failed conversion takes away the folders it made for it.
    const out = join(dir, 'new', 'deeper', 'out');
    await assert.rejects(convertHfToCheckpoint({ inputPath: model, outputPath: out }), (err: unknown) => {
      assert.ok(err instanceof FormatError);
      assert.match(err.message, /special_tokens_map\.json: refusing to read it: it is a symlink leading outside .* \(to \/etc\/passwd\)/);
      assert.equal(err.where, join(model, 'special_tokens_map.json'));
      return true;
    });
    assert.equal(existsSync(join(dir, 'new')), false);
  }));

test('weights, the shard index and config.json that link out of the folder are refused', () =>
  withDir(async (dir) => {
    const outside = join(dir, 'elsewhere');
    mkdirSync(outside);
    for (const name of ['model-00002-of-00003.safetensors', 'model.safetensors.index.json', 'config.json']) {
      const model = modelFolder(dir);
      renameSync(join(model, name), join(outside, name));
      symlinkSync(join(outside, name), join(model, name));
      if (name === 'config.json') {
        await assert.rejects(convertHfToCheckpoint({ inputPath: model, outputPath: join(dir, 'out') }), /config\.json: refusing to read it: it is a symlink leading outside/);
      } else {
        assert.throws(() => openWeightSource(model), (err: unknown) => err instanceof FormatError && err.message.includes(`${name}: refusing to read it`));
      }
      rmSync(model, { recursive: true });
      rmSync(join(outside, name));
    }
  }));

test('a link that stays inside the folder is followed', () =>
  withDir((dir) => {
    const model = modelFolder(dir);
    mkdirSync(join(model, 'store'));
    renameSync(join(model, 'model-00001-of-00003.safetensors'), join(model, 'store', 'shard1'));
    symlinkSync('store/shard1', join(model, 'model-00001-of-00003.safetensors'));
    const source = openWeightSource(model);
    try {
      assert.equal(source.tensors.length, 21);
    } finally {
      source.close();
    }
  }));

test('an HF cache snapshot reads its blobs, but not a link out of the repo folder', () =>
  withDir((dir) => {
    const repo = join(dir, 'hub', 'models--org--tiny');
    const snapshot = join(repo, 'snapshots', 'abc123');
    mkdirSync(snapshot, { recursive: true });
    mkdirSync(join(repo, 'blobs'));
    writeFileSync(join(repo, 'blobs', 'sha1-of-config'), '{"model_type": "llama"}');
    symlinkSync('../../blobs/sha1-of-config', join(snapshot, 'config.json'));
    symlinkSync('/etc/passwd', join(snapshot, 'tokenizer_config.json'));
    assert.equal(confinementRoot(snapshot), repo);
    assert.equal(readConfinedText(join(snapshot, 'config.json')), '{"model_type": "llama"}');
    assert.throws(() => readConfinedText(join(snapshot, 'tokenizer_config.json')), /tokenizer_config\.json: refusing to read it: it is a symlink leading outside .*models--org--tiny/);
    // A folder merely named like a snapshot elsewhere gets no such widening.
    const plain = join(dir, 'plain', 'snapshots', 'abc');
    mkdirSync(plain, { recursive: true });
    assert.equal(confinementRoot(plain), plain);
  }));

test('the tokenizer loaders refuse tokenizer.model and tokenizer_config.json linking out of the folder', () =>
  withDir((dir) => {
    const tok = join(dir, 'tok');
    mkdirSync(tok);
    symlinkSync(SPM, join(tok, 'tokenizer.model'));
    assert.throws(() => Tokenizer.fromDir(tok), /tokenizer\.model: refusing to read it: it is a symlink leading outside/);
    rmSync(join(tok, 'tokenizer.model'));
    cpSync(SPM, join(tok, 'tokenizer.model'));
    writeFileSync(join(dir, 'secret.json'), '{"bos_token": "<s>"}');
    symlinkSync(join(dir, 'secret.json'), join(tok, 'tokenizer_config.json'));
    assert.throws(() => Tokenizer.fromDir(tok), /tokenizer_config\.json: refusing to read it/);
  }));

test('a checkpoint root whose latest is a link to a folder elsewhere is refused', () =>
  withDir((dir) => {
    const root = join(dir, 'checkpoint');
    const elsewhere = join(dir, 'elsewhere', 'x-1_2');
    mkdirSync(root);
    mkdirSync(elsewhere, { recursive: true });
    writeFileSync(join(elsewhere, 'sftkit.json'), '{}');
    symlinkSync(elsewhere, join(root, 'x-1_2'));
    writeFileSync(join(root, 'meta.json'), JSON.stringify({ latest: 'x-1_2', checkpoints: ['x-1_2'] }));
    assert.throws(() => resolveCheckpointDir(root), /x-1_2: refusing to read it: it is a symlink leading outside/);
    const ckpt = join(dir, 'ckpt');
    mkdirSync(ckpt);
    symlinkSync('/etc/passwd', join(ckpt, 'sftkit.json'));
    assert.throws(() => readManifest(ckpt), /sftkit\.json: cannot read \(refusing to read it: it is a symlink leading outside/);
  }));

test('a folder where a weight file should be is an error naming it, not a bare EISDIR', () =>
  withDir((dir) => {
    const model = join(dir, 'model');
    mkdirSync(join(model, 'model.safetensors'), { recursive: true });
    cpSync(join(FIXTURE, 'config.json'), join(model, 'config.json'));
    assert.throws(() => openWeightSource(model), (err: unknown) => {
      assert.ok(err instanceof FormatError, String(err));
      assert.equal(err.message, `${join(model, 'model.safetensors')}: is a directory or a device, not a file`);
      return true;
    });
    // The same for a shard named by an index.
    mkdirSync(join(dir, 's'));
    const sharded = modelFolder(join(dir, 's'));
    rmSync(join(sharded, 'model-00003-of-00003.safetensors'));
    mkdirSync(join(sharded, 'model-00003-of-00003.safetensors'));
    assert.throws(() => openWeightSource(sharded), /model-00003-of-00003\.safetensors: is a directory or a device, not a file/);
  }));
