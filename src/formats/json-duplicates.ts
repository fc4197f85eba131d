// Finds duplicate keys in a JSON text, which JSON.parse silently collapses (a duplicated tensor name in a
// safetensors header or index must be an error, not a silent overwrite).

/** Duplicated keys of the objects at nesting `depth` (1 = the top-level object), in order of first repeat. */
export function duplicateKeys(text: string, depth: number): string[] {
  const seen: Array<Set<string>> = [];
  const dups: string[] = [];
  let level = 0;
  let expectKey = false;
  const stack: string[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (expectKey && stack[stack.length - 1] === '{' && level === depth) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string;
        } catch {
          key = text.slice(i + 1, j);
        }
        const set = seen[level];
        if (set?.has(key) && !dups.includes(key)) dups.push(key);
        set?.add(key);
      }
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      stack.push(c);
      level++;
      if (c === '{') seen[level] = new Set();
      expectKey = c === '{';
    } else if (c === '}' || c === ']') {
      stack.pop();
      level--;
      expectKey = false;
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] === '{';
    }
  }
  return dups;
}
