// `download`: fetch a revision of a model repo into the shared cache (or a plain local folder), only the
// files that are missing, several at a time, every one verified before it appears in the snapshot.
import { lstat, mkdir, readFile, readlink, stat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import {
  COMMIT_HASH,
  blobPath,
  hiddenPathReason,
  localIncompletePath,
  localMetadataPath,
  refPath,
  repoCacheFolder,
  snapshotFolder,
  validateRepoId,
  validateRevision,
} from './cache-layout.ts';
import { findCachedSnapshot } from './cached-snapshot.ts';
import { hubSettings } from './env.ts';
import { transferFile, hashFile } from './file-transfer.ts';
import { HubError, HubNetworkError } from './hub-error.ts';
import type { FetchLike, HubConnection } from './http.ts';
import { listRepo, type RepoFile } from './listing.ts';
import { makeFileFilter } from './patterns.ts';
import type { DownloadEvent, PlannedFile } from './progress.ts';
import { ensureDirInside, moveIntoPlace, placeRelativeSymlink, writeFileAtomic } from './safe-fs.ts';

export interface DownloadOptions {
  repoId: string;
  /** Branch, tag or commit hash; 'main' by default. */
  revision?: string;
  /** Keep only files matching one of these globs (huggingface_hub allow_patterns semantics). */
  include?: readonly string[];
  /** Drop files matching one of these globs. */
  exclude?: readonly string[];
  /** Hub cache folder; default from HF_HUB_CACHE / HF_HOME. */
  cacheDir?: string;
  /** Write real files here instead of the cache (Python's --local-dir layout). */
  localDir?: string;
  /** Access token; default HF_TOKEN or the stored login. */
  token?: string;
  /** Hub URL; default HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Use only the cache; default HF_HUB_OFFLINE. */
  offline?: boolean;
  /** Environment to read HF_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Files fetched at the same time (default 4). */
  concurrency?: number;
  /** Resume attempts per file after a dropped connection (default 5). */
  retries?: number;
  retryDelayMs?: number;
  idleTimeoutMs?: number;
  fetch?: FetchLike;
  onEvent?: (event: DownloadEvent) => void;
}

export interface DownloadResult {
  /** The model directory: the snapshot folder in the cache, or the local dir. */
  path: string;
  commit: string;
  /** Repo paths of the files selected (all present under `path` now). */
  files: string[];
  /** Repo paths selected but not written because they are hidden paths (`.git/…`, `.cache/…`; see hiddenPathReason). */
  skipped: string[];
  /** Bytes fetched over the network in this call. */
  downloadedBytes: number;
  /** True when the hub was not asked (offline) or unreachable and a cached snapshot was used. */
  fromCache: boolean;
}

interface Target {
  /** Where the file must end up (a symlink in the cache, a real file in a local dir). */
  finalPath: string;
  /** Already in place and good? */
  present(): Promise<boolean>;
  /** Staging file for the transfer. */
  staging: string;
  /** Create the folders the staging and final paths need (refusing links that lead outside). */
  prepare(): Promise<void>;
  /** Move the verified staging file into place. */
  place(): Promise<void>;
  /** The content is already stored (a blob shared with another revision): place without a transfer. */
  haveContent(): Promise<boolean>;
}

function fileSizeIs(path: string, size: number): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile() && s.size === size,
    () => false,
  );
}

function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0,
  );
}

/** Cache layout: blob by etag, snapshot entry as a relative symlink to it. */
function cacheTarget(repoFolder: string, commit: string, file: RepoFile): Target {
  const snapshot = snapshotFolder(repoFolder, commit);
  const finalPath = join(snapshot, ...file.path.split('/'));
  const blob = blobPath(repoFolder, file.etag);
  const link = async (): Promise<void> => {
    await ensureDirInside(snapshot, dirname(file.path) === '.' ? '' : dirname(file.path));
    await placeRelativeSymlink(blob, finalPath);
  };
  return {
    finalPath,
    staging: `${blob}.incomplete`,
    async prepare() {
      await ensureDirInside(repoFolder, 'blobs');
    },
    async present() {
      try {
        const st = await lstat(finalPath);
        return st.isSymbolicLink() && (await readlink(finalPath)) === relative(dirname(finalPath), blob) && (await fileSizeIs(blob, file.size));
      } catch {
        return false;
      }
    },
    async haveContent() {
      if (!(await fileSizeIs(blob, file.size))) return false;
      await link();
      return true;
    },
    async place() {
      await moveIntoPlace(`${blob}.incomplete`, blob);
      await link();
    },
  };
}

