// snapshotDownload against the mock hub: cache layout, revisions, filters, resume, verification, auth,
// local dirs and offline mode.
import { after, afterEach, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { scanCachedRepo } from '@huggingface/hub';
import { snapshotDownload, type DownloadOptions } from '../../src/hub/snapshot-download.ts';
import { HubError } from '../../src/hub/hub-error.ts';
import type { DownloadEvent } from '../../src/hub/progress.ts';
import { etagOf, sha256, startMockHub, type MockHub } from './mock-hub.ts';
import { GATED_TOKEN, GOOD_TOKEN, MAIN, MAIN_FILES, PRIVATE, PRIVATE_COMMIT, REPO, V2, V2_FILES, fileOf, repos, tempDir } from './fixtures.ts';

let hub: MockHub;
let tmp: { dir: string; cleanup: () => void };
let cacheDir: string;

before(async () => {
  hub = await startMockHub(repos());
});
after(async () => {
  await hub.close();
});
beforeEach(() => {
  tmp = tempDir('hub');
  cacheDir = join(tmp.dir, 'cache');
  hub.requests.length = 0;
  hub.faults.drop.clear();
  hub.faults.corrupt.clear();
  hub.faults.missing.clear();
  hub.faults.ignoreRange.clear();
  hub.faults.extraTreeEntries.length = 0;
  hub.treePageSize = 1000;
});
afterEach(() => tmp.cleanup());

function download(extra: Partial<DownloadOptions> = {}): ReturnType<typeof snapshotDownload> {
  return snapshotDownload({ repoId: REPO, cacheDir, endpoint: hub.endpoint, env: {}, retryDelayMs: 0, ...extra });
}

/** Every entry under `dir` as 'path' or 'path -> link target', sorted. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) out.push(`${relative(dir, p)} -> ${readlinkSync(p)}`);
      else if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

const repoFolder = (): string => join(cacheDir, 'models--sftkit-test--tiny-model');
const resolves = (): string[] => hub.requests.filter((r) => r.path.includes('/resolve/') || r.server === 'cdn').map((r) => `${r.server} ${r.path}`);

test('a full download writes the Python huggingface_hub cache layout, exactly', async () => {
  const events: DownloadEvent[] = [];
  const result = await download({ onEvent: (e) => events.push(e) });
  const snap = join(repoFolder(), 'snapshots', MAIN);
  assert.equal(result.path, snap);
  assert.equal(result.commit, MAIN);
  assert.equal(result.fromCache, false);
  assert.equal(result.downloadedBytes, MAIN_FILES.reduce((s, f) => s + f.content.length, 0));

  const blob = (p: string): string => `blobs/${etagOf(fileOf(MAIN_FILES, p))}`;
  assert.deepEqual(
    tree(repoFolder()),
    [
      ...MAIN_FILES.map((f) => `blobs/${etagOf(f)}`),
      'refs/main',
      `snapshots/${MAIN}/README.md -> ../../${blob('README.md')}`,
      `snapshots/${MAIN}/config.json -> ../../${blob('config.json')}`,
      `snapshots/${MAIN}/model.safetensors -> ../../${blob('model.safetensors')}`,
      `snapshots/${MAIN}/sub/extra.bin -> ../../../${blob('sub/extra.bin')}`,
      `snapshots/${MAIN}/sub/notes.txt -> ../../../${blob('sub/notes.txt')}`,
      `snapshots/${MAIN}/tokenizer.json -> ../../${blob('tokenizer.json')}`,
      `snapshots/${MAIN}/tokenizer_config.json -> ../../${blob('tokenizer_config.json')}`,
    ].sort(),
  );
  // LFS blobs are named by sha256, regular ones by git sha1; refs/main holds the bare commit, no newline.
  assert.ok(existsSync(join(repoFolder(), 'blobs', sha256(fileOf(MAIN_FILES, 'model.safetensors').content))));
  assert.equal(readFileSync(join(repoFolder(), 'refs', 'main'), 'utf8'), MAIN);
  for (const f of MAIN_FILES) assert.deepEqual(readFileSync(join(snap, f.path)), f.content, f.path);

  // The LFS objects came from the CDN, which never saw the token header (there was none) and whose etag was ignored.
  assert.equal(hub.requests.filter((r) => r.server === 'cdn').length, 2);
  const plan = events.find((e) => e.type === 'plan');
  assert.ok(plan && plan.type === 'plan');
  assert.deepEqual(plan.files.map((f) => f.status), MAIN_FILES.map(() => 'download'));
  assert.equal(events.filter((e) => e.type === 'done').length, MAIN_FILES.length);

  // Read back by @huggingface/hub's own cache scanner (a reader of the Python layout).
  const scanned = await scanCachedRepo(repoFolder());
  assert.equal(scanned.id.name, REPO);
  assert.equal(scanned.revisions.length, 1);
  assert.equal(scanned.revisions[0]?.commitOid, MAIN);
  assert.deepEqual(scanned.revisions[0]?.refs, ['main']);
  // That scanner does not descend into snapshot subfolders (Python's does), so it sees the 5 top-level files.
  const top = MAIN_FILES.filter((f) => !f.path.includes('/'));
  assert.deepEqual(
    scanned.revisions[0]?.files.map((f) => [relative(snap, f.path), relative(repoFolder(), f.blob.path), f.blob.size]).sort(),
    top.map((f) => [f.path, `blobs/${etagOf(f)}`, f.content.length]).sort(),
  );

  // Run again: nothing is fetched, only listed.
  hub.requests.length = 0;
  const again = await download();
  assert.equal(again.downloadedBytes, 0);
  assert.deepEqual(resolves(), []);
});

test('the tree listing is followed across pages', async () => {
  hub.treePageSize = 3;
  const result = await download();
  assert.deepEqual(result.files.sort(), MAIN_FILES.map((f) => f.path).sort());
  assert.ok(hub.requests.filter((r) => r.path.includes('/tree/')).length >= 3);
});

test('a revision other than main gets its own snapshot and ref, sharing unchanged blobs', async () => {
  await download();
  hub.requests.length = 0;
  const result = await download({ revision: 'v2' });
  assert.equal(result.commit, V2);
  assert.equal(result.path, join(repoFolder(), 'snapshots', V2));
  assert.equal(readFileSync(join(repoFolder(), 'refs', 'v2'), 'utf8'), V2);
  assert.equal(readFileSync(join(repoFolder(), 'refs', 'main'), 'utf8'), MAIN);
  // Only the changed config.json travelled; README.md and the weights were linked to existing blobs.
  assert.deepEqual(resolves(), [`hub /${REPO}/resolve/${V2}/config.json`]);
  assert.deepEqual(readFileSync(join(result.path, 'config.json')), fileOf(V2_FILES, 'config.json').content);
  assert.equal(readlinkSync(join(result.path, 'model.safetensors')), `../../blobs/${sha256(fileOf(V2_FILES, 'model.safetensors').content)}`);
  assert.deepEqual(readdirSync(join(result.path)).sort(), ['README.md', 'config.json', 'model.safetensors']);
});

test('a commit hash as revision writes no ref', async () => {
  const result = await download({ revision: V2 });
  assert.equal(result.commit, V2);
  assert.equal(existsSync(join(repoFolder(), 'refs')), false);
});

test('an unknown revision is a clear error', async () => {
  await assert.rejects(download({ revision: 'nope' }), (err: unknown) => err instanceof HubError && err.status === 404 && /revision 'nope' not found/.test(err.message));
});

test('include and exclude select files like allow/ignore patterns', async () => {
  const result = await download({ include: ['*.json', 'sub/'], exclude: ['tokenizer*'] });
  assert.deepEqual(result.files.sort(), ['config.json', 'sub/extra.bin', 'sub/notes.txt']);
  assert.deepEqual(tree(result.path).map((l) => l.split(' -> ')[0]), ['config.json', 'sub/extra.bin', 'sub/notes.txt']);
  assert.deepEqual(resolves().filter((r) => r.startsWith('hub')).map((r) => r.split('/').slice(-1)[0]).sort(), ['config.json', 'extra.bin', 'notes.txt']);
  await assert.rejects(download({ include: ['*.gguf'] }), /no file of sftkit-test\/tiny-model@main matches/);
});

test('a dropped connection keeps the partial blob, and the next run resumes it with a Range request', async () => {
  const weights = fileOf(MAIN_FILES, 'model.safetensors');
  const blob = join(repoFolder(), 'blobs', sha256(weights.content));
  hub.faults.drop.set('model.safetensors', { bytes: 100_000, times: 1 });
  await assert.rejects(download({ include: ['model.safetensors'], retries: 0 }), (err: unknown) => {
    assert.ok(err instanceof HubError);
    assert.match(err.message, /download of model.safetensors stopped at \d+ of 300000 bytes/);
    assert.match(err.hint ?? '', /run the same command again to resume/);
    return true;
  });
  const partial = readFileSync(`${blob}.incomplete`);
  assert.ok(partial.length > 0 && partial.length <= 100_000, `partial ${partial.length}`);
  assert.deepEqual(partial, weights.content.subarray(0, partial.length));
  assert.equal(existsSync(blob), false);
  assert.equal(existsSync(join(repoFolder(), 'snapshots', MAIN, 'model.safetensors')), false);
  assert.equal(existsSync(join(repoFolder(), 'refs')), false);

  hub.requests.length = 0;
  const events: DownloadEvent[] = [];
  const result = await download({ include: ['model.safetensors'], onEvent: (e) => events.push(e) });
  const cdn = hub.requests.filter((r) => r.server === 'cdn');
  assert.deepEqual(cdn.map((r) => r.range), [`bytes=${partial.length}-`]);
  assert.equal(result.downloadedBytes, weights.content.length - partial.length);
  assert.deepEqual(events.find((e) => e.type === 'start'), { type: 'start', path: 'model.safetensors', size: 300_000, resumeFrom: partial.length });
  assert.deepEqual(readFileSync(join(result.path, 'model.safetensors')), weights.content);
  assert.equal(existsSync(`${blob}.incomplete`), false);
});

test('within one run, dropped connections are retried from where they stopped', async () => {
  hub.faults.drop.set('model.safetensors', { bytes: 50_000, times: 2 });
  hub.faults.drop.set('config.json', { bytes: 10, times: 1 });
  const retries: string[] = [];
  const result = await download({ include: ['model.safetensors', 'config.json'], onEvent: (e) => e.type === 'retry' && retries.push(`${e.path}#${e.attempt}`) });
  assert.deepEqual(retries.sort(), ['config.json#1', 'model.safetensors#1', 'model.safetensors#2']);
  const ranges = hub.requests.filter((r) => r.server === 'cdn').map((r) => r.range);
  assert.equal(ranges[0], undefined);
  assert.ok(ranges.slice(1).every((r) => r !== undefined && /^bytes=\d+-$/.test(r)), String(ranges));
  for (const p of ['model.safetensors', 'config.json']) assert.deepEqual(readFileSync(join(result.path, p)), fileOf(MAIN_FILES, p).content);
});

test('a corrupt LFS object fails its sha256 check and nothing reaches the snapshot', async () => {
  hub.faults.corrupt.add('model.safetensors');
  const weights = fileOf(MAIN_FILES, 'model.safetensors');
  await assert.rejects(download({ include: ['model.safetensors'] }), (err: unknown) => {
    assert.ok(err instanceof HubError);
    assert.match(err.message, new RegExp(`model.safetensors is corrupt: its sha256 is [0-9a-f]{64}, the hub lists ${sha256(weights.content)}`));
    return true;
  });
  const blob = join(repoFolder(), 'blobs', sha256(weights.content));
  assert.equal(existsSync(blob), false);
  assert.equal(existsSync(`${blob}.incomplete`), false);
  assert.deepEqual(readdirSync(join(repoFolder(), 'snapshots', MAIN)), []);
  assert.equal(existsSync(join(repoFolder(), 'refs')), false);
});

test('a corrupt regular file fails its git sha1 check', async () => {
  hub.faults.corrupt.add('config.json');
  await assert.rejects(download({ include: ['config.json'] }), /config.json is corrupt: its git sha1 is/);
  assert.deepEqual(readdirSync(join(repoFolder(), 'snapshots', MAIN)), []);
});

test('a listed file that resolve answers 404 is an error naming it', async () => {
  hub.faults.missing.add('tokenizer.json');
  await assert.rejects(download({ concurrency: 1 }), (err: unknown) => err instanceof HubError && err.status === 404 && err.message === `tokenizer.json not found in ${REPO} (HTTP 404)`);
  assert.equal(existsSync(join(repoFolder(), 'snapshots', MAIN, 'tokenizer.json')), false);
  assert.equal(existsSync(join(repoFolder(), 'refs', 'main')), false);
});

test('an unknown repo is a 404 with a hint about tokens', async () => {
  await assert.rejects(download({ repoId: 'sftkit-test/nothing' }), (err: unknown) => err instanceof HubError && err.status === 404 && /repository sftkit-test\/nothing not found/.test(err.message));
});

test('a private repo: 401 without a token says so; the token (from HF_TOKEN) opens it and stays off the CDN', async () => {
  await assert.rejects(download({ repoId: PRIVATE }), (err: unknown) => {
    assert.ok(err instanceof HubError);
    assert.equal(err.status, 401);
    assert.match(err.message, /refused access to sftkit-test\/private-model \(HTTP 401\): the repository is private, gated or does not exist/);
    assert.match(err.hint ?? '', /pass --token or set HF_TOKEN/);
    return true;
  });
  await assert.rejects(download({ repoId: PRIVATE, token: 'hf_wrong' }), (err: unknown) => err instanceof HubError && err.status === 401 && /token was rejected/.test(err.hint ?? ''));
  await assert.rejects(download({ repoId: PRIVATE, token: GATED_TOKEN }), (err: unknown) => err instanceof HubError && err.status === 403 && /gated repository/.test(err.message) && /accept its conditions/.test(err.hint ?? ''));

  hub.requests.length = 0;
  const result = await download({ repoId: PRIVATE, env: { HF_TOKEN: GOOD_TOKEN } });
  assert.equal(result.commit, PRIVATE_COMMIT);
  assert.equal(readFileSync(join(result.path, 'config.json'), 'utf8'), '{"secret": true}\n');
  assert.ok(hub.requests.every((r) => r.server === 'hub' && r.authorization === `Bearer ${GOOD_TOKEN}`));

  // LFS redirects go to another origin: the token must not follow them.
  hub.requests.length = 0;
  await download({ include: ['model.safetensors'], token: GOOD_TOKEN });
  const cdn = hub.requests.filter((r) => r.server === 'cdn');
  assert.equal(cdn.length, 1);
  assert.equal(cdn[0]?.authorization, undefined);
  assert.ok(hub.requests.filter((r) => r.server === 'hub').every((r) => r.authorization === `Bearer ${GOOD_TOKEN}`));
});

test('--local_dir writes real files and Python local-dir metadata, and skips them the next time', async () => {
  const localDir = join(tmp.dir, 'local');
  const result = await download({ localDir, include: ['config.json', 'model.safetensors', 'sub/*'] });
  assert.equal(result.path, localDir);
  for (const p of ['config.json', 'model.safetensors', 'sub/extra.bin', 'sub/notes.txt']) {
    assert.ok(lstatSync(join(localDir, p)).isFile(), p);
    assert.deepEqual(readFileSync(join(localDir, p)), fileOf(MAIN_FILES, p).content);
    const [commit, etag, time] = readFileSync(join(localDir, '.cache/huggingface/download', `${p}.metadata`), 'utf8').split('\n');
    assert.equal(commit, MAIN);
    assert.equal(etag, etagOf(fileOf(MAIN_FILES, p)));
    assert.ok(Math.abs(Number(time) - Date.now() / 1000) < 60);
  }
  assert.equal(readFileSync(join(localDir, '.cache/huggingface/.gitignore'), 'utf8'), '*');
  assert.equal(existsSync(cacheDir), false, 'a local-dir download leaves the cache alone');

  hub.requests.length = 0;
  const again = await download({ localDir, include: ['config.json', 'model.safetensors', 'sub/*'] });
  assert.equal(again.downloadedBytes, 0);
  assert.deepEqual(resolves(), []);
});

test('offline mode answers from the cache alone, and refuses what the cache lacks', async () => {
  await assert.rejects(download({ env: { HF_HUB_OFFLINE: '1' } }), (err: unknown) => {
    assert.ok(err instanceof HubError);
    assert.equal(err.message, `${REPO}@main is not in the cache at ${cacheDir}, and HF_HUB_OFFLINE is set`);
    return true;
  });
  assert.equal(hub.requests.length, 0);
  await download({ revision: 'v2' });
  hub.requests.length = 0;
  const result = await download({ revision: 'v2', env: { HF_HUB_OFFLINE: 'true' } });
  assert.deepEqual([result.path, result.commit, result.fromCache], [join(repoFolder(), 'snapshots', V2), V2, true]);
  assert.equal((await download({ revision: V2, offline: true })).commit, V2);
  assert.equal(hub.requests.length, 0);
});

test('an unreachable hub falls back to the cached snapshot of the revision', async () => {
  await download({ include: ['config.json'] });
  const events: DownloadEvent[] = [];
  const result = await download({ endpoint: 'http://127.0.0.1:1', onEvent: (e) => events.push(e) });
  assert.equal(result.fromCache, true);
  assert.equal(result.path, join(repoFolder(), 'snapshots', MAIN));
  assert.equal(events[0]?.type, 'cache-fallback');
  await assert.rejects(download({ endpoint: 'http://127.0.0.1:1', revision: 'v2' }), /could not reach the hub at http:\/\/127.0.0.1:1/);
});

test('file names that escape the target are refused before anything is written', async () => {
  for (const path of ['../evil.txt', '/etc/evil', 'sub/../../evil', 'a\\..\\evil', 'C:/evil', 'ok//x', './x']) {
    hub.faults.extraTreeEntries.length = 0;
    hub.faults.extraTreeEntries.push({ type: 'file', oid: 'a'.repeat(40), size: 1, path });
    await assert.rejects(download(), (err: unknown) => err instanceof HubError && /refusing file .* written outside the target folder/.test(err.message), path);
  }
  assert.equal(existsSync(cacheDir), false);
  assert.equal(existsSync(join(tmp.dir, 'evil.txt')), false);

  // 'config.json' as a folder of another file would write through its symlink into blobs/.
  hub.faults.extraTreeEntries.length = 0;
  hub.faults.extraTreeEntries.push({ type: 'file', oid: 'a'.repeat(40), size: 1, path: 'config.json/x' });
  await assert.rejects(download(), /'config.json' is both a file and the folder of 'config.json\/x'/);

  // An etag is a blob file name: anything but a hex digest is refused.
  hub.faults.extraTreeEntries.length = 0;
  hub.faults.extraTreeEntries.push({ type: 'file', oid: '../../x', size: 1, path: 'x' });
  await assert.rejects(download(), /invalid etag/);
});

test('a symlink planted in the local dir is not written through', async () => {
  const localDir = join(tmp.dir, 'local');
  const outside = join(tmp.dir, 'outside');
  mkdirSync(localDir, { recursive: true });
  mkdirSync(outside);
  symlinkSync(outside, join(localDir, 'sub'));
  await assert.rejects(download({ localDir, include: ['sub/*'] }), /refusing to write through .*sub: it is a symlink leading outside/);
  assert.deepEqual(readdirSync(outside), []);
});

test('a staging file longer than the object is discarded and the file downloaded afresh', async () => {
  const notes = fileOf(MAIN_FILES, 'sub/notes.txt');
  const blob = join(repoFolder(), 'blobs', etagOf(notes));
  mkdirSync(join(repoFolder(), 'blobs'), { recursive: true });
  writeFileSync(`${blob}.incomplete`, Buffer.alloc(notes.content.length + 5));
  const result = await download({ include: ['sub/notes.txt'] });
  assert.deepEqual(readFileSync(join(result.path, 'sub/notes.txt')), notes.content);
  assert.equal(hub.requests.find((r) => r.path.endsWith('notes.txt'))?.range, undefined);
});

test('a server that ignores Range gets the file written from the start, not appended', async () => {
  const weights = fileOf(MAIN_FILES, 'model.safetensors');
  const blob = join(repoFolder(), 'blobs', sha256(weights.content));
  mkdirSync(join(repoFolder(), 'blobs'), { recursive: true });
  writeFileSync(`${blob}.incomplete`, weights.content.subarray(0, 1000));
  hub.faults.ignoreRange.add('model.safetensors');
  const result = await download({ include: ['model.safetensors'] });
  assert.deepEqual(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.range), ['bytes=1000-']);
  assert.deepEqual(readFileSync(join(result.path, 'model.safetensors')), weights.content);
});
