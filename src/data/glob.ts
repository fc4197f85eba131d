// Expands a file glob (`*`, `?`, `**`, `[abc]`) into a sorted list of files; a plain path is returned as is.
// Node 20 has no fs.glob, and a dependency for this much is not worth it.
import { existsSync, readdirSync, statSync, type Dirent } from 'node:fs';
import { isAbsolute, join, sep } from 'node:path';
import { DataError } from '../errors.ts';

function hasMagic(s: string): boolean {
  return /[*?[]/.test(s);
}

function segmentRegex(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i] as string;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = seg.indexOf(']', i + 1);
      if (close < 0) re += '\\[';
      else {
        const body = seg.slice(i + 1, close).replace(/^!/, '^').replace(/\\/g, '\\\\');
        re += `[${body}]`;
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Files matching `pattern`, sorted; an error when none match. Hidden entries match only an explicit `.`. */
export function expandGlob(pattern: string): string[] {
  if (!hasMagic(pattern)) {
    if (!existsSync(pattern)) throw new DataError(`${pattern}: no such file`, { where: pattern });
    return [pattern];
  }
  const parts = pattern.split(/[\\/]+/);
  const absolute = isAbsolute(pattern);
  const base = absolute ? sep : '.';
  if (absolute) parts.shift();
  const out: string[] = [];
  const walk = (dir: string, rest: string[]): void => {
    if (rest.length === 0) {
      if (existsSync(dir) && statSync(dir).isFile()) out.push(dir);
      return;
    }
    const [head, ...tail] = rest as [string, ...string[]];
    if (head === '**') {
      walk(dir, tail);
      for (const e of safeList(dir)) if (e.isDirectory() && !e.name.startsWith('.')) walk(join(dir, e.name), rest);
      return;
    }
    if (!hasMagic(head)) {
      walk(join(dir, head), tail);
      return;
    }
    const re = segmentRegex(head);
    for (const e of safeList(dir)) {
      if (e.name.startsWith('.') && !head.startsWith('.')) continue;
      if (re.test(e.name)) walk(join(dir, e.name), tail);
    }
  };
  walk(base, parts);
  const files = [...new Set(out.map((f) => (f.startsWith(`.${sep}`) && !pattern.startsWith('.') ? f.slice(2) : f)))].sort();
  if (files.length === 0) throw new DataError(`${pattern}: no files match`, { where: pattern });
  return files;
}

function safeList(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}