/** Python's local-dir layout: the real file, plus `.cache/huggingface/download/<file>.metadata`. */
function localTarget(localDir: string, commit: string, file: RepoFile): Target {
  const finalPath = join(localDir, ...file.path.split('/'));
  const metadata = localMetadataPath(localDir, file.path);
  const staging = localIncompletePath(localDir, file.path, file.etag);
  const writeMetadata = (): Promise<void> => writeFileAtomic(metadata, `${commit}\n${file.etag}\n${Date.now() / 1000}\n`);
  const dir = dirname(file.path) === '.' ? '' : dirname(file.path);
  return {
    finalPath,
    staging,
    async prepare() {
      await ensureDirInside(localDir, dir);
      await ensureDirInside(localDir, join('.cache/huggingface/download', dir));
    },
    async present() {
      if (!(await fileSizeIs(finalPath, file.size)) || (await lstat(finalPath)).isSymbolicLink()) return false;
      const meta = await readFile(metadata, 'utf8').catch(() => '');
      if (meta.split('\n')[1]?.trim() === file.etag) return true;
      // A file of the right size without our metadata (copied in, or from an older tool): trust its hash only.
      if ((await hashFile(file, finalPath)) !== file.etag) return false;
      await ensureDirInside(localDir, join('.cache/huggingface/download', dir));
      await writeMetadata();
      return true;
    },
    async haveContent() {
      return false;
    },
    async place() {
      await ensureDirInside(localDir, dir);
      await moveIntoPlace(staging, finalPath);
      await writeMetadata();
    },
  };
}

async function prepareLocalDir(localDir: string): Promise<void> {
  await ensureDirInside(localDir, '.cache/huggingface/download');
  const gitignore = join(localDir, '.cache', 'huggingface', '.gitignore');
  if (!(await fileSizeIs(gitignore, 1))) await writeFileAtomic(gitignore, '*');
}

