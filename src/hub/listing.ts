// What a revision of a repo holds: its commit (model info) and every file with size and etag (the tree),
// both through @huggingface/hub, with each server-given name checked before it can reach the disk.
import { listFiles, modelInfo } from '@huggingface/hub';
import { checkBlobEtag, checkCommitHash, checkRepoFilePath } from './cache-layout.ts';
import { HubError } from './hub-error.ts';
import { fromLibraryError, hubFetch, type FetchLike, type HubConnection } from './http.ts';

export interface RepoFile {
  /** Path in the repo, '/'-separated, checked to stay inside any folder it is joined to. */
  path: string;
  /** Size of the real content (for LFS files, of the LFS object, not the pointer). */
  size: number;
  /** sha256 of the content for LFS files, git blob sha1 for regular files: the cache's blob name. */
  etag: string;
  /** True when `etag` is the sha256 of an LFS object (else a git blob sha1). */
  lfs: boolean;
}

export interface RepoListing {
  repoId: string;
  /** The commit the revision resolved to; every file is fetched from this commit. */
  commit: string;
  files: RepoFile[];
}

/** Remember the X-Error-Code of the last failed response: the library's error object drops headers. */
function recordingFetch(inner: FetchLike, seen: { code: string | undefined }): FetchLike {
  return async (input, init) => {
    const res = await inner(input, init);
    if (!res.ok) seen.code = res.headers.get('x-error-code') ?? undefined;
    return res;
  };
}

export async function listRepo(conn: HubConnection, repoId: string, revision: string): Promise<RepoListing> {
  const seen: { code: string | undefined } = { code: undefined };
  const fetch = recordingFetch(hubFetch(conn), seen);
  const ctx = { repoId, endpoint: conn.endpoint, hasToken: conn.token !== undefined, revision };

  let commit: string;
  try {
    // The token travels in our fetch wrapper, not as accessToken: the library only accepts 'hf_…' tokens,
    // and a mirror at HF_ENDPOINT may issue others.
    const info = await modelInfo({ name: repoId, revision, hubUrl: conn.endpoint, additionalFields: ['sha'], fetch });
    commit = checkCommitHash(String(info.sha), repoId);
  } catch (err) {
    throw fromLibraryError(err, seen.code, { ...ctx, what: 'the repository information' });
  }

  const files: RepoFile[] = [];
  try {
    for await (const entry of listFiles({ repo: { type: 'model', name: repoId }, revision: commit, recursive: true, hubUrl: conn.endpoint, fetch })) {
      if (entry.type !== 'file') continue;
      const path = checkRepoFilePath(entry.path, repoId);
      const where = `${repoId}/${path}`;
      const etag = entry.lfs ? entry.lfs.oid : entry.oid;
      const size = entry.lfs ? entry.lfs.size : entry.size;
      if (etag === undefined) throw new HubError(`the hub listed ${path} without an oid`, { where });
      if (!Number.isSafeInteger(size) || size < 0) throw new HubError(`the hub listed ${path} with an invalid size ${String(size)}`, { where });
      files.push({ path, size, etag: checkBlobEtag(etag, where), lfs: entry.lfs !== undefined });
    }
  } catch (err) {
    throw fromLibraryError(err, seen.code, { ...ctx, what: 'the file list' });
  }
  checkNoConflicts(files, repoId);
  return { repoId, commit, files };
}

/**
 * A path listed twice, or listed both as a file and as a folder of another file ('a' and 'a/b'), would make
 * one write land through the other (in a snapshot, 'a' is a symlink into blobs/): refuse the listing.
 */
function checkNoConflicts(files: RepoFile[], repoId: string): void {
  const paths = new Set<string>();
  for (const f of files) {
    if (paths.has(f.path)) throw new HubError(`the hub listed ${f.path} twice`, { where: `${repoId}/${f.path}` });
    paths.add(f.path);
  }
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (paths.has(prefix)) {
        throw new HubError(`refusing the listing of ${repoId}: '${prefix}' is both a file and the folder of '${f.path}'`, {
          where: `${repoId}/${f.path}`,
          hint: 'the repository (or the server at HF_ENDPOINT) lists conflicting paths',
        });
      }
    }
  }
}
