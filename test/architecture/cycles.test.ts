// No import cycle inside src/, type-only imports included: every module can be read (and loaded) after the
// modules it imports, so nothing depends on being installed at import time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const src = join(import.meta.dirname, '..', '..', 'src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Comments blanked out (strings kept), so a commented-out import is not an edge. */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\/|(^|[^:'"`\\])\/\/[^\n]*/g, (m, pre: string | undefined) => (m.startsWith('/*') ? ' ' : (pre ?? '')));
}

/**
 * Relative module specifiers of every import and re-export: `import x from`, `import type {…} from`,
 * `import './side-effect'`, `export {…} from`, `export * from`, `export type {…} from`, `import('…')`.
 */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  const code = stripComments(text);
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) if (m[1]) out.push(m[1]);
  return out.filter((s) => s.startsWith('.'));
}

/** Every cycle's modules (strongly connected components of more than one module, or a self-import), by Tarjan. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, idx.get(w) as number));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
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
