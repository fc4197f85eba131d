// --include / --exclude file filters with the semantics of huggingface_hub's allow/ignore patterns:
// shell-style globs matched against the whole repo path, where '*' also crosses '/', and a pattern
// ending in '/' selects everything under that folder.

/** Turn one fnmatch-style glob into an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  const pattern = glob.endsWith('/') ? `${glob}*` : glob;
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') {
      out += '.*';
    } else if (c === '?') {
      out += '.';
    } else if (c === '[') {
      const close = pattern.indexOf(']', pattern[i + 1] === '!' ? i + 3 : i + 2);
      if (close === -1) {
        // An unclosed '[' is a literal, as in fnmatch.
        out += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, close);
      const negate = body.startsWith('!');
      if (negate) body = body.slice(1);
      out += `[${negate ? '^' : ''}${body.replace(/\\/g, '\\\\').replace(/\^/g, '\\^')}]`;
      i = close;
    } else {
      out += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
    }
  }
  return new RegExp(`^${out}$`, 's');
}

export interface FileFilter {
  include?: readonly string[];
  exclude?: readonly string[];
}

/** A path is kept when it matches an include pattern (or there are none) and no exclude pattern. */
export function makeFileFilter(filter: FileFilter): (path: string) => boolean {
  const include = (filter.include ?? []).map(globToRegExp);
  const exclude = (filter.exclude ?? []).map(globToRegExp);
  return (path) => (include.length === 0 || include.some((r) => r.test(path))) && !exclude.some((r) => r.test(path));
}
