// The backend seam: the addon's typed surface (binding.ts) is imported only inside src/backend (and by the
// backend's own tests, which check the raw addon), and the tensor library names no concrete backend (ops run
// the kernels of their inputs' storage).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { importsOf } from './imports.ts';

const root = join(import.meta.dirname, '..', '..');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.name === 'node_modules' || e.name === 'fixtures' ? [] : e.isDirectory() ? tsFiles(join(dir, e.name)) : /\.m?ts$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

function importers(target: string, dirs: string[]): string[] {
  const out: string[] = [];
  for (const dir of dirs) {
    for (const file of tsFiles(join(root, dir))) {
      const text = readFileSync(file, 'utf8');
      const specs = [...importsOf(text), ...[...text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? '')];
      for (const spec of specs) {
        const resolved = relative(root, spec.startsWith('./src/') ? join(root, spec) : normalize(join(dirname(file), spec)));
        if (resolved === target) out.push(relative(root, file));
      }
    }
  }
  return [...new Set(out)];
}

test('only src/backend (and its tests) import the addon binding', () => {
  const outside = importers('src/backend/binding.ts', ['src', 'test', 'bench', 'scripts']).filter((f) => !f.startsWith('src/backend/') && !f.startsWith('test/backend/'));
  assert.deepEqual(outside, []);
});

test('src/tensor names no concrete compute backend', () => {
  const named = [
    ...importers('src/backend/native.ts', ['src/tensor']),
    ...importers('src/backend/reference-backend.ts', ['src/tensor']),
    ...importers('src/backend/reference/index.ts', ['src/tensor']),
  ];
  assert.deepEqual(named, []);
});
