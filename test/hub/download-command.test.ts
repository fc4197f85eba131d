// `sftkit download` as a user runs it: HF_* variables, the path on stdout, plain progress lines on a non-TTY stderr.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { etagOf, startMockHub, type MockHub } from './mock-hub.ts';
import { GOOD_TOKEN, MAIN, MAIN_FILES, PRIVATE, REPO, fileOf, repos, tempDir } from './fixtures.ts';

const root = join(import.meta.dirname, '..', '..');
let hub: MockHub;
before(async () => {
  hub = await startMockHub(repos());
});
after(async () => {
  await hub.close();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI from source in a child process (async: the mock hub lives in this process). */
function sftkit(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], { cwd: root, env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('sftkit download fetches into HF_HOME/hub and prints the snapshot path', async (t) => {
  const tmp = tempDir('cli');
  t.after(tmp.cleanup);
  const run = await sftkit(['download', REPO, '--include', '*.json', 'sub/*', '--exclude', 'tokenizer*'], { HF_ENDPOINT: hub.endpoint, HF_HOME: tmp.dir });
  assert.equal(run.code, 0, run.stderr);
  const snap = join(tmp.dir, 'hub', 'models--sftkit-test--tiny-model', 'snapshots', MAIN);
  assert.equal(run.stdout, `${snap}\n`);
  assert.equal(readlinkSync(join(snap, 'config.json')), `../../blobs/${etagOf(fileOf(MAIN_FILES, 'config.json'))}`);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines[0], `${REPO}@main (commit ${MAIN.slice(0, 10)}): 3 files, 3 to fetch (2.05 kB), 0 already present`);
  assert.deepEqual(lines.filter((l) => l.startsWith('done ')).map((l) => l.split(' ')[1]).sort(), ['config.json', 'sub/extra.bin', 'sub/notes.txt']);
  assert.ok(!run.stderr.includes('\x1b['), 'no terminal escapes when stderr is not a TTY');
});

test('sftkit download explains a 401 and succeeds with --token into --local_dir', async (t) => {
  const tmp = tempDir('cli');
  t.after(tmp.cleanup);
  const env = { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: join(tmp.dir, 'cache') };
  const denied = await sftkit(['download', PRIVATE], env);
  assert.equal(denied.code, 1);
  assert.equal(denied.stdout, '');
  assert.match(denied.stderr, /^sftkit: the hub refused access to sftkit-test\/private-model \(HTTP 401\): the repository is private, gated or does not exist\nhint: if sftkit-test\/private-model is private or gated, pass --token or set HF_TOKEN/);

  const local = join(tmp.dir, 'model');
  const ok = await sftkit(['download', PRIVATE, '--token', GOOD_TOKEN, '--local_dir', local], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, `${local}\n`);
  assert.equal(readFileSync(join(local, 'config.json'), 'utf8'), '{"secret": true}\n');

  const both = await sftkit(['download', PRIVATE, '--local_dir', local, '--cache_dir', local], env);
  assert.equal(both.code, 1);
  assert.match(both.stderr, /--local_dir and --cache_dir cannot be used together/);

  const offline = await sftkit(['download', REPO], { ...env, HF_HUB_OFFLINE: '1' });
  assert.equal(offline.code, 1);
  assert.match(offline.stderr, /sftkit-test\/tiny-model@main is not in the cache at .*, and HF_HUB_OFFLINE is set/);
});
