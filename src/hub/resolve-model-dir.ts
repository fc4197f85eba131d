// "A model directory or a repo id": every command that reads a model takes either. A path that exists is
// used as is; otherwise the name is a repo id, resolved through the shared cache and downloaded when missing.
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { hubSettings } from './env.ts';
import { HubError } from './hub-error.ts';
import { snapshotDownload, type DownloadOptions } from './snapshot-download.ts';

export interface ResolvedModelDir {
  /** A local directory holding the model's files. */
  path: string;
  /** Set when `path` came from the hub (or its cache). */
  repoId?: string;
  commit?: string;
}

export type ResolveOptions = Omit<DownloadOptions, 'repoId' | 'localDir'>;

const REPO_ID_SHAPE = /^(?:[\w.-]+\/)?[\w.-]+$/;

/**
 * Resolve `nameOrPath` to a model directory. Online, the hub is asked which commit the revision is and only
 * missing files are fetched (as huggingface_hub's snapshot_download does); with HF_HUB_OFFLINE=1 the cache
 * alone answers, and a model missing from it is refused with a message saying so.
 */
export async function resolveModelDir(nameOrPath: string, opts: ResolveOptions = {}): Promise<ResolvedModelDir> {
  const local = await stat(nameOrPath).then(
    (s) => s,
    () => undefined,
  );
  if (local !== undefined) {
    if (!local.isDirectory()) throw new HubError(`${nameOrPath} is a file, not a model directory`, { where: nameOrPath, hint: 'give the folder that holds config.json' });
    return { path: resolve(nameOrPath) };
  }
  const looksLikePath = nameOrPath.startsWith('.') || nameOrPath.startsWith('/') || nameOrPath.startsWith('~') || nameOrPath.split('/').length > 2;
  if (looksLikePath || !REPO_ID_SHAPE.test(nameOrPath)) {
    throw new HubError(`model directory ${nameOrPath} does not exist`, { where: nameOrPath, hint: "give an existing folder, or a hub repo id such as 'openai-community/gpt2'" });
  }
  const offline = opts.offline ?? hubSettings(opts.env ?? process.env).offline;
  try {
    const result = await snapshotDownload({ ...opts, repoId: nameOrPath });
    return { path: result.path, repoId: nameOrPath, commit: result.commit };
  } catch (err) {
    if (offline && err instanceof HubError) {
      throw new HubError(`${nameOrPath} is neither a local directory nor in the hub cache, and HF_HUB_OFFLINE is set`, {
        where: nameOrPath,
        hint: err.hint ?? `download it first: sftkit download ${nameOrPath}`,
      });
    }
    throw err;
  }
}
