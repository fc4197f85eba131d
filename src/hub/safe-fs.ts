// File-system steps that never leave a half-made result and never follow a symlink out of the target:
// folders created one level at a time inside a root, symlinks and small files placed by rename.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, realpath, rename, rm, symlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { HubError } from './hub-error.ts';

function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Create `root/<relDir>` level by level. An existing level that is a symlink must resolve inside `root`:
 * `mkdir -p` would otherwise follow a planted link and write anywhere.
 */
export async function ensureDirInside(root: string, relDir: string): Promise<string> {
  await mkdir(root, { recursive: true });
  const realRoot = await realpath(root);
  let current = root;
  for (const part of relDir === '' ? [] : relDir.split('/')) {
    current = join(current, part);
    let st;
    try {
      st = await lstat(current);
    } catch {
      await mkdir(current).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      continue;
    }
    if (st.isSymbolicLink()) {
      const target = await realpath(current).catch(() => '');
      if (!inside(realRoot, target) || !(await lstat(target)).isDirectory()) {
        throw new HubError(`refusing to write through ${current}: it is a symlink leading outside ${root}`, {
          where: current,
          hint: 'remove the link, or download into another folder',
        });
      }
    } else if (!st.isDirectory()) {
      throw new HubError(`cannot create folder ${current}: a file is in the way`, { where: current });
    }
  }
  return current;
}

function tempName(path: string): string {
  return join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
}

/** Point `linkPath` at `targetPath` with a relative link (as huggingface_hub does), replacing any old entry. */
export async function placeRelativeSymlink(targetPath: string, linkPath: string): Promise<void> {
  const tmp = tempName(linkPath);
  await symlink(relative(dirname(linkPath), targetPath), tmp);
  try {
    await rename(tmp, linkPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Write a small text file through a temp file and rename, fsync'd, so readers see old or new, never half. */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = tempName(path);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/** Move a finished staging file into place (durably) and return. */
export async function moveIntoPlace(from: string, to: string): Promise<void> {
  await rename(from, to);
  // Make the rename itself durable; a directory fsync is not possible everywhere, so best effort.
  const dir = await open(dirname(to), 'r').catch(() => undefined);
  if (dir) {
    await dir.sync().catch(() => undefined);
    await dir.close();
  }
}
