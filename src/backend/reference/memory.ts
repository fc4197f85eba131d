// The reference backend's memory: its own handle table over JS ArrayBuffers (a number space apart from the
// addon's: the engine records which backend owns a storage) with the addon's size-bucketed cache, and the
// bounds-checked typed views through which every reference kernel reads and writes, so no kernel can touch
// bytes outside its buffer.
import type { ByteOffset, Handle, MemStats } from '../binding.ts';
import { dim, fail, int } from './args.ts';

interface Block {
  buffer: ArrayBuffer;
  /** Where the block starts in `buffer` (non-zero only for file contents wrapped without a copy); a multiple of 8. */
  start: number;
  bytes: number;
  /** The cache bucket (bytes of `buffer`); 0 for file contents. */
  bucket: number;
  readonly: boolean;
}

const blocks = new Map<Handle, Block>();
let nextId = 1;
/** Freed buffers by bucket size, for reuse: the addon's caching allocator, so memStats reads the same on both. */
const cache = new Map<number, ArrayBuffer[]>();
const stats = { liveBytes: 0, peakBytes: 0, cachedBytes: 0, osAllocs: 0, mappedBytes: 0 };

function add(block: Block): Handle {
  const h = nextId++;
  blocks.set(h, block);
  return h;
}

/** The addon's buckets: multiples of 64 B up to 4 KiB; above that, 4 steps per power of two (at most 25% slack). */
function bucketSize(bytes: number): number {
  const b = Math.max(bytes, 1);
  if (b <= 4096) return Math.ceil(b / 64) * 64;
  let p = 4096;
  while (p * 2 < b) p *= 2;
  const step = p / 4;
  return Math.ceil(b / step) * step;
}

/**
 * A buffer of `bytes` bytes, reused from the cache when one of its bucket is free. As in the addon, a reused
 * buffer keeps its old contents unless `zero` is set; a new one starts zeroed (JS memory always does).
 */
export function alloc(bytes: number, zero: boolean): Handle {
  dim('alloc', 'bytes', bytes);
  const bucket = bucketSize(bytes);
  let buffer = cache.get(bucket)?.pop();
  if (buffer !== undefined) {
    stats.cachedBytes -= bucket;
    if (zero) new Uint8Array(buffer, 0, bytes).fill(0);
  } else {
    try {
      buffer = new ArrayBuffer(bucket);
    } catch {
      // Give the cache back and try once more before failing.
      emptyCache();
      try {
        buffer = new ArrayBuffer(bucket);
      } catch {
        fail('alloc', `out of memory allocating ${bytes} bytes`);
      }
    }
    stats.osAllocs += 1;
  }
  stats.liveBytes += bucket;
  stats.peakBytes = Math.max(stats.peakBytes, stats.liveBytes);
  return add({ buffer, start: 0, bytes, bucket, readonly: false });
}

/**
 * A read-only buffer over `bytes` (file contents): wrapped without a copy when they start 8-byte aligned in
 * their ArrayBuffer, copied otherwise. The caller must not change the bytes while the handle lives.
 */
export function fromBytes(bytes: Uint8Array): Handle {
  let buffer = bytes.buffer as ArrayBuffer;
  let start = bytes.byteOffset;
  if (start % 8 !== 0 || !(buffer instanceof ArrayBuffer)) {
    const copy = new Uint8Array(Math.ceil(bytes.byteLength / 8) * 8);
    copy.set(bytes);
    buffer = copy.buffer;
    start = 0;
  }
  stats.mappedBytes += bytes.byteLength;
  return add({ buffer, start, bytes: bytes.byteLength, bucket: 0, readonly: true });
}

export function free(h: Handle): void {
  const b = blocks.get(h);
  if (b === undefined) fail('free', `free of unknown or already freed buffer ${h}`);
  blocks.delete(h);
  if (b.readonly) {
    stats.mappedBytes -= b.bytes;
    return;
  }
  let list = cache.get(b.bucket);
  if (list === undefined) cache.set(b.bucket, (list = []));
  list.push(b.buffer);
  stats.liveBytes -= b.bucket;
  stats.cachedBytes += b.bucket;
}

/** Size in bytes of a live handle, -1 when unknown. */
export function size(h: Handle): number {
  return blocks.get(h)?.bytes ?? -1;
}

function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

