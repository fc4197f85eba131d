// Structural mutators for JSON (and YAML) documents: a node replaced by a wrong type or a hostile number,
// keys deleted, renamed, duplicated or their values swapped, deep nesting, long strings. Deep nesting and
// duplicate keys cannot be built as JS values, so they travel as placeholders substituted into the text.
import { nestingDepth } from '../../src/errors.ts';
import { int, pick, type Rng } from './rng.ts';

const DEEP = '\u0000DEEP\u0000';
const DUP = '\u0000DUP\u0000';

const HOSTILE_NUMBERS = [-1, 0, 1, 0.5, -0.0, 1e308, -1e308, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 332_000_000, 2e9, 1e21, 4000, 65536, Number.MAX_SAFE_INTEGER];

/** Dtype names of safetensors, torch and records, valid elsewhere but wrong where they land. */
const WRONG_DTYPES = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I8', 'U8', 'BOOL', 'F8_E4M3', 'float32', 'bfloat16', 'int32', 'int64'];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A value of another kind than the one it replaces. */
function hostileValue(r: Rng): Json {
  switch (int(r, 10)) {
    case 0: return pick(r, HOSTILE_NUMBERS);
    case 1: return pick(r, HOSTILE_NUMBERS);
    case 2: return pick(r, ['', '0', 'true', 'null', '-100', 'x'.repeat(1 + int(r, 300)), '\u{1F600}\ud800', '../../etc/passwd', '__proto__', 'constructor']);
    case 3: return null;
    case 4: return r() < 0.5;
    case 5: return [];
    case 6: return {};
    case 7: return Array.from({ length: 1 + int(r, 5) }, () => pick(r, HOSTILE_NUMBERS));
    case 8: return pick(r, WRONG_DTYPES);
    default: return DEEP;
  }
}

/** Every container node, with a way to read and replace each child. */
function containers(root: Json): Array<Json[] | { [k: string]: Json }> {
  const out: Array<Json[] | { [k: string]: Json }> = [];
  const stack: Json[] = [root];
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (v !== null && typeof v === 'object') {
      out.push(v);
      for (const c of Object.values(v)) stack.push(c);
    }
  }
  return out;
}

function mutateTree(root: Json, r: Rng): Json {
  const nodes = containers(root);
  if (nodes.length === 0) return hostileValue(r);
  const node = pick(r, nodes);
  if (Array.isArray(node)) {
    const i = int(r, node.length + 1);
    switch (int(r, 4)) {
      case 0: node.splice(i, 1); break;
      case 1: node.splice(i, 0, hostileValue(r)); break;
      case 2: if (node.length > 0) node.splice(i, 0, structuredClone(node[int(r, node.length)]!)); break;
      default: if (i < node.length) node[i] = hostileValue(r); break;
    }
    return root;
  }
  const keys = Object.keys(node);
  const k = keys.length > 0 ? pick(r, keys) : 'x';
  switch (int(r, 7)) {
    case 0: delete node[k]; break; // missing field
    case 1: case 2: node[k] = hostileValue(r); break; // wrong type or hostile number
    case 3: { // swapped fields
      const k2 = keys.length > 0 ? pick(r, keys) : k;
      const tmp = node[k] ?? null;
      node[k] = node[k2] ?? null;
      node[k2] = tmp;
      break;
    }
    case 4: node[`${DUP}${k}`] = hostileValue(r); break; // duplicate key
    case 5: { // renamed key
      const v = node[k] ?? null;
      delete node[k];
      node[pick(r, [`${k}_`, k.toUpperCase(), k.slice(1), `${k}${'k'.repeat(int(r, 2000))}`, 'toString', 'valueOf', '__proto__'])] = v;
      break;
    }
    default: node[k] = DEEP; break;
  }
  return root;
}

/** Nesting far past any real file (and past a recursive printer's stack). */
function deepText(r: Rng): string {
  const n = pick(r, [100, 100, 3_000, 3_000, 20_000]);
  return r() < 0.5 ? `${'['.repeat(n)}1${']'.repeat(n)}` : `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
}

/** Substitutes the placeholders of `mutateTree` into JSON text. */
export function placeholdersToText(text: string, r: Rng): string {
  return text
    .replaceAll(JSON.stringify(DEEP), () => deepText(r))
    .replaceAll(JSON.stringify(DUP).slice(0, -1), '"');
}

/** One to three structural edits of a JSON document. */
export function mutateJson(text: string, r: Rng): string {
  let root: Json;
  try {
    root = JSON.parse(text) as Json;
  } catch {
    return text.slice(0, int(r, text.length + 1)); // an earlier edit broke the text: truncate it instead
  }
  // An earlier edit nested it deeply: structuredClone and JSON.stringify would overflow the fuzzer's own stack.
  if (nestingDepth(root, 64) > 64) return text.slice(0, int(r, text.length + 1));
  for (let i = 0, n = 1 + int(r, 3); i < n; i++) root = mutateTree(root, r);
  return placeholdersToText(JSON.stringify(root, null, r() < 0.5 ? 1 : undefined), r);
}

/** The structural edits on any parsed document (YAML uses it with its own printer). */
export function mutateValue(value: unknown, r: Rng): { value: unknown; deep: string; dupPrefix: string } {
  if (nestingDepth(value, 64) > 64) return { value, deep: DEEP, dupPrefix: DUP };
  let root = structuredClone(value) as Json;
  for (let i = 0, n = 1 + int(r, 3); i < n; i++) root = mutateTree(root, r);
  return { value: root, deep: DEEP, dupPrefix: DUP };
}
