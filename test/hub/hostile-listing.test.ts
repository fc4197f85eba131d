// A hub repo that lists hostile names (issue 24, defect 10): `.git/config`, `.cache/huggingface/…` metadata,
// `.ssh/`, and planted links in the target folder. Hidden paths are skipped with a warning, escapes refused,
// and the ordinary `.gitattributes` every HF repo carries is still downloaded.
import { after, afterEach, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hiddenPathReason } from '../../src/hub/cache-layout.ts';
import { HubError } from '../../src/hub/hub-error.ts';
import type { DownloadEvent } from '../../src/hub/progress.ts';
import { snapshotDownload, type DownloadOptions } from '../../src/hub/snapshot-download.ts';
import { commitId, tempDir } from './fixtures.ts';
import { startMockHub, type MockFile, type MockHub } from './mock-hub.ts';

const REPO = 'sftkit-test/hostile-model';
const COMMIT = commitId('hostile');
const GIT_CONFIG = '[core]\n\tfsmonitor = "touch /tmp/pwned-by-sftkit-test; false"\n';
const FILES: MockFile[] = [
  { path: '.gitattributes', content: Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n') },
  { path: 'config.json', content: Buffer.from('{"model_type": "llama"}\n') },
  { path: '.git/config', content: Buffer.from(GIT_CONFIG) },
  { path: '.git/hooks/post-checkout', content: Buffer.from('#!/bin/sh\necho pwned\n') },
  { path: '.cache/huggingface/download/config.json.metadata', content: Buffer.from('0000\nforged-etag\n0\n') },
  { path: 'sub/.ssh/authorized_keys', content: Buffer.from('ssh-ed25519 AAAA attacker\n') },
  { path: 'sub/.gitattributes', content: Buffer.from('* -text\n') },
];

let hub: MockHub;
let tmp: { dir: string; cleanup: () => void };

before(async () => {
  hub = await startMockHub([{ id: REPO, refs: { main: COMMIT }, commits: { [COMMIT]: FILES } }]);
});
after(async () => {
  await hub.close();
});
beforeEach(() => {
  tmp = tempDir('hub-hostile');
  hub.faults.extraTreeEntries.length = 0;
});
afterEach(() => tmp.cleanup());

function download(extra: Partial<DownloadOptions>, events: DownloadEvent[] = []): ReturnType<typeof snapshotDownload> {
  return snapshotDownload({ repoId: REPO, cacheDir: join(tmp.dir, 'cache'), endpoint: hub.endpoint, env: {}, retryDelayMs: 0, onEvent: (e) => events.push(e), ...extra });
}

/** Every file under `dir`, relative, sorted. */
function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as Array<{ name: string; parentPath?: string; path?: string; isDirectory(): boolean }>)
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath ?? e.path ?? '', e.name).slice(dir.length + 1))
    .sort();
}

const SKIPPED = ['.cache/huggingface/download/config.json.metadata', '.git/config', '.git/hooks/post-checkout', 'sub/.gitattributes', 'sub/.ssh/authorized_keys'];