export function write(h: Handle, off: ByteOffset, src: ArrayBufferView): void {
  if (!ArrayBuffer.isView(src)) fail('write', 'third argument must be a typed array');
  u8('write', 'buffer', h, off, src.byteLength, true).set(bytesOf(src));
}

export function read(h: Handle, off: ByteOffset, dst: ArrayBufferView): void {
  if (!ArrayBuffer.isView(dst)) fail('read', 'third argument must be a typed array');
  bytesOf(dst).set(u8('read', 'buffer', h, off, dst.byteLength, false));
}

/** The addon's statistics, for this table (live and cached bytes in buckets; file contents count as mapped bytes). */
export function memStats(): MemStats {
  return { ...stats, liveBlocks: blocks.size };
}

export function resetPeak(): void {
  stats.peakBytes = stats.liveBytes;
}

/** Drops the cached buffers (the JS heap takes them back). */
export function emptyCache(): void {
  cache.clear();
  stats.cachedBytes = 0;
}

/**
 * The block and byte position of `elems` elements of `elemBytes` bytes at `off` of handle `h`, checked as the
 * glue's `buf` checks them; null for handle 0 when `optional`. A dead handle passes only for an empty extent.
 */
function region(
  op: string, name: string, h: Handle, off: ByteOffset, elems: number, elemBytes: number, write: boolean, optional: boolean,
): { buffer: ArrayBuffer; at: number } | null {
  int(op, name, h);
  int(op, name, off);
  if (h === 0 && optional) return null;
  const b = blocks.get(h);
  if (b === undefined) {
    if (elems === 0) return { buffer: new ArrayBuffer(0), at: 0 };
    // The addon's words, so that callers and tests see one message whichever backend owns the buffer.
    fail(op, `buffer '${name}' is not a live native buffer (freed or invalid handle ${h})`);
  }
  if (write && b.readonly) fail(op, `buffer '${name}' is read-only (a file mapping)`);
  if (off < 0 || off % elemBytes !== 0) fail(op, `buffer '${name}' has a misaligned offset ${off}`);
  if (elems < 0) fail(op, `buffer '${name}' has a negative extent`);
  const need = off + elems * elemBytes;
  if (need > b.bytes) fail(op, `buffer '${name}' too small: needs ${need} bytes, has ${b.bytes}`);
  return { buffer: b.buffer, at: b.start + off };
}

export function f32(op: string, name: string, h: Handle, off: ByteOffset, elems: number, write: boolean): Float32Array {
  const r = region(op, name, h, off, elems, 4, write, false)!;
  return new Float32Array(r.buffer, r.at, elems);
}

/** An optional fp32 buffer: null for handle 0. */
export function f32opt(op: string, name: string, h: Handle, off: ByteOffset, elems: number, write: boolean): Float32Array | null {
  const r = region(op, name, h, off, elems, 4, write, true);
  return r === null ? null : new Float32Array(r.buffer, r.at, elems);
}

export function i32(op: string, name: string, h: Handle, off: ByteOffset, elems: number, write: boolean): Int32Array {
  const r = region(op, name, h, off, elems, 4, write, false)!;
  return new Int32Array(r.buffer, r.at, elems);
}

export function i32opt(op: string, name: string, h: Handle, off: ByteOffset, elems: number, write: boolean): Int32Array | null {
  const r = region(op, name, h, off, elems, 4, write, true);
  return r === null ? null : new Int32Array(r.buffer, r.at, elems);
}

/** Raw 32-bit words (copies that must keep every bit, NaN payloads included). */
export function u32(op: string, name: string, h: Handle, off: ByteOffset, elems: number, write: boolean): Uint32Array {
  const r = region(op, name, h, off, elems, 4, write, false)!;
  return new Uint32Array(r.buffer, r.at, elems);
}

export function u16(op: string, name: string, h: Handle, off: ByteOffset, elems: number, write: boolean): Uint16Array {
  const r = region(op, name, h, off, elems, 2, write, false)!;
  return new Uint16Array(r.buffer, r.at, elems);
}

export function u8(op: string, name: string, h: Handle, off: ByteOffset, elems: number, write: boolean): Uint8Array {
  const r = region(op, name, h, off, elems, 1, write, false)!;
  return new Uint8Array(r.buffer, r.at, elems);
}

/** Whether two views share bytes (the cast glue refuses overlapping src and dst). */
export function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.buffer !== b.buffer || a.byteLength === 0 || b.byteLength === 0) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}
