// sftkit's typed errors: one class per domain, each carrying where the problem is and a hint.
export interface ErrorDetails {
  /** What to do about it. */
  hint?: string;
  /** File, tensor, field or op the error is about. */
  where?: string;
}

export class SftkitError extends Error {
  readonly hint: string | undefined;
  readonly where: string | undefined;
  constructor(message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = new.target.name;
    this.hint = details.hint;
    this.where = details.where;
  }
}

/** A tensor op got shapes, dtypes or values it cannot take. */
export class ShapeError extends SftkitError {}
/** A file is malformed or of an unsupported kind. */
export class FormatError extends SftkitError {}
/** A configuration value is invalid. */
export class ConfigError extends SftkitError {}
/** Training or evaluation data is invalid. */
export class DataError extends SftkitError {}
/** A file or folder cannot be read or written (disk full, read-only, no permission): names it and says why. */
export class FileError extends SftkitError {}

/**
 * A short printable form of an untrusted value for an error message: JSON-like, cut at `maxChars`, nested
 * containers past a few levels shown as `[…]`/`{…}`, cycles as `<cycle>`. Never throws, never recurses deeply,
 * so an error about a hostile file (deep nesting, a pickle memo cycle) can always be reported.
 */
export function describeValue(value: unknown, maxChars = 80): string {
  const seen = new Set<object>();
  let out = '';
  const put = (s: string): boolean => {
    out += s;
    return out.length <= maxChars;
  };
  const walk = (v: unknown, depth: number): boolean => {
    if (v === undefined) return put('undefined');
    if (v === null || typeof v === 'boolean' || typeof v === 'number') return put(String(v));
    if (typeof v === 'bigint') return put(`${v}`);
    if (typeof v === 'string') return put(JSON.stringify(v.length > maxChars ? `${v.slice(0, maxChars)}…` : v));
    if (typeof v !== 'object') return put(`<${typeof v}>`);
    if (seen.has(v)) return put('<cycle>');
    if (ArrayBuffer.isView(v)) return put(`<${v.byteLength} bytes>`);
    // Entries are walked lazily: a container of millions of items costs only what is printed.
    function* entries(c: object): Generator<[string | null, unknown]> {
      if (c instanceof Map) for (const [k, x] of c) yield [typeof k === 'string' ? k : String(k), x];
      else if (Array.isArray(c)) for (const x of c) yield [null, x];
      else for (const k in c) if (Object.hasOwn(c, k)) yield [k, (c as Record<string, unknown>)[k]];
    }
    const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
    if (depth >= 4) return put(entries(v).next().done === true ? `${open}${close}` : `${open}…${close}`);
    seen.add(v);
    if (!put(open)) return false;
    let first = true;
    for (const [k, x] of entries(v)) {
      if (!first && !put(', ')) return false;
      first = false;
      if (k !== null && !put(`${JSON.stringify(k.length > maxChars ? `${k.slice(0, maxChars)}…` : k)}: `)) return false;
      if (!walk(x, depth + 1)) return false;
    }
    seen.delete(v);
    return put(close);
  };
  walk(value, 0);
  return out.length <= maxChars ? out : `${out.slice(0, maxChars)}…`;
}

/**
 * How deeply `value` (a parsed JSON or YAML document) nests, counting up to `limit + 1` at most: untrusted
 * documents deeper than a real file ever is are refused before anything recursive (a printer, a hash) sees them.
 */
export function nestingDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    deepest = Math.max(deepest, d + 1);
    if (deepest > limit) return deepest;
    for (const c of Object.values(v)) if (c !== null && typeof c === 'object') stack.push([c, d + 1]);
  }
  return deepest;
}

/** Nesting allowed in the JSON and YAML files sftkit reads; real files (tokenizer.json included) stay under 10. */
export const MAX_DOCUMENT_DEPTH = 64;
