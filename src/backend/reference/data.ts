// Reference data-movement kernels: strided copy, fill, dtype casts, embedding gather and scatter-add, written to
// native/kernels/data.cc and cast.cc. Copies move raw bits (NaN payloads kept); the scatter-add sums repeated
// ids in row order, as the addon does at any thread count, so every result here is bit-exact with it.
import { type ByteOffset, DTYPE_CODE, type Handle } from '../binding.ts';
import { dim, dimsArg, fail, flag, int, listStr, stridedExtent } from './args.ts';
import { bf16FromBits, bitsF32, f16FromBits, f16ToBits, f32Bits, i32FromF32 } from './bits.ts';
import { f32, i32, overlaps, u16, u32, u8 } from './memory.ts';

const DTYPE_NAMES = ['float32', 'bfloat16', 'float16', 'int32'];
const MAX_ELEMS = 2 ** 40;

function dtypeArg(op: string, name: string, d: number): number {
  int(op, name, d);
  if (d < DTYPE_CODE.float32 || d > DTYPE_CODE.int32) fail(op, `unknown dtype code ${d} for '${name}'`);
  return d;
}

function dtypeBytes(d: number): number {
  return d === DTYPE_CODE.bfloat16 || d === DTYPE_CODE.float16 ? 2 : 4;
}

/** a * b for element counts; fails instead of passing the glue's limit. */
function mulCount(op: string, a: number, b: number): number {
  const r = a * b;
  if (r > MAX_ELEMS) fail(op, `size too large (${a} x ${b})`);
  return r;
}

// Fails unless distinct indices of the view address distinct elements (sorted by stride, each dim must step
// past everything the smaller-stride dims span): the glue's check, kept so both backends refuse the same views.
function checkNoSelfOverlap(op: string, shape: readonly number[], strides: readonly number[]): void {
  const order = shape.map((_, i) => i).filter((i) => shape[i]! > 1);
  order.sort((x, y) => strides[x]! - strides[y]!);
  let span = 0;
  for (const i of order) {
    if (strides[i]! <= span) fail(op, `destination view overlaps itself (shape ${listStr(shape)}, strides ${listStr(strides)})`);
    span += (shape[i]! - 1) * strides[i]!;
  }
}

