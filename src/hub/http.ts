// Requests to the hub: headers (token, user agent), redirects that drop the token when leaving the hub,
// and HTTP failures turned into HubErrors that say what to do (gated or private repos, tokens, offline mode).
import { HubApiError } from '@huggingface/hub';
import { HubError, HubNetworkError } from './hub-error.ts';

export type FetchLike = typeof fetch;

export interface HubConnection {
  /** Base URL of the hub, no trailing slash. */
  endpoint: string;
  token: string | undefined;
  /** fetch to use (tests and proxies may replace it). */
  fetch?: FetchLike;
}

const USER_AGENT = 'sftkit/0.1; hf_hub/js';

/**
 * A fetch that adds our headers, and the token only for requests to the hub itself, so neither the
 * @huggingface/hub listing calls nor a CDN behind a redirect ever see it unless it is the hub.
 */
export function hubFetch(conn: HubConnection): FetchLike {
  const base = conn.fetch ?? fetch;
  const origin = new URL(conn.endpoint).origin;
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = new Headers(init?.headers);
    headers.set('user-agent', USER_AGENT);
    if (conn.token && url.origin === origin) headers.set('authorization', `Bearer ${conn.token}`);
    return base(url, { ...init, headers });
  };
}

/** `W/"abc"` and `"abc"` are the same etag to us, as to huggingface_hub. */
export function normalizeEtag(etag: string | null): string | undefined {
  if (etag === null) return undefined;
  return etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

export interface FailureContext {
  repoId: string;
  endpoint: string;
  /** What we were fetching, e.g. "the file list" or "config.json". */
  what: string;
  hasToken: boolean;
  revision?: string;
}

/** The message and hint for an HTTP failure, from its status and the hub's X-Error-Code. */
export function httpFailure(status: number, errorCode: string | undefined, ctx: FailureContext): HubError {
  const where = ctx.repoId;
  const page = `${ctx.endpoint}/${ctx.repoId}`;
  const tokenHint = ctx.hasToken
    ? `the token was rejected or has no access to ${ctx.repoId}; check it at ${ctx.endpoint}/settings/tokens (fine-grained tokens need read access to this repo)`
    : `if ${ctx.repoId} is private or gated, pass --token or set HF_TOKEN to a token that can read it (${ctx.endpoint}/settings/tokens); otherwise check the repo id`;
  if (status === 401) {
    return new HubError(`the hub refused access to ${ctx.repoId} (HTTP 401): the repository is private, gated or does not exist`, { where, status, hint: tokenHint });
  }
  if (status === 403 || errorCode === 'GatedRepo') {
    return new HubError(`access to ${ctx.repoId} is restricted (HTTP ${status}): it is a gated repository your account has not been granted`, {
      where,
      status,
      hint: `open ${page}, accept its conditions with the account of your token, and use that token (--token or HF_TOKEN)`,
    });
  }
  if (status === 404) {
    if (errorCode === 'RevisionNotFound') {
      return new HubError(`revision '${ctx.revision ?? ''}' not found in ${ctx.repoId} (HTTP 404)`, { where, status, hint: 'give an existing branch, tag or commit hash with --revision' });
    }
    if (errorCode === 'EntryNotFound' || ctx.what !== 'the repository information') {
      return new HubError(`${ctx.what} not found in ${ctx.repoId} (HTTP 404)`, { where: `${ctx.repoId}/${ctx.what}`, status, hint: 'the repository changed while downloading, or the server is inconsistent; run again' });
    }
    return new HubError(`repository ${ctx.repoId} not found (HTTP 404)`, { where, status, hint: tokenHint });
  }
  return new HubError(`the hub answered HTTP ${status} for ${ctx.what} of ${ctx.repoId}`, { where, status, hint: 'the server may be busy; run again later (a partial download resumes)' });
}

/** A network-level failure (refused, reset, DNS, timeout) as a HubError. */
export function networkFailure(err: unknown, ctx: FailureContext): HubNetworkError {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
  return new HubNetworkError(`could not reach the hub at ${ctx.endpoint} while fetching ${ctx.what} of ${ctx.repoId}: ${cause}`, {
    where: ctx.repoId,
    hint: 'check the network or HF_ENDPOINT; with HF_HUB_OFFLINE=1 only the local cache is used',
  });
}

/** Errors thrown by @huggingface/hub calls, mapped onto ours; `errorCode` is the response's X-Error-Code. */
export function fromLibraryError(err: unknown, errorCode: string | undefined, ctx: FailureContext): HubError {
  if (err instanceof HubError) return err;
  if (err instanceof HubApiError) return httpFailure(err.statusCode, errorCode, ctx);
  return networkFailure(err, ctx);
}
