// Every path a request names (a run, a records folder, a checkpoint) is relative to the dashboard's --root and
// must stay inside it: no absolute paths, no `..` segment (however encoded: the query string is decoded
// before it gets here), no symlink leading out. Folders are walked without following symlinks at all.
import { type Dirent, lstatSync, readdirSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { FormatError } from '../errors.ts';
import { confinedRealPath } from '../formats/confined-file.ts';
import { HttpError } from './http.ts';

/** Folders never worth walking into while looking for runs, records and checkpoints. */
const SKIPPED = new Set(['node_modules', '.git', 'optimizer', '.cache']);

export class UiRoot {
  /** The root's real path (links resolved). */
  readonly path: string;

  constructor(root: string) {
    this.path = realpathSync(resolve(root));
  }

  /**
   * The real path of `rel` (a path relative to the root, '' or '.' for the root itself), checked to lie inside
   * it. 400 for a malformed path, 403 for one that leads out, 404 for one that does not exist.
   */
  resolve(rel: string): string {
    if (rel.includes('\0')) throw new HttpError(400, 'a path may not contain a NUL character');
    if (isAbsolute(rel) || /^[A-Za-z]:/.test(rel) || rel.startsWith('\\')) throw new HttpError(403, `${JSON.stringify(rel)}: absolute paths are refused; name a path relative to the dashboard's root`);
    const parts = rel.split(/[/\\]+/);
    if (parts.includes('..')) throw new HttpError(403, `${JSON.stringify(rel)}: '..' is refused; name a path inside the dashboard's root`);
    const path = join(this.path, ...parts.filter((p) => p !== '' && p !== '.'));
    let st;
    try {
      st = lstatSync(path);
    } catch {
      throw new HttpError(404, `${rel}: no such file or folder under the dashboard's root`);
    }
    if (!st.isSymbolicLink() && path === this.path) return this.path;
    try {
      return confinedRealPath(path, { root: this.path });
    } catch (err) {
      if (err instanceof FormatError && /outside/.test(err.message)) throw new HttpError(403, `${rel}: refusing to read it: a symlink leads outside the dashboard's root`);
      throw new HttpError(404, `${rel}: cannot open`);
    }
  }

  /** `abs` (inside the root) as the relative path the API speaks. */
  relative(abs: string): string {
    const rel = relative(this.path, abs);
    return rel === '' ? '.' : rel.split(sep).join('/');
  }

  /**
   * Folders under `from` (real, inside the root) to `depth` levels, symlinks not followed, in name order;
   * `visit` returns true to stop descending into a folder it claimed.
   */
  walk(from: string, depth: number, visit: (dir: string, entries: Dirent[]) => boolean): void {
    let entries: Dirent[];
    try {
      entries = readdirSync(from, { withFileTypes: true });
    } catch {
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (visit(from, entries) || depth <= 0) return;
    for (const e of entries) {
      if (e.isDirectory() && !SKIPPED.has(e.name) && !e.name.startsWith('.')) this.walk(join(from, e.name), depth - 1, visit);
    }
  }
}
