// One file from `/{repo}/resolve/{commit}/{path}` into a staging file, resumed with a Range request from
// whatever a previous attempt left, then checked against the listing (size, sha256 of LFS objects, git
// sha1 of regular files). The staging file is only ever appended to or removed when its content is wrong;
// the caller renames it into place once this returns.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat, truncate, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { HubError } from './hub-error.ts';
import { hubFetch, httpFailure, normalizeEtag, type HubConnection } from './http.ts';
import type { RepoFile } from './listing.ts';

export interface TransferOptions {
  conn: HubConnection;
  repoId: string;
  commit: string;
  file: RepoFile;
  /** The staging file (`….incomplete`); its current bytes are kept and resumed. */
  staging: string;
  /** Called with the bytes of this file now on disk (including resumed ones). */
  onBytes?: (bytesOnDisk: number) => void;
  /** Told when a dropped connection is retried. */
  onRetry?: (attempt: number, reason: string) => void;
  /** Extra attempts after a dropped connection (each resumes where the last stopped). */
  retries?: number;
  retryDelayMs?: number;
  /** Give up on a connection that sends nothing for this long. */
  idleTimeoutMs?: number;
}

const MAX_REDIRECTS = 10;

export function resolveUrl(endpoint: string, repoId: string, commit: string, path: string): string {
  return `${endpoint}/${repoId}/resolve/${commit}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** The hub's view of the file, read from its own responses (never from a CDN's). */
interface HubHeaders {
  commit?: string;
  etag?: string;
  size?: number;
}

/** Thrown when the body stops early: the bytes so far are on disk and a retry may resume. */
class DroppedTransfer extends Error {}

async function sizeOnDisk(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Hash of the content that `file.etag` names: sha256 for LFS, git's `blob <size>\0` sha1 otherwise. */
function contentHash(file: RepoFile): Hash {
  if (file.lfs) return createHash('sha256');
  const h = createHash('sha1');
  h.update(`blob ${file.size}\0`);
  return h;
}

/** Hash an existing file, e.g. one left by `--local_dir` or a resumed staging prefix. */
export async function hashFile(file: RepoFile, path: string): Promise<string> {
  const h = contentHash(file);
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Download (or finish downloading) one file into `staging` and verify it. */
export async function transferFile(opts: TransferOptions): Promise<void> {
  const retries = opts.retries ?? 5;
  const where = `${opts.repoId}/${opts.file.path}`;
  for (let attempt = 0; ; attempt++) {
    try {
      await attemptTransfer(opts);
      break;
    } catch (err) {
      if (!(err instanceof DroppedTransfer)) throw err;
      if (attempt >= retries) {
        const have = await sizeOnDisk(opts.staging);
        throw new HubError(`download of ${opts.file.path} stopped at ${have} of ${opts.file.size} bytes: ${err.message}`, {
          where,
          hint: `the partial file ${opts.staging} is kept; run the same command again to resume`,
        });
      }
      opts.onRetry?.(attempt + 1, err.message);
      await sleep((opts.retryDelayMs ?? 1000) * (attempt + 1));
    }
  }
  await verify(opts);
}

async function verify(opts: TransferOptions): Promise<void> {
  const { file, staging } = opts;
  const where = `${opts.repoId}/${file.path}`;
  const size = await sizeOnDisk(staging);
  if (size !== file.size) {
    // Not resumable: more bytes than the file has means the staging file is not a prefix of it.
    await unlink(staging).catch(() => undefined);
    throw new HubError(`${file.path} has ${size} bytes after download, the hub lists ${file.size}; the partial file was removed`, { where, hint: 'run again to download it afresh' });
  }
  const digest = await hashFile(file, staging);
  if (digest !== file.etag) {
    await unlink(staging).catch(() => undefined);
    const kind = file.lfs ? 'sha256' : 'git sha1';
    throw new HubError(`${file.path} is corrupt: its ${kind} is ${digest}, the hub lists ${file.etag}; it was removed and nothing was placed in the model folder`, {
      where,
      hint: 'run again; if it repeats, the server (or a proxy) serves wrong content',
    });
  }
}

/** One request: follow redirects by hand (to read the hub's headers and keep the token off the CDN), then stream. */
async function attemptTransfer(opts: TransferOptions): Promise<void> {
  const { conn, file, staging } = opts;
  const where = `${opts.repoId}/${file.path}`;
  const ctx = { repoId: opts.repoId, endpoint: conn.endpoint, what: file.path, hasToken: conn.token !== undefined };
  let offset = await sizeOnDisk(staging);
  if (offset > file.size) {
    await truncate(staging, 0);
    offset = 0;
  }
  if (offset === file.size) return; // a previous run got every byte; verify() decides
  opts.onBytes?.(offset);

  const fetch = hubFetch(conn);
  const hubOrigin = new URL(conn.endpoint).origin;
  const abort = new AbortController();
  const idleMs = opts.idleTimeoutMs ?? 60_000;
  let idle = setTimeout(() => abort.abort(new Error(`no data for ${idleMs / 1000} s`)), idleMs);
  const touch = (): void => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(new Error(`no data for ${idleMs / 1000} s`)), idleMs);
  };

  try {
    let url = new URL(resolveUrl(conn.endpoint, opts.repoId, opts.commit, file.path));
    const hub: HubHeaders = {};
    let res: Response | undefined;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (offset > 0) headers['range'] = `bytes=${offset}-`;
      try {
        res = await fetch(url, { headers, redirect: 'manual', signal: abort.signal });
      } catch (err) {
        throw new DroppedTransfer(describe(err, abort.signal));
      }
      touch();
      if (url.origin === hubOrigin) readHubHeaders(res, hub);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location !== null) {
        await res.body?.cancel();
        url = new URL(location, url);
        res = undefined;
        continue;
      }
      break;
    }
    if (res === undefined) throw new HubError(`too many redirects fetching ${file.path}`, { where });

    checkHubHeaders(hub, opts);
    let append = offset > 0;
    if (res.status === 416 && offset > 0) {
      // Nothing left past our offset: the server says we already have it all.
      await res.body?.cancel();
      return;
    }
    if (res.status === 200 && offset > 0) {
      // The server ignored the range: start over rather than append the whole file to a prefix.
      append = false;
      offset = 0;
      opts.onBytes?.(0);
    } else if (res.status === 206) {
      const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (range === null || Number(range[1]) !== offset) {
        await res.body?.cancel();
        throw new HubError(`the server answered the resume of ${file.path} with a wrong range (${res.headers.get('content-range') ?? 'none'})`, { where, hint: 'delete the .incomplete file and run again' });
      }
    } else if (!res.ok) {
      await res.body?.cancel();
      throw httpFailure(res.status, res.headers.get('x-error-code') ?? undefined, ctx);
    }
    if (res.body === null) throw new DroppedTransfer('empty response');

    const out = await open(staging, append ? 'a' : 'w');
    let onDisk = offset;
    try {
      const reader = res.body.getReader();
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          throw new DroppedTransfer(describe(err, abort.signal));
        }
        if (chunk.done) break;
        touch();
        if (onDisk + chunk.value.length > file.size) {
          reader.cancel().catch(() => undefined);
          throw new HubError(`the server sent more than the ${file.size} bytes listed for ${file.path}`, { where });
        }
        try {
          // A write may take only part of the buffer; loop until the chunk is on disk.
          for (let written = 0; written < chunk.value.length; ) {
            written += (await out.write(chunk.value, written, chunk.value.length - written)).bytesWritten;
          }
        } catch (err) {
          throw new HubError(`could not write ${staging}: ${err instanceof Error ? err.message : String(err)}`, {
            where: staging,
            hint: 'free some disk space (or choose another --cache_dir / --local_dir); the partial file is kept and resumes',
          });
        }
        onDisk += chunk.value.length;
        opts.onBytes?.(onDisk);
      }
      await out.sync();
    } finally {
      await out.close();
    }
    if (onDisk < file.size) throw new DroppedTransfer(`connection closed after ${onDisk} of ${file.size} bytes`);
  } finally {
    clearTimeout(idle);
  }
}

function describe(err: unknown, signal: AbortSignal): string {
  if (signal.aborted && signal.reason instanceof Error) return signal.reason.message;
  if (err instanceof Error) return err.cause instanceof Error ? `${err.message} (${err.cause.message})` : err.message;
  return String(err);
}

function readHubHeaders(res: Response, hub: HubHeaders): void {
  const commit = res.headers.get('x-repo-commit');
  const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
  const size = res.headers.get('x-linked-size');
  if (commit !== null) hub.commit ??= commit;
  if (etag !== undefined) hub.etag ??= etag;
  if (size !== null) hub.size ??= Number(size);
}

/** The hub's headers must describe the file the listing gave us; anything else is a moving or broken server. */
function checkHubHeaders(hub: HubHeaders, opts: TransferOptions): void {
  const where = `${opts.repoId}/${opts.file.path}`;
  const hint = 'the repository changed during the download or the server is inconsistent; run again';
  if (hub.commit !== undefined && hub.commit !== opts.commit) {
    throw new HubError(`the hub served ${opts.file.path} from commit ${hub.commit}, expected ${opts.commit}`, { where, hint });
  }
  if (hub.etag !== undefined && hub.etag !== opts.file.etag) {
    throw new HubError(`the hub's etag for ${opts.file.path} is ${hub.etag}, its listing says ${opts.file.etag}`, { where, hint });
  }
  if (hub.size !== undefined && hub.size !== opts.file.size) {
    throw new HubError(`the hub's size for ${opts.file.path} is ${hub.size}, its listing says ${opts.file.size}`, { where, hint });
  }
}

