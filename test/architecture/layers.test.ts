// Enforces DESIGN.md's import rule: a folder of src/ imports only folders below it in the layer list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, dirname, normalize } from 'node:path';

const LAYERS = ['cli', 'ui', 'serve', 'hub', 'convert', 'train', 'eval', 'generate', 'data', 'tokenizer', 'formats', 'models', 'nn', 'distributed', 'tensor', 'backend'];
// Files directly under src/ that every layer may import (shared leaf modules).
const SHARED = new Set(['errors.ts', 'dtype.ts']);
const src = join(import.meta.dirname, '..', '..', 'src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

function layerOf(file: string): string | null {
  const rel = relative(src, file).split('/');
  return rel.length > 1 ? (rel[0] ?? null) : null;
}

test('every src folder is a known layer', () => {
  for (const e of readdirSync(src, { withFileTypes: true })) {
    if (e.isDirectory()) assert.ok(LAYERS.includes(e.name), `src/${e.name} is not a layer of DESIGN.md`);
  }
});

test('imports go only to lower layers', () => {
  const violations: string[] = [];
  for (const file of tsFiles(src)) {
    const from = layerOf(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = m[1] ?? m[2] ?? '';
      if (!spec.startsWith('.')) continue;
      const target = normalize(join(dirname(file), spec));
      const to = layerOf(target);
      const rel = relative(src, target);
      if (to === null) {
        if (from !== null && !SHARED.has(rel)) violations.push(`${relative(src, file)} imports ${rel} (only ${[...SHARED].join(', ')} may be imported from src/)`);
        continue;
      }
      if (from === null || from === to) continue;
      if (LAYERS.indexOf(to) <= LAYERS.indexOf(from)) violations.push(`${relative(src, file)} (${from}) imports ${rel} (${to}), which is not below it`);
    }
  }
  assert.deepEqual(violations, []);
});
