// Small repos the mock hub serves in the hub tests: a public model with two revisions and a private one.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MockFile, MockRepo } from './mock-hub.ts';

/** Deterministic pseudo-random bytes (an LCG), so sizes and hashes are the same on every run. */
export function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export function commitId(name: string): string {
  return createHash('sha1').update(name).digest('hex');
}

export const REPO = 'sftkit-test/tiny-model';
export const MAIN = commitId('main-commit');
export const V2 = commitId('v2-commit');

const config = Buffer.from('{"model_type": "llama", "hidden_size": 8}\n');
const configV2 = Buffer.from('{"model_type": "llama", "hidden_size": 16}\n');
const weights = bytes(300_000, 7);

export const MAIN_FILES: MockFile[] = [
  { path: 'README.md', content: Buffer.from('# tiny model\n') },
  { path: 'config.json', content: config },
  { path: 'tokenizer.json', content: Buffer.from('{"version": "1.0"}\n') },
  { path: 'tokenizer_config.json', content: Buffer.from('{"bos_token": "<s>"}\n') },
  { path: 'model.safetensors', content: weights, lfs: true },
  { path: 'sub/extra.bin', content: bytes(2000, 3), lfs: true },
  { path: 'sub/notes.txt', content: Buffer.from('nested file\n') },
];

export const V2_FILES: MockFile[] = [
  { path: 'README.md', content: Buffer.from('# tiny model\n') },
  { path: 'config.json', content: configV2 },
  { path: 'model.safetensors', content: weights, lfs: true },
];

export const PRIVATE = 'sftkit-test/private-model';
export const PRIVATE_COMMIT = commitId('private');
export const GOOD_TOKEN = 'hf_good_token';
export const GATED_TOKEN = 'hf_not_granted';
export const PRIVATE_FILES: MockFile[] = [{ path: 'config.json', content: Buffer.from('{"secret": true}\n') }];

export function repos(): MockRepo[] {
  return [
    { id: REPO, refs: { main: MAIN, v2: V2 }, commits: { [MAIN]: MAIN_FILES, [V2]: V2_FILES } },
    { id: PRIVATE, refs: { main: PRIVATE_COMMIT }, commits: { [PRIVATE_COMMIT]: PRIVATE_FILES }, token: GOOD_TOKEN, gatedToken: GATED_TOKEN },
  ];
}

export function fileOf(files: MockFile[], path: string): MockFile {
  const f = files.find((x) => x.path === path);
  if (f === undefined) throw new Error(`no fixture file ${path}`);
  return f;
}

/** A fresh temp folder and its removal. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `sftkit-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
