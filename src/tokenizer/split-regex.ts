// Turns the Oniguruma split patterns of tokenizer.json pre-tokenizers (GPT-2's, Llama 3's, Qwen2's) into JavaScript
// regexes that match the same text: Oniguruma's `\s` is Unicode White_Space (U+0085 in, U+FEFF out), JavaScript's is
// not, and `(?i:...)` groups do not exist in Node 20's regexes.

/** Unicode White_Space, which Oniguruma's `\s` matches (UTF-8 encoding). */
const WHITE_SPACE = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/** Other spellings a letter has under Unicode simple case folding, beyond its ASCII upper/lower case. */
const EXTRA_FOLDS: Record<string, string> = { s: '\\u017f', k: '\\u212a' };

/** The regex GPT-2's ByteLevel pre-tokenizer uses when `use_regex` is true. */
export const GPT2_SPLIT_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** A case-insensitive group of literal letters and apostrophes, such as Llama 3's contractions. */
function foldGroup(body: string): string | null {
  if (!/^[A-Za-z'|]*$/.test(body)) return null;
  let out = '';
  for (const c of body) {
    if (!/[A-Za-z]/.test(c)) {
      out += c;
      continue;
    }
    const lower = c.toLowerCase();
    out += `[${lower}${lower.toUpperCase()}${EXTRA_FOLDS[lower] ?? ''}]`;
  }
  return `(?:${out})`;
}

/**
 * A global, unicode JavaScript regex that matches what Oniguruma matches for `pattern`, or null when the
 * pattern uses something this translation does not cover (the caller then keeps the library's encoder).
 */
export function translateSplitPattern(pattern: string): RegExp | null {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      const next = pattern[i + 1];
      if (next === undefined) return null;
      if (next === 's') out += inClass ? WHITE_SPACE : `[${WHITE_SPACE}]`;
      else if (next === 'S') {
        if (inClass) return null;
        out += `[^${WHITE_SPACE}]`;
      } else if (next === 'p' || next === 'P') {
        const end = pattern.indexOf('}', i);
        if (pattern[i + 2] !== '{' || end < 0) return null;
        out += pattern.slice(i, end + 1);
        i = end;
        continue;
      } else if ('dwWbBDhHRXKAzZG'.includes(next)) return null; // classes whose meaning differs or is unknown to JS
      else out += `\\${next}`;
      i++;
      continue;
    }
    if (inClass) {
      if (c === '[') return null; // nested classes and set operations
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (pattern[i + 1] === '^') {
        out += '^';
        i++;
      }
      continue;
    }
    if (pattern.startsWith('(?i:', i)) {
      const end = pattern.indexOf(')', i);
      const group = end < 0 ? null : foldGroup(pattern.slice(i + 4, end));
      if (group === null) return null;
      out += group;
      i = end;
      continue;
    }
    if (c === '.' || c === '^' || c === '$') return null; // line-terminator rules differ between the two engines
    if (c === '(' && pattern[i + 1] === '?' && !['(?:', '(?=', '(?!', '(?<=', '(?<!'].some((g) => pattern.startsWith(g, i))) return null;
    out += c;
  }
  if (inClass) return null;
  try {
    return new RegExp(out, 'gu');
  } catch {
    return null;
  }
}
