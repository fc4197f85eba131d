// Finding a revision already in the cache, without the network: refs/<revision> names the commit,
// snapshots/<commit>/ holds its files (the same lookup huggingface_hub does offline).
import { readFile, stat } from 'node:fs/promises';
import { COMMIT_HASH, refPath, repoCacheFolder, snapshotFolder } from './cache-layout.ts';

export interface CachedSnapshot {
  commit: string;
  /** The snapshot folder: a model directory whose files are symlinks into blobs/. */
  path: string;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** The cached snapshot of `revision` (branch, tag or commit hash), or undefined when the cache lacks it. */
export async function findCachedSnapshot(cacheDir: string, repoId: string, revision: string): Promise<CachedSnapshot | undefined> {
  const repoFolder = repoCacheFolder(cacheDir, repoId);
  let commit = revision;
  if (!COMMIT_HASH.test(revision)) {
    try {
      commit = (await readFile(refPath(repoFolder, revision), 'utf8')).trim();
    } catch {
      return undefined;
    }
    if (!COMMIT_HASH.test(commit)) return undefined;
  }
  const path = snapshotFolder(repoFolder, commit);
  return (await isDir(path)) ? { commit, path } : undefined;
}
