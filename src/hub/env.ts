// Hub settings read from the environment the way Python's huggingface_hub reads them, so both share one cache.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubSettings {
  /** Base URL of the hub (HF_ENDPOINT), without a trailing slash. */
  endpoint: string;
  /** The hub cache folder holding `models--org--name/` (HF_HUB_CACHE, else HF_HOME/hub). */
  cacheDir: string;
  /** Access token (HF_TOKEN, else the token file `huggingface-cli login` writes), if any. */
  token: string | undefined;
  /** HF_HUB_OFFLINE: never touch the network, use only what the cache holds. */
  offline: boolean;
}

function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}

/** Python's `_is_true`: these spellings turn a flag on, anything else leaves it off. */
export function envFlag(value: string | undefined): boolean {
  return value !== undefined && ['1', 'on', 'yes', 'true'].includes(value.trim().toLowerCase());
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== '' ? value.trim() : undefined;
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  const home = nonEmpty(env['HF_HOME']);
  if (home) return resolve(expandHome(home));
  const xdg = nonEmpty(env['XDG_CACHE_HOME']);
  return resolve(expandHome(xdg ?? '~/.cache'), 'huggingface');
}

/** HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else HF_HOME/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = nonEmpty(env['HF_HUB_CACHE']) ?? nonEmpty(env['HUGGINGFACE_HUB_CACHE']);
  return dir ? resolve(expandHome(dir)) : join(hfHome(env), 'hub');
}

/** HF_TOKEN (or the legacy HUGGING_FACE_HUB_TOKEN), else the token file under HF_HOME (HF_TOKEN_PATH). */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = nonEmpty(env['HF_TOKEN']) ?? nonEmpty(env['HUGGING_FACE_HUB_TOKEN']);
  if (fromEnv) return fromEnv;
  const file = nonEmpty(env['HF_TOKEN_PATH']) ?? join(hfHome(env), 'token');
  try {
    return nonEmpty(readFileSync(expandHome(file), 'utf8'));
  } catch {
    // No stored login: anonymous access.
    return undefined;
  }
}

export function hubSettings(env: NodeJS.ProcessEnv = process.env): HubSettings {
  const endpoint = (nonEmpty(env['HF_ENDPOINT']) ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  return { endpoint, cacheDir: hubCacheDir(env), token: hubToken(env), offline: envFlag(env['HF_HUB_OFFLINE'] || env['TRANSFORMERS_OFFLINE']) };
}
