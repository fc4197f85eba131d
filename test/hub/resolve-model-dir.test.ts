// "A model directory or a repo id": local folders pass through, repo ids come from the cache or the hub.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModelDir } from '../../src/hub/resolve-model-dir.ts';
import { startMockHub, type MockHub } from './mock-hub.ts';
import { MAIN, REPO, repos, tempDir } from './fixtures.ts';

let hub: MockHub;
before(async () => {
  hub = await startMockHub(repos());
});
after(async () => {
  await hub.close();
});

test('a local directory is used as is; a missing path or a file is refused', async (t) => {
  const tmp = tempDir('resolve');
  t.after(tmp.cleanup);
  const dir = join(tmp.dir, 'model');
  mkdirSync(dir);
  assert.deepEqual(await resolveModelDir(dir, { env: {} }), { path: dir });
  writeFileSync(join(dir, 'config.json'), '{}');
  await assert.rejects(resolveModelDir(join(dir, 'config.json'), { env: {} }), /is a file, not a model directory/);
  await assert.rejects(resolveModelDir('./no/such/dir', { env: {} }), /model directory .\/no\/such\/dir does not exist/);
  assert.equal(hub.requests.length, 0);
});

test('a repo id is downloaded when missing, then found offline; offline and missing is refused', async (t) => {
  const tmp = tempDir('resolve');
  t.after(tmp.cleanup);
  const cacheDir = join(tmp.dir, 'cache');
  const opts = { cacheDir, endpoint: hub.endpoint, env: {}, include: ['config.json'] };
  await assert.rejects(resolveModelDir(REPO, { ...opts, env: { HF_HUB_OFFLINE: '1' } }), (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.equal(err.message, `${REPO} is neither a local directory nor in the hub cache, and HF_HUB_OFFLINE is set`);
    return true;
  });
  const online = await resolveModelDir(REPO, opts);
  assert.deepEqual(online, { path: join(cacheDir, 'models--sftkit-test--tiny-model', 'snapshots', MAIN), repoId: REPO, commit: MAIN });
  hub.requests.length = 0;
  const offline = await resolveModelDir(REPO, { ...opts, offline: true });
  assert.deepEqual(offline, online);
  assert.equal(hub.requests.length, 0);
  assert.match(readFileSync(join(offline.path, 'config.json'), 'utf8'), /llama/);
});
