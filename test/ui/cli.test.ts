// `sftkit ui` from the command line: it prints its address, answers, and stops on SIGINT; a non-loopback
// --host without --api_key is refused before it listens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from './fixture.ts';

const bin = join(REPO, 'bin', 'sftkit.js');

test('sftkit ui starts on a free port, serves the page and the API, and stops on SIGINT', { timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, [bin, 'ui', '--root', join(REPO, 'test', 'fixtures'), '--port', '0'], { cwd: REPO, env: { ...process.env, SFTKIT_FROM_SOURCE: '1' } });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /sftkit ui: (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
      if (m) resolve(m[1] as string);
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}${err}`)));
  });
  const closed = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    assert.match(await (await fetch(`${url}/`)).text(), /<title>sftkit<\/title>/);
    const info = (await (await fetch(`${url}/api/info`)).json()) as { root: string };
    assert.equal(info.root, join(REPO, 'test', 'fixtures'));
  } finally {
    child.kill('SIGINT');
  }
  assert.equal(await closed, 0, err);
});

test('sftkit ui --host 0.0.0.0 without --api_key exits non-zero, saying why', () => {
  const r = spawnSync(process.execPath, [bin, 'ui', '--host', '0.0.0.0', '--port', '0'], { cwd: REPO, encoding: 'utf8', env: { ...process.env, SFTKIT_FROM_SOURCE: '1' }, timeout: 30_000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /needs --api_key/);
});
