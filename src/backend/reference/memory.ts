// The reference backend's memory: its own handle table over JS ArrayBuffers (a number space apart from the
// addon's: the engine records which backend owns a storage), and the bounds-checked typed views through which
// every reference kernel reads and writes, so no kernel can touch bytes outside its buffer.
import type { ByteOffset, Handle, MemStats } from '../binding.ts';
import { dim, fail, int } from './args.ts';

interface Block {
  buffer: ArrayBuffer;
  /** Where the block starts in `buffer` (non-zero only for file contents wrapped without a copy); a multiple of 8. */
  start: number;
  bytes: number;
  readonly: boolean;
}

const blocks = new Map<Handle, Block>();
let nextId = 1;
const stats = { liveBytes: 0, peakBytes: 0, osAllocs: 0, mappedBytes: 0 };

function add(block: Block): Handle {
  const h = nextId++;
  blocks.set(h, block);
  return h;
}

/** A new buffer of `bytes` bytes. JS memory always starts zeroed, so `zero` only states the caller's need. */
export function alloc(bytes: number, zero: boolean): Handle {
  dim('alloc', 'bytes', bytes);
  void zero;
  let buffer: ArrayBuffer;
  try {
    // Rounded up to 8 bytes so that any element type can view the whole block.
    buffer = new ArrayBuffer(Math.ceil(bytes / 8) * 8);
  } catch {
    fail('alloc', `out of memory allocating ${bytes} bytes`);
  }
  stats.liveBytes += bytes;
  stats.peakBytes = Math.max(stats.peakBytes, stats.liveBytes);
  stats.osAllocs += 1;
  return add({ buffer, start: 0, bytes, readonly: false });
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
  return add({ buffer, start, bytes: bytes.byteLength, readonly: true });
}

export function free(h: Handle): void {
  const b = blocks.get(h);
  if (b === undefined) fail('free', `free of unknown or already freed buffer ${h}`);
  blocks.delete(h);
  if (b.readonly) stats.mappedBytes -= b.bytes;
  else stats.liveBytes -= b.bytes;
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

/** The addon's statistics, for this table: file contents count as mapped bytes; nothing is cached. */
export function memStats(): MemStats {
  return { ...stats, cachedBytes: 0, liveBlocks: blocks.size };
}

export function resetPeak(): void {
  stats.peakBytes = stats.liveBytes;
}

/** Nothing is cached: freed ArrayBuffers go back to the JS heap. */
export function emptyCache(): void {}

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
    fail(op, `buffer '${name}' is not a live buffer (freed or invalid handle ${h})`);
  }
  if (write && b.readonly) fail(op, `buffer '${name}' is read-only (file contents)`);
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