/** dst[j] (+)= src[j] over a strided shape; the arrays are element views of the same width (words for copies). */
function copyNd(
  src: Float32Array | Uint32Array | Uint16Array | Uint8Array, ss: readonly number[],
  dst: Float32Array | Uint32Array | Uint16Array | Uint8Array, ds: readonly number[],
  shape: readonly number[], accumulate: boolean,
): void {
  const nd = shape.length;
  let total = 1;
  for (const d of shape) total *= d;
  if (total === 0) return;
  const inner = nd === 0 ? 1 : shape[nd - 1]!;
  const si = nd === 0 ? 0 : ss[nd - 1]!;
  const di = nd === 0 ? 0 : ds[nd - 1]!;
  const idx = new Array<number>(Math.max(nd - 1, 0)).fill(0);
  let ps = 0, pd = 0;
  for (let pos = 0; pos < total; pos += inner) {
    if (accumulate) {
      const s = src as Float32Array, d = dst as Float32Array;
      for (let t = 0, js = ps, jd = pd; t < inner; t++, js += si, jd += di) d[jd] = Math.fround(d[jd]! + s[js]!);
    } else {
      for (let t = 0, js = ps, jd = pd; t < inner; t++, js += si, jd += di) dst[jd] = src[js]!;
    }
    for (let d = nd - 2; d >= 0; d--) {
      ps += ss[d]!;
      pd += ds[d]!;
      idx[d] = idx[d]! + 1;
      if (idx[d]! < shape[d]!) break;
      ps -= ss[d]! * shape[d]!;
      pd -= ds[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

/** Strided copy (elemBytes 1, 2 or 4); accumulate adds (fp32 only). Strides in elements, non-negative. */
export function stridedCopy(
  src: Handle, srcOff: ByteOffset, srcStrides: number[], dst: Handle, dstOff: ByteOffset, dstStrides: number[],
  shape: number[], elemBytes: number, accumulate: boolean,
): void {
  const o = 'stridedCopy';
  const ss = dimsArg(o, 'srcStrides', srcStrides);
  const ds = dimsArg(o, 'dstStrides', dstStrides);
  const sh = dimsArg(o, 'shape', shape);
  if (ss.length !== sh.length || ds.length !== sh.length) {
    fail(o, `shape ${listStr(sh)} has ${sh.length} dims but srcStrides ${listStr(ss)} and dstStrides ${listStr(ds)} must match it`);
  }
  int(o, 'elemBytes', elemBytes);
  if (elemBytes !== 1 && elemBytes !== 2 && elemBytes !== 4) fail(o, `elemBytes must be 1, 2 or 4, got ${elemBytes}`);
  const acc = flag(o, 'accumulate', accumulate);
  if (acc && elemBytes !== 4) fail(o, 'accumulate is only supported for float32 (elemBytes 4)');
  let n = 1;
  for (const d of sh) n = mulCount(o, n, d);
  checkNoSelfOverlap(o, sh, ds);
  const se = stridedExtent(sh, ss), de = stridedExtent(sh, ds);
  if (acc) {
    copyNd(f32(o, 'src', src, srcOff, se, false), ss, f32(o, 'dst', dst, dstOff, de, true), ds, sh, true);
  } else if (elemBytes === 4) {
    copyNd(u32(o, 'src', src, srcOff, se, false), ss, u32(o, 'dst', dst, dstOff, de, true), ds, sh, false);
  } else if (elemBytes === 2) {
    copyNd(u16(o, 'src', src, srcOff, se, false), ss, u16(o, 'dst', dst, dstOff, de, true), ds, sh, false);
  } else {
    copyNd(u8(o, 'src', src, srcOff, se, false), ss, u8(o, 'dst', dst, dstOff, de, true), ds, sh, false);
  }
}

export function fill(x: Handle, xOff: ByteOffset, n: number, value: number, dtype: number): void {
  const o = 'fill';
  dim(o, 'n', n);
  if (typeof value !== 'number') fail(o, "argument 'value' must be a number");
  const dt = dtypeArg(o, 'dtype', dtype);
  if (dt === DTYPE_CODE.float32) {
    u32(o, 'x', x, xOff, n, true).fill(f32Bits(value));
  } else if (dt === DTYPE_CODE.int32) {
    const view = i32(o, 'x', x, xOff, n, true);
    if (!Number.isInteger(value) || value < -2147483648 || value > 2147483647) fail(o, `value ${value.toFixed(6)} is not an int32`);
    view.fill(value);
  } else {
    // 16-bit storage: the value as a float, converted once.
    const view = u16(o, 'x', x, xOff, n, true);
    const bitsOf = f32Bits(value);
    view.fill(dt === DTYPE_CODE.bfloat16 ? bf16FromBits(bitsOf) : f16FromBits(bitsOf));
  }
}

/** murmur3's 32-bit finalizer. */
function fmix32(z: number): number {
  z = Math.imul((z ^ (z >>> 16)) >>> 0, 0x85ebca6b) >>> 0;
  z = Math.imul((z ^ (z >>> 13)) >>> 0, 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Inverted dropout from the counter-based hash of Binding.dropoutMask: mask[i] = h(key, i)/2^32 < keep ? 1/keep : 0,
 * out[i] = x[i]·mask[i], each when given (out may be x).
 */
export function dropoutMask(key0: number, key1: number, keep: number, x: Handle, xOff: ByteOffset, out: Handle, outOff: ByteOffset, mask: Handle, maskOff: ByteOffset, n: number): void {
  const o = 'dropoutMask';
  int(o, 'key0', key0);
  int(o, 'key1', key1);
  if (key0 < 0 || key0 > 0xffffffff || key1 < 0 || key1 > 0xffffffff) fail(o, 'keys must be 32-bit unsigned integers');
  if (typeof keep !== 'number') fail(o, "argument 'keep' must be a number");
  if (!(keep > 0 && keep <= 1)) fail(o, `keep must be in (0, 1], got ${keep.toFixed(6)}`);
  dim(o, 'n', n);
  if (n > 0xffffffff) fail(o, `n must be below 2^32 (one mask's counter), got ${n}`);
  const xv = x === 0 ? null : f32(o, 'x', x, xOff, n, false);
  const ov = out === 0 ? null : f32(o, 'out', out, outOff, n, true);
  const mv = mask === 0 ? null : f32(o, 'mask', mask, maskOff, n, true);
  if (ov && !xv) fail(o, 'out needs x');
  if (!ov && !mv) fail(o, 'give out, mask or both');
  const threshold = Math.ceil(keep * 4294967296);
  const kept = Math.fround(1 / keep);
  for (let i = 0; i < n; i++) {
    const z = fmix32((fmix32((key0 + Math.imul(0x9e3779b9, (i + 1) >>> 0)) >>> 0) ^ key1) >>> 0);
    const m = z < threshold ? kept : 0;
    if (mv) mv[i] = m;
    if (ov && xv) ov[i] = (xv[i] as number) * m;
  }
}

/** A source element as f32 bits (exact for bf16, f16; int32 rounds to the nearest float). */
function loadBits(src: Uint32Array | Uint16Array | Int32Array, dtype: number, i: number): number {
  switch (dtype) {
    case DTYPE_CODE.bfloat16: return (src[i]! << 16) >>> 0;
    case DTYPE_CODE.float16: return f16ToBits(src[i]!);
    case DTYPE_CODE.int32: return f32Bits(src[i]!);
    default: return src[i]!;
  }
}

function storeBits(dst: Uint32Array | Uint16Array | Int32Array, dtype: number, i: number, u: number): void {
  switch (dtype) {
    case DTYPE_CODE.bfloat16: dst[i] = bf16FromBits(u); break;
    case DTYPE_CODE.float16: dst[i] = f16FromBits(u); break;
    case DTYPE_CODE.int32: dst[i] = i32FromF32(bitsF32(u)); break;
    default: dst[i] = u; break;
  }
}

function elemView(op: string, name: string, h: Handle, off: ByteOffset, dtype: number, n: number, write: boolean): Uint32Array | Uint16Array | Int32Array {
  if (dtype === DTYPE_CODE.int32) return i32(op, name, h, off, n, write);
  if (dtypeBytes(dtype) === 2) return u16(op, name, h, off, n, write);
  return u32(op, name, h, off, n, write);
}

/**
 * Casts n elements between float32, bfloat16, float16 and int32 through f32 bits (exact for 16-bit sources);
 * same-dtype casts copy bits unchanged; in place only at the same offset and width.
 */
export function cast(src: Handle, srcOff: ByteOffset, srcDtype: number, dst: Handle, dstOff: ByteOffset, dstDtype: number, n: number): void {
  const sd = dtypeArg('cast', 'srcDtype', srcDtype);
  const dd = dtypeArg('cast', 'dstDtype', dstDtype);
  dim('cast', 'n', n);
  const o = `cast(${DTYPE_NAMES[sd]} -> ${DTYPE_NAMES[dd]})`;
  const s = elemView(o, 'src', src, srcOff, sd, n, false);
  const d = elemView(o, 'dst', dst, dstOff, dd, n, true);
  if (overlaps(s, d) && !(s.byteOffset === d.byteOffset && dtypeBytes(sd) === dtypeBytes(dd))) fail(o, 'src and dst overlap');
  if (sd === dd) {
    d.set(s);
    return;
  }
  for (let i = 0; i < n; i++) storeBits(d, dd, i, loadBits(s, sd, i));
}

function checkVocab(op: string, vocab: number): void {
  if (vocab > 2147483647) fail(op, `vocab size ${vocab} does not fit int32 ids`);
}

function firstBadId(ids: Int32Array, vocab: number): number {
  for (let i = 0; i < ids.length; i++) if (ids[i]! < 0 || ids[i]! >= vocab) return i;
  return -1;
}

function badId(op: string, ids: Int32Array, pos: number, vocab: number): never {
  fail(op, `id ${ids[pos]} at position ${pos} is out of range for vocab size ${vocab}`);
}

/** ids int32 (n); weight (vocab, dim); out (n, dim). Ids are all checked before anything is written. */
export function embedding(
  weight: Handle, wOff: ByteOffset, ids: Handle, idsOff: ByteOffset, out: Handle, outOff: ByteOffset,
  n: number, vocab: number, dimSize: number,
): void {
  const o = 'embedding';
  dim(o, 'n', n);
  dim(o, 'vocab', vocab);
  dim(o, 'dim', dimSize);
  checkVocab(o, vocab);
  const w = u32(o, 'weight', weight, wOff, mulCount(o, vocab, dimSize), false);
  const id = i32(o, 'ids', ids, idsOff, n, false);
  const ov = u32(o, 'out', out, outOff, mulCount(o, n, dimSize), true);
  const bad = firstBadId(id, vocab);
  if (bad >= 0) badId(o, id, bad, vocab);
  for (let i = 0; i < n; i++) {
    const row = id[i]! * dimSize;
    ov.set(w.subarray(row, row + dimSize), i * dimSize);
  }
}

/** dweight (vocab, dim) += rows of dout (n, dim) scattered by ids, in row order. */
export function embeddingBackward(
  ids: Handle, idsOff: ByteOffset, dout: Handle, doutOff: ByteOffset, dweight: Handle, dwOff: ByteOffset,
  n: number, vocab: number, dimSize: number,
): void {
  const o = 'embeddingBackward';
  dim(o, 'n', n);
  dim(o, 'vocab', vocab);
  dim(o, 'dim', dimSize);
  checkVocab(o, vocab);
  const id = i32(o, 'ids', ids, idsOff, n, false);
  const dy = f32(o, 'dout', dout, doutOff, mulCount(o, n, dimSize), false);
  const dw = f32(o, 'dweight', dweight, dwOff, mulCount(o, vocab, dimSize), true);
  const bad = firstBadId(id, vocab);
  if (bad >= 0) badId(o, id, bad, vocab);
  for (let i = 0; i < n; i++) {
    const src = i * dimSize, dst = id[i]! * dimSize;
    for (let c = 0; c < dimSize; c++) dw[dst + c] = Math.fround(dw[dst + c]! + dy[src + c]!);
  }
}
