// The active compute backend of this process, chosen once from SFTKIT_BACKEND (native, the default, or
// reference): new storages are allocated on it unless a caller names another backend.
import { ConfigError } from '../errors.ts';
import type { ComputeBackend } from './compute.ts';
import { nativeBackend } from './native.ts';
import { referenceBackend } from './reference-backend.ts';

export const BACKEND_NAMES = ['native', 'reference'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export function backendByName(name: BackendName): ComputeBackend {
  return name === 'native' ? nativeBackend : referenceBackend;
}

function fromEnv(): ComputeBackend {
  const raw = process.env.SFTKIT_BACKEND;
  if (raw === undefined || raw === '') return nativeBackend;
  if (!(BACKEND_NAMES as readonly string[]).includes(raw)) {
    throw new ConfigError(`SFTKIT_BACKEND=${raw} is not a compute backend (${BACKEND_NAMES.join(', ')})`, { where: 'SFTKIT_BACKEND' });
  }
  return backendByName(raw as BackendName);
}

let active: ComputeBackend = fromEnv();

/** The backend new storages are allocated on. */
export function activeBackend(): ComputeBackend {
  return active;
}

/** Runs fn with `backend` as the active one (tests comparing backends in one process). */
export function withBackend<T>(backend: ComputeBackend, fn: () => T): T {
  const before = active;
  active = backend;
  try {
    return fn();
  } finally {
    active = before;
  }
}
