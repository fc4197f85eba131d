// No import cycle inside src/, type-only imports included: every module can be read (and loaded) after the
// modules it imports, so nothing depends on being installed at import time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { cycles, importsOf } from './imports.ts';

const src = join(import.meta.dirname, '..', '..', 'src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

test('the import parser sees every form of import, type-only ones included', () => {
  const text = [
    "import { a } from './a.ts';",
    "import type { B } from '../b.ts';",
    "import './side.ts';",
    "export { c } from './c.ts';",
    "export * from './d.ts';",
    "export type { E } from './e.ts';",
    "import {\n  f,\n  type G,\n} from './f.ts';",
    "const h = await import('./h.ts');",
    "// import { no } from './commented.ts';",
    "import { ext } from 'node:fs';",
  ].join('\n');
  assert.deepEqual(importsOf(text).sort(), ['../b.ts', './a.ts', './c.ts', './d.ts', './e.ts', './f.ts', './h.ts', './side.ts']);
});

test('the cycle finder finds a type-only loop and a self-import, and passes a DAG', () => {
  assert.deepEqual(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), [['a', 'b', 'c']]);
  assert.deepEqual(cycles(new Map([['a', ['a']]])), [['a']]);
  assert.deepEqual(cycles(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), []);
});

test('src/ has no import cycle, type-only imports included', () => {
  const graph = new Map<string, string[]>();
  for (const file of tsFiles(src)) {
    const from = relative(src, file);
    const deps = importsOf(readFileSync(file, 'utf8')).map((spec) => relative(src, normalize(join(dirname(file), spec))));
    graph.set(from, deps);
  }
  assert.ok(graph.size > 100, `only ${graph.size} modules found under src/`);
  assert.deepEqual(cycles(graph), [], 'modules that import each other, directly or around a loop');
});
