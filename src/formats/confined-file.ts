// Reading the files of a model folder, a checkpoint folder or a hub cache snapshot without following a symlink
// out of it: a folder handed to sftkit may hold a link such as `special_tokens_map.json -> /etc/passwd`.
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { basename, dirname, resolve, sep } from 'node:path';
import { FormatError } from '../errors.ts';

/** HF cache repo folders (`models--org--name`), whose snapshots link into their own blobs/. */
const HF_CACHE_REPO = /^(models|datasets|spaces)--/;

export interface ConfinedOptions {
  /** The folder the file must stay inside, links resolved (default: `confinementRoot(dirname(path))`). */
  root?: string;
}

function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

/**
 * The folder a model folder's links may lead into: the folder itself, or for an HF cache snapshot
 * (`models--org--name/snapshots/<rev>`, whose files are links to `../../blobs/<hash>`) the repo's cache folder.
 */
export function confinementRoot(dir: string): string {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    return resolve(dir);
  }
  const snapshots = dirname(real);
  if (basename(snapshots) === 'snapshots' && HF_CACHE_REPO.test(basename(dirname(snapshots)))) return dirname(snapshots);
  return real;
}

/**
 * The real path of `path` after every link, checked to lie inside the root. Errors name `path`: a missing file,
 * a link loop, or a link leading out of the folder.
 */
export function confinedRealPath(path: string, options: ConfinedOptions = {}): string {
  const root = options.root === undefined ? confinementRoot(dirname(path)) : confinementRoot(options.root);
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    throw new FormatError(`${path}: cannot open (${errnoOf(err)})`, { where: path });
  }
  if (!inside(root, real)) {
    throw new FormatError(`${path}: refusing to read it: it is a symlink leading outside ${root} (to ${real})`, {
      where: path,
      hint: 'copy the file into the folder; sftkit never follows a link out of a model or checkpoint folder',
    });
  }
  return real;
}

/**
 * Opens a regular file of a folder for reading, confined to the folder (see confinedRealPath). The real path is
 * opened with O_NOFOLLOW, so a link swapped in after the check is refused too. The caller closes the descriptor.
 */
export function openConfined(path: string, options: ConfinedOptions = {}): number {
  const real = confinedRealPath(path, options);
  let fd: number;
  try {
    fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw new FormatError(`${path}: cannot open (${errnoOf(err)})`, { where: path });
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new FormatError(`${path}: is a directory or a device, not a file`, { where: path, hint: 'point at the file itself' });
  }
  return fd;
}

/** The whole content of a folder's file (small files: configs, tokenizers), confined like openConfined. */
export function readConfined(path: string, options: ConfinedOptions = {}): Buffer {
  const fd = openConfined(path, options);
  try {
    const size = fstatSync(fd).size;
    const out = Buffer.allocUnsafe(size);
    let done = 0;
    while (done < size) {
      const got = readSync(fd, out, done, size - done, done);
      if (got === 0) throw new FormatError(`${path}: file ended early (it shrank while being read)`, { where: path });
      done += got;
    }
    return out;
  } catch (err) {
    if (err instanceof FormatError) throw err;
    throw new FormatError(`${path}: cannot read (${errnoOf(err)})`, { where: path });
  } finally {
    closeSync(fd);
  }
}

/** readConfined as UTF-8 text. */
export function readConfinedText(path: string, options: ConfinedOptions = {}): string {
  return readConfined(path, options).toString('utf8');
}
