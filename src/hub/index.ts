// Public API of the hub layer: download into the cache shared with Python's huggingface_hub, and resolve
// "a model directory or a repo id" for every command that reads a model.
export { snapshotDownload, type DownloadOptions, type DownloadResult } from './snapshot-download.ts';
export { resolveModelDir, type ResolveOptions, type ResolvedModelDir } from './resolve-model-dir.ts';
export { findCachedSnapshot, type CachedSnapshot } from './cached-snapshot.ts';
export { hubSettings, hubCacheDir, hfHome, hubToken, DEFAULT_ENDPOINT, type HubSettings } from './env.ts';
export { repoCacheFolder, validateRepoId } from './cache-layout.ts';
export { globToRegExp, makeFileFilter, type FileFilter } from './patterns.ts';
export { DownloadProgress, formatBytes, formatDuration, type DownloadEvent, type PlannedFile, type FileProgress, type OverallProgress } from './progress.ts';
export { HubError, HubNetworkError } from './hub-error.ts';
