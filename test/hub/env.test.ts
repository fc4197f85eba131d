// HF_* variables resolved as huggingface_hub resolves them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { envFlag, hubSettings } from '../../src/hub/env.ts';
import { tempDir } from './fixtures.ts';

test('cache folder precedence: HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME, then ~/.cache', () => {
  assert.equal(hubSettings({ HF_HUB_CACHE: '/x/hub', HF_HOME: '/y' }).cacheDir, '/x/hub');
  assert.equal(hubSettings({ HUGGINGFACE_HUB_CACHE: '/legacy', HF_HOME: '/y' }).cacheDir, '/legacy');
  assert.equal(hubSettings({ HF_HOME: '/y', XDG_CACHE_HOME: '/z' }).cacheDir, '/y/hub');
  assert.equal(hubSettings({ XDG_CACHE_HOME: '/z' }).cacheDir, '/z/huggingface/hub');
  assert.equal(hubSettings({}).cacheDir, join(homedir(), '.cache/huggingface/hub'));
  assert.equal(hubSettings({ HF_HUB_CACHE: '~/c' }).cacheDir, join(homedir(), 'c'));
});

test('endpoint, offline flag and token', (t) => {
  assert.equal(hubSettings({}).endpoint, 'https://huggingface.co');
  assert.equal(hubSettings({ HF_ENDPOINT: 'https://hf-mirror.com/' }).endpoint, 'https://hf-mirror.com');
  for (const v of ['1', 'ON', 'yes', 'True']) assert.equal(envFlag(v), true, v);
  for (const v of [undefined, '', '0', 'false', 'off']) assert.equal(envFlag(v), false, String(v));
  assert.equal(hubSettings({ TRANSFORMERS_OFFLINE: '1' }).offline, true);

  const tmp = tempDir('env');
  t.after(tmp.cleanup);
  assert.equal(hubSettings({ HF_HOME: tmp.dir }).token, undefined);
  writeFileSync(join(tmp.dir, 'token'), 'hf_from_login\n');
  assert.equal(hubSettings({ HF_HOME: tmp.dir }).token, 'hf_from_login');
  assert.equal(hubSettings({ HF_HOME: tmp.dir, HF_TOKEN: 'hf_env' }).token, 'hf_env');
});
