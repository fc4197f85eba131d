// Frozen weights in low precision: NF4 (QLoRA's 4-bit NormalFloat, block 64, scales optionally double-quantized)
// and int8 (one scale per output channel). A quantized weight is never expanded whole: GEMMs ask it for a
// panel of rows at a time (dequantizeRows) into a small fp32 scratch.
import type { ComputeBackend } from '../backend/compute.ts';
import { ShapeError } from '../errors.ts';
import { Storage } from './storage.ts';
import { Tensor } from './tensor.ts';

export type QuantKind = 'nf4' | 'int8';

export const NF4_BLOCK = 64;
export const DQ_BLOCK = 256;

const blocks = (n: number, b: number): number => Math.ceil(n / b);

export interface QuantizeOptions {
  /** NF4 only: quantize the block scales too (8-bit, block 256), as QLoRA's double quantization. Default true. */
  doubleQuant?: boolean;
}

/** A (rows, cols) weight held as NF4 or int8 codes plus scales, in persistent memory of its compute backend. */
export class QuantizedWeight {
  readonly kind: QuantKind;
  readonly rows: number;
  readonly cols: number;
  /** NF4: packed codes (two per byte); int8: the codes. */
  readonly codes: Storage;
  /** NF4: the per-block absmax, or the double quantization's absmax2; int8: the per-row scales. */
  readonly scales: Storage;
  /** NF4 with double quantization: one 8-bit code per block scale; else null. */
  readonly scaleCodes: Storage | null;
  /** NF4 with double quantization: the offset added back to the dequantized scales. */
  readonly offset: number;

  private constructor(kind: QuantKind, rows: number, cols: number, codes: Storage, scales: Storage, scaleCodes: Storage | null, offset: number) {
    this.kind = kind;
    this.rows = rows;
    this.cols = cols;
    this.codes = codes;
    this.scales = scales;
    this.scaleCodes = scaleCodes;
    this.offset = offset;
  }

  /** Quantizes a contiguous float32 (rows, cols) tensor; `name` appears in errors. */
  static quantize(w: Tensor, kind: QuantKind, opts: QuantizeOptions & { name?: string } = {}): QuantizedWeight {
    const what = opts.name ?? w.name ?? 'weight';
    if (w.dtype !== 'float32' || w.ndim !== 2 || !w.isContiguous) {
      throw new ShapeError(`quantize ${kind}: ${what} must be a contiguous float32 matrix, got ${w.dtype} [${w.shape.join(', ')}]`, { where: what });
    }
    const [rows, cols] = w.shape as [number, number];
    const n = rows * cols;
    const be = w.storage.backend;
    const alloc = (bytes: number): Storage => Storage.alloc(Math.max(1, bytes), { persistent: true }, be);
    if (kind === 'int8') {
      const codes = alloc(n);
      const scales = alloc(rows * 4);
      be.int8Quantize(w.handle, w.byteOffset, rows, cols, codes.handle, 0, scales.handle, 0);
      return new QuantizedWeight(kind, rows, cols, codes, scales, null, 0);
    }
    const nb = blocks(n, NF4_BLOCK);
    const codes = alloc(blocks(n, 2));
    const absmax = alloc(nb * 4);
    be.nf4Quantize(w.handle, w.byteOffset, n, codes.handle, 0, absmax.handle, 0);
    if (opts.doubleQuant === false) return new QuantizedWeight(kind, rows, cols, codes, absmax, null, 0);
    const scaleCodes = alloc(nb);
    const absmax2 = alloc(blocks(nb, DQ_BLOCK) * 4);
    const offset = be.dqQuantize(absmax.handle, 0, nb, scaleCodes.handle, 0, absmax2.handle, 0);
    absmax.release();
    return new QuantizedWeight(kind, rows, cols, codes, absmax2, scaleCodes, offset);
  }

  /** The compute backend the codes live on (dequantized panels go to tensors on it). */
  get backend(): ComputeBackend {
    return this.codes.backend;
  }

  /** Rows [row0, row0 + count) as float32 into out, a contiguous (count, cols) float32 tensor. */
  dequantizeRows(row0: number, count: number, out: Tensor): void {
    if (row0 < 0 || count < 0 || row0 + count > this.rows) {
      throw new ShapeError(`dequantize: rows [${row0}, ${row0 + count}) outside a weight of ${this.rows} rows`);
    }
    if (out.dtype !== 'float32' || !out.isContiguous || out.size !== count * this.cols) {
      throw new ShapeError(`dequantize: out must be a contiguous float32 tensor of ${count}x${this.cols} elements`);
    }
    if (out.storage.backend !== this.backend) throw new ShapeError(`dequantize: out is on the ${out.storage.backend.name} backend, the weight on ${this.backend.name}`);
    if (this.kind === 'int8') {
      this.backend.int8Dequantize(this.codes.handle, 0, this.scales.handle, 0, this.rows, row0, count, this.cols, out.handle, out.byteOffset);
      return;
    }
    this.backend.nf4Dequantize(
      this.codes.handle, 0, this.scales.handle, 0, this.scaleCodes?.handle ?? 0, 0, this.offset,
      this.rows * this.cols, row0 * this.cols, count * this.cols, out.handle, out.byteOffset,
    );
  }

  /** The whole weight as float32 (tests and export; training never calls it). */
  dequantize(): Tensor {
    const out = Tensor.empty([this.rows, this.cols], 'float32', { backend: this.backend });
    this.dequantizeRows(0, this.rows, out);
    return out;
  }

  /** The block scales NF4 dequantizes with (the double quantization's restored values when it is on). */
  blockScales(): Float32Array {
    if (this.kind !== 'nf4') throw new ShapeError('blockScales: only NF4 weights have block scales');
    const nb = blocks(this.rows * this.cols, NF4_BLOCK);
    const out = new Float32Array(nb);
    const be = this.backend;
    if (!this.scaleCodes) {
      be.read(this.scales.handle, 0, out);
      return out;
    }
    const tmp = Storage.alloc(Math.max(1, nb) * 4, {}, be);
    try {
      be.dqDequantize(this.scaleCodes.handle, 0, this.scales.handle, 0, this.offset, nb, tmp.handle, 0);
      be.read(tmp.handle, 0, out);
    } finally {
      tmp.release();
    }
    return out;
  }

  /** Bytes held: codes and scales. */
  get bytes(): number {
    return this.codes.bytes + this.scales.bytes + (this.scaleCodes?.bytes ?? 0);
  }

  release(): void {
    this.codes.release();
    this.scales.release();
    this.scaleCodes?.release();
  }
}
