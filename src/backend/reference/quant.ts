// Reference NF4 (block 64, optional double-quantized scales) and int8 (per row) weight quantization: the rules of
// native/kernels/quant/quant.cc and scripts/reference/quant_reference.py, in float32 steps (Math.fround) so the
// results are the same bits.
import type { ByteOffset, Handle } from '../binding.ts';
import { dim, fail, prod } from './args.ts';
import { f32, u8 } from './memory.ts';

const fr = Math.fround;
const NF4_BLOCK = 64;
const DQ_BLOCK = 256;
const NF4_ZERO = 7;

const NF4 = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);
/** Midpoints of consecutive code values, in double, rounded to float. */
const THRESHOLDS = Float32Array.from({ length: 15 }, (_, i) => (NF4[i]! + NF4[i + 1]!) / 2);

/** Dettmers' signed 8-bit dynamic-exponent map (7 exponent bits), in double, rounded to float, ascending. */
const DMAP: Float32Array = (() => {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const items = 2 ** i + 1;
    const scale = 10 ** (i - 6);
    for (let j = 0; j + 1 < items; j++) {
      const lo = 0.1 + (0.9 * j) / (items - 1);
      const hi = 0.1 + (0.9 * (j + 1)) / (items - 1);
      const mean = (lo + hi) / 2;
      data.push(scale * mean, -scale * mean);
    }
  }
  data.push(0, 1);
  return Float32Array.from(data.sort((a, b) => a - b));
})();
const DMAP_ZERO = DMAP.indexOf(0);

const blocks = (n: number, b: number): number => Math.ceil(n / b);

function code(normed: number): number {
  let c = 0;
  for (let i = 0; i < 15; i++) if (normed > THRESHOLDS[i]!) c++;
  return c;
}

