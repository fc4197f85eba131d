// Byte-level mutators: bit flips, boundary integers (huge lengths and counts), truncation, byte insert and
// delete, chunk duplication. Half of the edits land in the "hot" ranges a target names (headers, pickles).
import { int, pick, type Rng } from './rng.ts';

export type Range = readonly [number, number];

/** Values that hit length checks: zero, sign bits, all-ones, and sizes just past 2^31, 2^32 and 2^53. */
const INTERESTING_32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 332_000_000];
const INTERESTING_64 = [0n, 1n, 0xffffffffn, 0x100000000n, 0x400000000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 64n - 1n];

function position(r: Rng, size: number, hot: readonly Range[]): number {
  if (size === 0) return 0;
  if (hot.length > 0 && r() < 0.5) {
    const [a, b] = pick(r, hot);
    const lo = Math.min(Math.max(0, a), size - 1);
    const hi = Math.min(Math.max(lo + 1, b), size);
    return lo + int(r, hi - lo);
  }
  return int(r, size);
}

/** One byte-level edit of `base` (never modified in place). */
export function mutateBytes(base: Uint8Array, r: Rng, opts: { hot?: readonly Range[] } = {}): Uint8Array {
  const hot = opts.hot ?? [];
  const b = Buffer.from(base);
  const at = position(r, b.byteLength, hot);
  switch (int(r, 9)) {
    case 0: { // bit flips
      for (let i = 0, n = 1 + int(r, 8); i < n && b.byteLength > 0; i++) {
        const p = position(r, b.byteLength, hot);
        b[p] = b[p]! ^ (1 << int(r, 8));
      }
      return b;
    }
    case 1: { // a boundary 32-bit integer (lengths, counts, offsets)
      if (b.byteLength < 4) return b;
      b.writeUInt32LE(pick(r, INTERESTING_32), Math.min(at, b.byteLength - 4));
      return b;
    }
    case 2: { // a boundary 64-bit integer
      if (b.byteLength < 8) return b;
      b.writeBigUInt64LE(pick(r, INTERESTING_64), Math.min(at, b.byteLength - 8));
      return b;
    }
    case 3: return b.subarray(0, int(r, b.byteLength + 1)); // truncation
    case 4: return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(r, 32))]); // delete
    case 5: { // insert random bytes
      const junk = Buffer.from(Array.from({ length: 1 + int(r, 32) }, () => int(r, 256)));
      return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
    }
    case 6: { // duplicate a chunk elsewhere
      const from = position(r, b.byteLength, hot);
      const chunk = b.subarray(from, from + 1 + int(r, 64));
      return Buffer.concat([b.subarray(0, at), chunk, b.subarray(at)]);
    }
    case 7: { // overwrite a few bytes
      for (let i = 0, n = 1 + int(r, 4); i < n && b.byteLength > 0; i++) b[position(r, b.byteLength, hot)] = int(r, 256);
      return b;
    }
    default: { // an ASCII digit run (text formats: JSON numbers, YAML scalars)
      const digits = Buffer.from(String(pick(r, INTERESTING_32)) + '0'.repeat(int(r, 12)));
      return Buffer.concat([b.subarray(0, at), digits, b.subarray(at + int(r, 4))]);
    }
  }
}
