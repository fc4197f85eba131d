// Paths of Python huggingface_hub's cache layout and checks on every name the server gives us.
// <cache>/models--org--name/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/<revision>}
import { getRepoFolderName } from '@huggingface/hub';
import { join } from 'node:path';
import { HubError } from './hub-error.ts';

export const COMMIT_HASH = /^[0-9a-f]{40}$/;
/** A blob is named by its etag: the git sha1 of a regular file or the sha256 of an LFS file. */
const BLOB_ETAG = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Python's validate_repo_id: `name` or `namespace/name`, word characters, '-' and '.', no '--' or '..'. */
export function validateRepoId(repoId: string): void {
  const ok =
    /^(?:[\w.-]+\/)?[\w.-]{1,96}$/.test(repoId) &&
    !repoId.includes('--') &&
    !repoId.includes('..') &&
    !/(?:^|\/)[.-]|[.-](?:\/|$)/.test(repoId);
  if (!ok) {
    throw new HubError(`'${repoId}' is not a valid repo id`, {
      where: repoId,
      hint: "a repo id is 'name' or 'namespace/name' (letters, digits, '-', '_', '.'), e.g. 'openai-community/gpt2'",
    });
  }
}

/** A branch or tag name is also a path under refs/: refuse anything that could leave that folder. */
export function validateRevision(revision: string): void {
  const parts = revision.split('/');
  const ok = revision.length > 0 && revision.length <= 256 && !/[\\\0-\x1f]/.test(revision) && parts.every((p) => p !== '' && p !== '.' && p !== '..');
  if (!ok) throw new HubError(`'${revision}' is not a valid revision`, { where: revision, hint: 'give a branch, a tag or a 40-character commit hash' });
}

/** The server's commit id becomes a folder name: it must be a plain 40-hex-digit hash. */
export function checkCommitHash(commit: string, where: string): string {
  if (!COMMIT_HASH.test(commit)) throw new HubError(`the hub returned an invalid commit id '${commit.slice(0, 80)}'`, { where });
  return commit;
}

/** The server's etag becomes a file name under blobs/: it must be a plain hex digest. */
export function checkBlobEtag(etag: string, where: string): string {
  if (!BLOB_ETAG.test(etag)) throw new HubError(`the hub returned an invalid etag '${etag.slice(0, 80)}'`, { where });
  return etag;
}

/**
 * A file name from the server is joined onto our target folder: refuse names that could leave it
 * (absolute, drive or UNC paths, '..', backslashes, empty or '.' segments, control characters).
 */
export function checkRepoFilePath(path: string, repoId: string): string {
  const segments = path.split('/');
  const bad =
    path.length === 0 ||
    path.length > 4096 ||
    /[\\\0-\x1f]/.test(path) ||
    /^[A-Za-z]:/.test(path) ||
    segments.some((s) => s === '' || s === '.' || s === '..');
  if (bad) {
    throw new HubError(`refusing file '${JSON.stringify(path).slice(1, -1)}' listed by the hub: it would be written outside the target folder`, {
      where: `${repoId}/${path}`,
      hint: 'the repository (or the server at HF_ENDPOINT) lists an unsafe file name; report it to the repository owner',
    });
  }
  return path;
}

/**
 * Dot-files every HF repo may carry and that are harmless on disk: `.gitattributes` (the LFS rules of every HF repo;
 * it can name filters and diff drivers, but only ones configured in a `.git/config`) and `.gitignore`.
 */
const ORDINARY_DOT_FILES = new Set(['.gitattributes', '.gitignore']);

/**
 * Why a listed path is not written, or null when it is. A segment starting with a dot names tool state, not model
 * content: `.git/config` in a download folder inside a work tree is read by the next git command (core.fsmonitor
 * runs a program), `.cache/huggingface/` holds our own download bookkeeping, `.ssh/` and the like are never
 * model files. Only the ordinary root dot-files above are kept.
 */
export function hiddenPathReason(path: string): string | null {
  if (ORDINARY_DOT_FILES.has(path)) return null;
  const hidden = path.split('/').find((s) => s.startsWith('.'));
  if (hidden === undefined) return null;
  if (hidden === '.git') return "'.git' is git's own folder: a file there can make git run programs";
  if (hidden === '.cache') return "'.cache' holds download bookkeeping (.cache/huggingface), which the hub may not overwrite";
  return `'${hidden}' is a hidden file or folder, not model content`;
}

/** Folder of one repo in the cache: `models--org--name` (the library's naming, shared with Python). */
export function repoCacheFolder(cacheDir: string, repoId: string): string {
  return join(cacheDir, getRepoFolderName({ name: repoId, type: 'model' }));
}

export function blobPath(repoFolder: string, etag: string): string {
  return join(repoFolder, 'blobs', etag);
}

export function snapshotFolder(repoFolder: string, commit: string): string {
  return join(repoFolder, 'snapshots', commit);
}

/** `refs/<revision>` holds the commit a branch or tag pointed to when last resolved (no newline, as Python writes it). */
export function refPath(repoFolder: string, revision: string): string {
  return join(repoFolder, 'refs', ...revision.split('/'));
}

/** Python's `--local-dir` bookkeeping: `<dir>/.cache/huggingface/download/<file>.metadata` (commit, etag, time). */
export function localMetadataPath(localDir: string, file: string): string {
  return join(localDir, '.cache', 'huggingface', 'download', ...`${file}.metadata`.split('/'));
}

/** Where a `--local-dir` download is staged: `<file>.<etag>.incomplete` beside its metadata, as Python does. */
export function localIncompletePath(localDir: string, file: string, etag: string): string {
  return join(localDir, '.cache', 'huggingface', 'download', ...`${file}.${etag}.incomplete`.split('/'));
}