/** Index of the map entry nearest to v (ties to the lower index). */
function nearest(v: number): number {
  let lo = 0;
  let hi = 256;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (DMAP[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  if (lo === 0) return 0;
  if (lo === 256) return 255;
  return Math.abs(v - DMAP[lo]!) < Math.abs(v - DMAP[lo - 1]!) ? lo : lo - 1;
}

function scaleOf(scales: Float32Array, q: Uint8Array | null, offset: number, b: number): number {
  return q === null ? scales[b]! : fr(fr(DMAP[q[b]!]! * scales[Math.floor(b / DQ_BLOCK)]!) + offset);
}

export function nf4Quantize(x: Handle, xOff: ByteOffset, n: number, packed: Handle, pOff: ByteOffset, absmax: Handle, aOff: ByteOffset): void {
  const op = 'nf4Quantize';
  dim(op, 'n', n);
  const xv = f32(op, 'x', x, xOff, n, false);
  const pv = u8(op, 'packed', packed, pOff, blocks(n, 2), true);
  const av = f32(op, 'absmax', absmax, aOff, blocks(n, NF4_BLOCK), true);
  for (let b = 0; b * NF4_BLOCK < n; b++) {
    const s = b * NF4_BLOCK;
    const e = Math.min(n, s + NF4_BLOCK);
    let a = 0;
    for (let i = s; i < e; i++) a = Math.max(a, Math.abs(xv[i]!));
    av[b] = a;
    const inv = a === 0 ? 0 : fr(1 / a);
    for (let i = s; i < e; i += 2) {
      const hi = a === 0 ? NF4_ZERO : code(fr(xv[i]! * inv));
      const lo = i + 1 < e ? (a === 0 ? NF4_ZERO : code(fr(xv[i + 1]! * inv))) : 0;
      pv[i / 2] = (hi << 4) | lo;
    }
  }
}

export function nf4Dequantize(
  packed: Handle, pOff: ByteOffset, scales: Handle, sOff: ByteOffset, qabsmax: Handle, qOff: ByteOffset, offset: number,
  n: number, start: number, count: number, out: Handle, outOff: ByteOffset,
): void {
  const op = 'nf4Dequantize';
  dim(op, 'n', n);
  dim(op, 'start', start);
  dim(op, 'count', count);
  if (start + count > n) fail(op, `elements [${start}, ${start + count}) past the tensor's ${n}`);
  const pv = u8(op, 'packed', packed, pOff, blocks(n, 2), false);
  const nb = blocks(n, NF4_BLOCK);
  const qv = qabsmax === 0 ? null : u8(op, 'qabsmax', qabsmax, qOff, nb, false);
  const sv = f32(op, 'scales', scales, sOff, qv ? blocks(nb, DQ_BLOCK) : nb, false);
  const ov = f32(op, 'out', out, outOff, count, true);
  const off = fr(offset);
  for (let j = 0; j < count; j++) {
    const i = start + j;
    const byte = pv[i >> 1]!;
    ov[j] = fr(NF4[i & 1 ? byte & 15 : byte >> 4]! * scaleOf(sv, qv, off, Math.floor(i / NF4_BLOCK)));
  }
}

export function dqQuantize(absmax: Handle, aOff: ByteOffset, nb: number, codes: Handle, cOff: ByteOffset, absmax2: Handle, a2Off: ByteOffset): number {
  const op = 'dqQuantize';
  dim(op, 'nb', nb);
  const av = f32(op, 'absmax', absmax, aOff, nb, false);
  const cv = u8(op, 'codes', codes, cOff, nb, true);
  const a2v = f32(op, 'absmax2', absmax2, a2Off, blocks(nb, DQ_BLOCK), true);
  let sum = 0;
  for (let i = 0; i < nb; i++) sum += av[i]!;
  const offset = nb ? fr(sum / nb) : 0;
  for (let k = 0; k * DQ_BLOCK < nb; k++) {
    const s = k * DQ_BLOCK;
    const e = Math.min(nb, s + DQ_BLOCK);
    let a = 0;
    for (let i = s; i < e; i++) a = Math.max(a, Math.abs(fr(av[i]! - offset)));
    a2v[k] = a;
    for (let i = s; i < e; i++) cv[i] = a === 0 ? DMAP_ZERO : nearest(fr(fr(av[i]! - offset) / a));
  }
  return offset;
}

export function dqDequantize(codes: Handle, cOff: ByteOffset, absmax2: Handle, a2Off: ByteOffset, offset: number, nb: number, out: Handle, outOff: ByteOffset): void {
  const op = 'dqDequantize';
  dim(op, 'nb', nb);
  const cv = u8(op, 'codes', codes, cOff, nb, false);
  const a2v = f32(op, 'absmax2', absmax2, a2Off, blocks(nb, DQ_BLOCK), false);
  const ov = f32(op, 'out', out, outOff, nb, true);
  const off = fr(offset);
  for (let b = 0; b < nb; b++) ov[b] = scaleOf(a2v, cv, off, b);
}

export function int8Quantize(w: Handle, wOff: ByteOffset, rows: number, cols: number, q: Handle, qOff: ByteOffset, scale: Handle, sOff: ByteOffset): void {
  const op = 'int8Quantize';
  dim(op, 'rows', rows);
  dim(op, 'cols', cols);
  const n = prod(op, [rows, cols], 2 ** 40);
  const wv = f32(op, 'w', w, wOff, n, false);
  const qv = new Int8Array(u8(op, 'q', q, qOff, n, true).buffer, u8(op, 'q', q, qOff, n, true).byteOffset, n);
  const sv = f32(op, 'scale', scale, sOff, rows, true);
  for (let r = 0; r < rows; r++) {
    let a = 0;
    for (let c = 0; c < cols; c++) a = Math.max(a, Math.abs(wv[r * cols + c]!));
    sv[r] = fr(a / 127);
    const inv = a === 0 ? 0 : fr(127 / a);
    for (let c = 0; c < cols; c++) qv[r * cols + c] = a === 0 ? 0 : roundHalfEven(fr(wv[r * cols + c]! * inv));
  }
}

export function int8Dequantize(
  q: Handle, qOff: ByteOffset, scale: Handle, sOff: ByteOffset, totalRows: number, row0: number, rows: number, cols: number,
  out: Handle, outOff: ByteOffset,
): void {
  const op = 'int8Dequantize';
  for (const [name, v] of [['totalRows', totalRows], ['row0', row0], ['rows', rows], ['cols', cols]] as const) dim(op, name, v);
  if (row0 + rows > totalRows) fail(op, `rows [${row0}, ${row0 + rows}) past the tensor's ${totalRows}`);
  const bytes = u8(op, 'q', q, qOff, prod(op, [totalRows, cols], 2 ** 40), false);
  const qv = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  const sv = f32(op, 'scale', scale, sOff, totalRows, false);
  const ov = f32(op, 'out', out, outOff, prod(op, [rows, cols], 2 ** 40), true);
  for (let r = 0; r < rows; r++) {
    const s = sv[row0 + r]!;
    for (let c = 0; c < cols; c++) ov[r * cols + c] = fr(qv[(row0 + r) * cols + c]! * s);
  }
}

/** Round half to even (C's nearbyint in the default rounding mode). */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
