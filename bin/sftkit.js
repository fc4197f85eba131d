#!/usr/bin/env node
// The `sftkit` command: runs the compiled CLI (dist/), or the TypeScript sources through tsx in a checkout.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'cli', 'main.js');
// SFTKIT_FROM_SOURCE=1 (set by the test runner) runs the sources, so tests never see a stale dist/.
if (existsSync(compiled) && process.env.SFTKIT_FROM_SOURCE !== '1') {
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
}