export async function snapshotDownload(opts: DownloadOptions): Promise<DownloadResult> {
  const settings = hubSettings(opts.env ?? process.env);
  const revision = opts.revision ?? 'main';
  const cacheDir = opts.cacheDir ?? settings.cacheDir;
  const offline = opts.offline ?? settings.offline;
  const conn: HubConnection = { endpoint: (opts.endpoint ?? settings.endpoint).replace(/\/+$/, ''), token: opts.token ?? settings.token };
  if (opts.fetch) conn.fetch = opts.fetch;
  const emit = opts.onEvent ?? ((): void => undefined);
  validateRepoId(opts.repoId);
  validateRevision(revision);

  if (offline) return offlineResult(opts, cacheDir, revision);

  let listing;
  try {
    listing = await listRepo(conn, opts.repoId, revision);
  } catch (err) {
    // Like huggingface_hub: an unreachable hub falls back to a cached snapshot of the same revision.
    const cached = err instanceof HubNetworkError && opts.localDir === undefined ? await findCachedSnapshot(cacheDir, opts.repoId, revision) : undefined;
    if (cached === undefined) throw err;
    emit({ type: 'cache-fallback', commit: cached.commit, reason: err instanceof Error ? err.message : String(err) });
    return { path: cached.path, commit: cached.commit, files: [], skipped: [], downloadedBytes: 0, fromCache: true };
  }
  const { commit } = listing;
  const keep = makeFileFilter({ include: opts.include ?? [], exclude: opts.exclude ?? [] });
  // Hidden paths are skipped with a warning rather than failing the download: real repos sometimes carry a
  // `.github/` or `.ipynb_checkpoints/` folder, and the model files are no less usable without them.
  const skipped: string[] = [];
  const files = listing.files.filter((f) => {
    if (!keep(f.path)) return false;
    const reason = hiddenPathReason(f.path);
    if (reason === null) return true;
    skipped.push(f.path);
    emit({ type: 'skipped', path: f.path, reason });
    return false;
  });
  if (files.length === 0) {
    const sample = listing.files.slice(0, 8).map((f) => f.path).join(', ');
    throw new HubError(`no file of ${opts.repoId}@${revision} matches the --include/--exclude patterns`, {
      where: opts.repoId,
      hint:
        skipped.length > 0
          ? `the files they match are hidden paths, which are never downloaded: ${skipped.slice(0, 8).join(', ')}`
          : listing.files.length === 0
            ? 'the repository is empty'
            : `its files include: ${sample}${listing.files.length > 8 ? ', …' : ''}`,
    });
  }

  const repoFolder = repoCacheFolder(cacheDir, opts.repoId);
  let root: string;
  if (opts.localDir !== undefined) {
    root = opts.localDir;
    await prepareLocalDir(root);
  } else {
    root = snapshotFolder(repoFolder, commit);
    await mkdir(join(repoFolder, 'blobs'), { recursive: true });
    await ensureDirInside(repoFolder, `snapshots/${commit}`);
  }
  const targets = new Map(files.map((f) => [f.path, opts.localDir !== undefined ? localTarget(root, commit, f) : cacheTarget(repoFolder, commit, f)]));

  const plan: PlannedFile[] = [];
  for (const f of files) {
    const t = targets.get(f.path) as Target;
    const cached = await t.present();
    plan.push({ path: f.path, size: f.size, status: cached ? 'cached' : 'download', resumeFrom: cached ? 0 : Math.min(await sizeOf(t.staging), f.size) });
  }
  emit({ type: 'plan', repoId: opts.repoId, revision, commit, files: plan });

  let downloadedBytes = 0;
  const queue = files.filter((_, i) => plan[i]?.status === 'download');
  const failures: unknown[] = [];
  // Two paths with the same content share one blob: one transfer, the other waits for it and links.
  const inflight = new Map<string, Promise<void>>();
  const fetchFile = async (file: RepoFile, t: Target): Promise<void> => {
    await t.prepare();
    const resumeFrom = Math.min(await sizeOf(t.staging), file.size);
    emit({ type: 'start', path: file.path, size: file.size, resumeFrom });
    let last = resumeFrom;
    await transferFile({
      conn,
      repoId: opts.repoId,
      commit,
      file,
      staging: t.staging,
      onBytes: (n: number) => {
        if (n > last) downloadedBytes += n - last;
        last = n;
        emit({ type: 'bytes', path: file.path, bytesOnDisk: n });
      },
      onRetry: (attempt: number, reason: string) => emit({ type: 'retry', path: file.path, attempt, reason }),
      ...(opts.retries !== undefined ? { retries: opts.retries } : {}),
      ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
      ...(opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
    });
    await t.place();
  };
  const worker = async (): Promise<void> => {
    for (let file = queue.shift(); file !== undefined && failures.length === 0; file = queue.shift()) {
      const t = targets.get(file.path) as Target;
      try {
        const running = inflight.get(t.staging);
        if (running !== undefined) await running;
        if (!(await t.haveContent())) {
          const job = fetchFile(file, t);
          inflight.set(t.staging, job);
          await job;
        }
        emit({ type: 'done', path: file.path, size: file.size });
      } catch (err) {
        failures.push(err);
      }
    }
  };
  const concurrency = Math.max(1, Math.min(opts.concurrency ?? 4, queue.length));
  await Promise.all(Array.from({ length: concurrency }, worker));
  if (failures.length > 0) throw failures[0];

  // The branch or tag now names this commit; written last, so offline lookups only find finished downloads.
  if (opts.localDir === undefined && revision !== commit) {
    const ref = refPath(repoFolder, revision);
    await ensureDirInside(repoFolder, relative(repoFolder, dirname(ref)));
    await writeFileAtomic(ref, commit);
  }
  return { path: root, commit, files: files.map((f) => f.path), skipped, downloadedBytes, fromCache: false };
}

async function offlineResult(opts: DownloadOptions, cacheDir: string, revision: string): Promise<DownloadResult> {
  if (opts.localDir !== undefined) {
    const present = await stat(opts.localDir).then((s) => s.isDirectory(), () => false);
    if (present) return { path: opts.localDir, commit: COMMIT_HASH.test(revision) ? revision : '', files: [], skipped: [], downloadedBytes: 0, fromCache: true };
    throw new HubError(`HF_HUB_OFFLINE is set and ${opts.localDir} does not exist`, { where: opts.localDir, hint: 'unset HF_HUB_OFFLINE to download it' });
  }
  const cached = await findCachedSnapshot(cacheDir, opts.repoId, revision);
  if (cached === undefined) {
    throw new HubError(`${opts.repoId}@${revision} is not in the cache at ${cacheDir}, and HF_HUB_OFFLINE is set`, {
      where: opts.repoId,
      hint: `download it first without HF_HUB_OFFLINE (sftkit download ${opts.repoId}), or point HF_HUB_CACHE / HF_HOME at a cache that has it`,
    });
  }
  return { path: cached.path, commit: cached.commit, files: [], skipped: [], downloadedBytes: 0, fromCache: true };
}
