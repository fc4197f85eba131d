// A command's output folder: created only once the inputs are validated and something is about to be written,
// checked to be writable up front (a clear FileError, not an errno from deep inside a save), and removed again
// when the command fails before putting a single file into a folder it created.
import { accessSync, constants, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { FileError } from '../errors.ts';
import { fileError } from '../formats/write-file.ts';

export class OutputDir {
  readonly path: string;
  /** The topmost folder this command created (mkdir -p may create several levels), if any. */
  private createdFrom: string | undefined;

  constructor(path: string) {
    this.path = resolve(path);
  }

  /** Creates the folder (with parents) or checks the existing one; either way it must be a folder we may write into. */
  ensure(): string {
    if (this.createdFrom !== undefined) return this.path;
    let st;
    try {
      st = statSync(this.path);
    } catch {
      st = undefined;
    }
    if (st !== undefined && !st.isDirectory()) {
      throw new FileError(`output_dir ${this.path} is a file, not a folder`, { where: this.path, hint: 'choose another --output_dir' });
    }
    if (st === undefined) {
      try {
        this.createdFrom = mkdirSync(this.path, { recursive: true });
      } catch (err) {
        throw fileError(err, this.path, 'create the output folder');
      }
    }
    try {
      accessSync(this.path, constants.W_OK | constants.X_OK);
    } catch (err) {
      throw fileError(err, this.path, 'write into the output folder');
    }
    return this.path;
  }

  /**
   * After a failure: removes the folders this command created, from the output folder up to the topmost one, as
   * long as they hold no file (empty sub-folders such as an unused checkpoint/ do not count). Never throws.
   */
  removeIfUnused(): void {
    if (this.createdFrom === undefined) return;
    try {
      if (!holdsNoFile(this.path)) return;
      removeEmptyTree(this.path);
      for (let dir = dirname(this.path); dir.length >= this.createdFrom.length && dir !== dirname(dir); dir = dirname(dir)) {
        if (readdirSync(dir).length > 0) break;
        rmdirSync(dir);
      }
    } catch {
      // Best effort: a folder left behind is untidy, not wrong, and the command's own error is the one to show.
    }
  }
}

function holdsNoFile(dir: string): boolean {
  return readdirSync(dir, { withFileTypes: true }).every((e) => e.isDirectory() && holdsNoFile(join(dir, e.name)));
}

function removeEmptyTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) removeEmptyTree(join(dir, e.name));
  rmdirSync(dir);
}