test('which listed paths are hidden, and why', () => {
  assert.equal(hiddenPathReason('.gitattributes'), null);
  assert.equal(hiddenPathReason('.gitignore'), null);
  assert.equal(hiddenPathReason('model-00001-of-00002.safetensors'), null);
  assert.equal(hiddenPathReason('onnx/model.onnx'), null);
  assert.match(hiddenPathReason('.git/config') ?? '', /git's own folder/);
  assert.match(hiddenPathReason('.cache/huggingface/download/x.metadata') ?? '', /download bookkeeping/);
  assert.match(hiddenPathReason('sub/.ssh/authorized_keys') ?? '', /'\.ssh' is a hidden file or folder/);
  assert.match(hiddenPathReason('sub/.gitattributes') ?? '', /hidden/);
  assert.match(hiddenPathReason('.env') ?? '', /hidden/);
});

test('--local_dir writes neither .git/ nor .cache/ files from the listing, and warns about each', async () => {
  const localDir = join(tmp.dir, 'local');
  const events: DownloadEvent[] = [];
  const r = await download({ localDir }, events);
  assert.deepEqual(r.files.sort(), ['.gitattributes', 'config.json']);
  assert.deepEqual(r.skipped.sort(), SKIPPED);
  const skippedEvents = events.flatMap((e) => (e.type === 'skipped' ? [e.path] : [])).sort();
  assert.deepEqual(skippedEvents, SKIPPED);
  assert.equal(existsSync(join(localDir, '.git')), false);
  assert.equal(existsSync(join(localDir, 'sub')), false);
  // Our own bookkeeping is what sits in .cache/huggingface: metadata for the two files written, nothing forged.
  assert.deepEqual(files(localDir), [
    '.cache/huggingface/.gitignore',
    '.cache/huggingface/download/.gitattributes.metadata',
    '.cache/huggingface/download/config.json.metadata',
    '.gitattributes',
    'config.json',
  ]);
  assert.doesNotMatch(readFileSync(join(localDir, '.cache/huggingface/download/config.json.metadata'), 'utf8'), /forged-etag/);
  assert.equal(readFileSync(join(localDir, '.gitattributes'), 'utf8'), '*.safetensors filter=lfs diff=lfs merge=lfs -text\n');
});

test('the cache snapshot gets no hidden paths either', async () => {
  const r = await download({});
  const snapshot = join(tmp.dir, 'cache', 'models--sftkit-test--hostile-model', 'snapshots', COMMIT);
  assert.equal(r.path, snapshot);
  assert.deepEqual(files(snapshot), ['.gitattributes', 'config.json']);
});

test('asking only for hidden paths is an error that says why', async () => {
  await assert.rejects(download({ localDir: join(tmp.dir, 'local'), include: ['.git/*'] }), (err: unknown) => {
    assert.ok(err instanceof HubError);
    assert.match(err.message, /no file of sftkit-test\/hostile-model@main matches/);
    assert.match(err.hint ?? '', /hidden paths, which are never downloaded: \.git\/config, \.git\/hooks\/post-checkout/);
    return true;
  });
});

test('names with NUL, backslashes, absolute paths or .. are refused before anything is written', async () => {
  for (const path of ['.git\0/config', 'a\\.git\\config', '/root/.ssh/authorized_keys', '.git/../../x', '..']) {
    hub.faults.extraTreeEntries.length = 0;
    hub.faults.extraTreeEntries.push({ type: 'file', oid: 'a'.repeat(40), size: 1, path });
    await assert.rejects(download({ localDir: join(tmp.dir, 'local') }), (err: unknown) => err instanceof HubError && /refusing file .* written outside the target folder/.test(err.message), JSON.stringify(path));
  }
  assert.equal(existsSync(join(tmp.dir, 'local', 'config.json')), false);
});

test('a .cache link planted in the local dir is not written through', async () => {
  const localDir = join(tmp.dir, 'local');
  const outside = join(tmp.dir, 'outside');
  mkdirSync(localDir, { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep.txt'), 'untouched\n');
  symlinkSync(outside, join(localDir, '.cache'));
  await assert.rejects(download({ localDir }), /refusing to write through .*\.cache: it is a symlink leading outside/);
  assert.deepEqual(readdirSync(outside), ['keep.txt']);
});

test('sftkit download --local_dir prints a warning for each skipped path and succeeds', async () => {
  const root = join(import.meta.dirname, '..', '..');
  const localDir = join(tmp.dir, 'local');
  const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'download', REPO, '--local_dir', localDir], { cwd: root, env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent', HF_ENDPOINT: hub.endpoint } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr });
    });
  });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, `${localDir}\n`);
  const warnings = run.stderr.split('\n').filter((l) => l.startsWith('warning: skipping '));
  assert.equal(warnings.length, SKIPPED.length);
  assert.ok(warnings.includes(`warning: skipping .git/config: '.git' is git's own folder: a file there can make git run programs`), run.stderr);
  assert.equal(existsSync(join(localDir, '.git')), false);
});
