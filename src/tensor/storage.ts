// Storage blocks of a compute backend and their ownership: step scopes release every block made inside them
// when they close (except what escapes); a FinalizationRegistry is only a backstop for blocks nobody released.
import type { ComputeBackend } from '../backend/compute.ts';
import { activeBackend } from '../backend/select.ts';

/** Per backend, frees the memory of storages that were garbage-collected without being released. */
const backstops = new Map<ComputeBackend, FinalizationRegistry<number>>();

function backstopOf(backend: ComputeBackend): FinalizationRegistry<number> {
  let registry = backstops.get(backend);
  if (!registry) {
    registry = new FinalizationRegistry<number>((handle) => {
      try {
        backend.free(handle);
      } catch {
        // already freed by its owner: nothing to do
      }
    });
    backstops.set(backend, registry);
  }
  return registry;
}

/** Scopes currently open, innermost last; each owns the storages allocated while it was innermost. */
const scopes: Set<Storage>[] = [];
/** Serial number of the next storage made: autograd tells the gradients it made from earlier tensors. */
let nextSerial = 0;

export function storageSerial(): number {
  return nextSerial;
}

export class Storage {
  /** The compute backend whose memory this is; ops on tensors over it run that backend's kernels. */
  readonly backend: ComputeBackend;
  readonly handle: number;
  readonly bytes: number;
  readonly readonly: boolean;
  /** Order of creation (see storageSerial). */
  readonly serial = nextSerial++;
  private freed = false;
  /** The scope that will release this storage, or null when it is persistent (released by hand or by GC). */
  owner: Set<Storage> | null = null;

  private constructor(backend: ComputeBackend, handle: number, bytes: number, readonly: boolean) {
    this.backend = backend;
    this.handle = handle;
    this.bytes = bytes;
    this.readonly = readonly;
    backstopOf(backend).register(this, handle, this);
  }

  /**
   * Allocates `bytes` of 64-byte-aligned memory on `backend` (the active one by default), owned by the
   * innermost open scope (if any).
   */
  static alloc(bytes: number, opts: { zero?: boolean; persistent?: boolean } = {}, backend: ComputeBackend = activeBackend()): Storage {
    const s = new Storage(backend, backend.alloc(bytes, opts.zero ?? false), bytes, false);
    const scope = scopes[scopes.length - 1];
    if (scope && !opts.persistent) {
      scope.add(s);
      s.owner = scope;
    }
    return s;
  }

  /**
   * A whole file, read-only and persistent until released: mapped on the native backend, copied into a
   * buffer on a backend whose memory the host cannot map.
   */
  static mmap(path: string, backend: ComputeBackend = activeBackend()): Storage {
    const [handle, size] = backend.loadFile(path);
    return new Storage(backend, handle, size, true);
  }

  get isFreed(): boolean {
    return this.freed;
  }

  release(): void {
    if (this.freed) return;
    this.freed = true;
    this.owner?.delete(this);
    this.owner = null;
    backstopOf(this.backend).unregister(this);
    this.backend.free(this.handle);
  }

  /** Moves this storage out of its scope into the enclosing one (or makes it persistent at the outermost). */
  escape(to: Set<Storage> | null): void {
    if (this.owner === to) return;
    this.owner?.delete(this);
    this.owner = to;
    to?.add(this);
  }
}

/** Opens a scope, runs fn, and releases every storage allocated inside it that fn did not return or keep. */
export function withScope<T>(fn: () => T, collectReturned: (value: T) => Storage[]): T {
  const scope = new Set<Storage>();
  scopes.push(scope);
  let value: T;
  try {
    value = fn();
  } catch (err) {
    scopes.pop();
    for (const s of [...scope]) s.release();
    throw err;
  }
  scopes.pop();
  const parent = scopes[scopes.length - 1] ?? null;
  for (const s of collectReturned(value)) if (s.owner === scope) s.escape(parent);
  for (const s of [...scope]) s.release();
  return value;
}

/** The scope that would own a storage allocated now, and its parent. */
export function currentScope(): Set<Storage> | null {
  return scopes[scopes.length - 1] ?? null;
}

export function parentScope(): Set<Storage> | null {
  return scopes[scopes.length - 2] ?? null;
}

export function scopeDepth(): number {
  return scopes.length;
}
