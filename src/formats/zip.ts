// Minimal zip central-directory reader (zip64 included) for PyTorch checkpoints: it locates each entry's data
// so tensors can be read in place with positioned reads. torch.save stores entries uncompressed; a deflated
// entry is inflated only when small (the pickle), so a zip bomb cannot make us allocate its claimed size.
import { inflateRawSync } from 'node:zlib';
import { FormatError } from '../errors.ts';
import type { ByteSource } from './byte-source.ts';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated. */
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

export interface ZipArchive {
  readonly source: ByteSource;
  readonly entries: Map<string, ZipEntry>;
  /** Absolute file offset of a stored entry's bytes (checked to lie inside the file). */
  dataOffset(entry: ZipEntry): number;
  /** A whole entry in memory, inflating if needed, refused above maxBytes. */
  readEntry(entry: ZipEntry, maxBytes: number): Uint8Array;
}

/** The most deflate can expand (258-byte matches from 2-bit codes), with a margin. */
const MAX_DEFLATE_RATIO = 1100;
const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CD_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;

function fail(src: ByteSource, msg: string, entry?: string): never {
  const where = entry === undefined ? src.name : `${src.name}: ${entry}`;
  throw new FormatError(`${where}: ${msg}`, { where, hint: 'the zip archive is truncated or corrupt; download it again' });
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u64(dv: DataView, off: number, src: ByteSource, what: string): number {
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(src, `${what} ${v} is absurdly large`);
  return Number(v);
}

/** True when the source ends with a zip end-of-central-directory record. */
export function looksLikeZip(src: ByteSource): boolean {
  return findEocd(src) >= 0;
}

function findEocd(src: ByteSource): number {
  if (src.size < 22) return -1;
  const tailLen = Math.min(src.size, 22 + 0xffff);
  const tail = src.read(src.size - tailLen, tailLen, 'zip end record');
  const dv = view(tail);
  for (let i = tailLen - 22; i >= 0; i--) {
    if (dv.getUint32(i, true) === EOCD_SIG) return src.size - tailLen + i;
  }
  return -1;
}

export function openZip(src: ByteSource): ZipArchive {
  const eocd = findEocd(src);
  if (eocd < 0) fail(src, 'not a zip archive (no end-of-central-directory record)');
  const e = view(src.read(eocd, 22, 'zip end record'));
  let count = e.getUint16(10, true);
  let cdSize = e.getUint32(12, true);
  let cdOffset = e.getUint32(16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocd < 20) fail(src, 'zip64 locator missing');
    const loc = view(src.read(eocd - 20, 20, 'zip64 locator'));
    if (loc.getUint32(0, true) !== ZIP64_LOCATOR_SIG) fail(src, 'zip64 locator missing');
    const recOff = u64(loc, 8, src, 'zip64 record offset');
    const rec = view(src.read(recOff, 56, 'zip64 end record'));
    if (rec.getUint32(0, true) !== ZIP64_EOCD_SIG) fail(src, 'bad zip64 end record signature');
    count = u64(rec, 32, src, 'entry count');
    cdSize = u64(rec, 40, src, 'central directory size');
    cdOffset = u64(rec, 48, src, 'central directory offset');
  }
  if (count > cdSize / 46) fail(src, `central directory of ${cdSize} bytes cannot hold ${count} entries`);
  const cd = src.read(cdOffset, cdSize, 'central directory');
  const dv = view(cd);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.byteLength || dv.getUint32(p, true) !== CD_SIG) fail(src, `central directory entry ${i} is malformed`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let size = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen + commentLen > cd.byteLength) fail(src, `central directory entry ${i} runs past its end`);
    const name = new TextDecoder().decode(cd.subarray(p + 46, p + 46 + nameLen));
    if (flags & 1) fail(src, 'entry is encrypted', name);
    // zip64 extra field: the 64-bit values present are exactly those whose 32-bit fields are 0xffffffff.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = dv.getUint16(x, true);
      const len = dv.getUint16(x + 2, true);
      if (id === 0x0001) {
        let q = x + 4;
        const take = (): number => {
          if (q + 8 > x + 4 + len || q + 8 > xEnd) fail(src, 'zip64 extra field too short', name);
          const v = u64(dv, q, src, 'zip64 size');
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
      }
      x += 4 + len;
    }
    if (method !== 0 && method !== 8) fail(src, `unsupported compression method ${method}`, name);
    if (method === 0 && compressedSize !== size) fail(src, `stored entry has compressed size ${compressedSize} != size ${size}`, name);
    if (localHeaderOffset + 30 + compressedSize > src.size) fail(src, `entry data runs past the end of the file`, name);
    if (entries.has(name)) fail(src, 'entry name appears twice', name);
    entries.set(name, { name, method, compressedSize, size, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }

  const dataOffset = (entry: ZipEntry): number => {
    const h = view(src.read(entry.localHeaderOffset, 30, `local header of ${entry.name}`));
    if (h.getUint32(0, true) !== LOCAL_SIG) fail(src, 'bad local header signature', entry.name);
    const off = entry.localHeaderOffset + 30 + h.getUint16(26, true) + h.getUint16(28, true);
    if (off + entry.compressedSize > src.size) fail(src, 'entry data runs past the end of the file', entry.name);
    return off;
  };

  return {
    source: src,
    entries,
    dataOffset,
    readEntry(entry, maxBytes) {
      if (entry.size > maxBytes) fail(src, `entry claims ${entry.size} bytes, more than the ${maxBytes}-byte limit`, entry.name);
      // Deflate expands at most ~1032:1, so a larger claim is a lie that would only make us inflate garbage.
      if (entry.method === 8 && entry.size > entry.compressedSize * MAX_DEFLATE_RATIO + 64) {
        fail(src, `entry claims ${entry.size} bytes from ${entry.compressedSize} deflated bytes, more than deflate can expand to`, entry.name);
      }
      const raw = src.read(dataOffset(entry), entry.compressedSize, entry.name);
      if (entry.method === 0) return raw;
      let out: Buffer;
      try {
        out = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (err) {
        fail(src, `cannot inflate (${(err as Error).message})`, entry.name);
      }
      if (out.byteLength !== entry.size) fail(src, `inflated to ${out.byteLength} bytes, header says ${entry.size}`, entry.name);
      return out;
    },
  };
}
