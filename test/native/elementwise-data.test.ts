// Data movement: strided copies (transpose, permute, slices, 1/2/4-byte elements, accumulate), embedding
// gather and scatter-add, and their bad-input errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { toNative, readF32, randomF32, ODD_SIZES, withBuffers } from '../helpers/native.ts';

/** Reference strided copy over a multi-index: dst[dOff(idx)] = src[sOff(idx)] (or +=). */
function copyRef(src: ArrayLike<number>, ss: number[], dst: number[], ds: number[], shape: number[], acc: boolean): void {
  const n = shape.reduce((a, b) => a * b, 1);
  const idx = new Array<number>(shape.length).fill(0);
  for (let f = 0; f < n; f++) {
    let so = 0;
    let dof = 0;
    shape.forEach((_, d) => {
      so += (idx[d] as number) * (ss[d] as number);
      dof += (idx[d] as number) * (ds[d] as number);
    });
    dst[dof] = acc ? Math.fround((dst[dof] as number) + (src[so] as number)) : (src[so] as number);
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d] = (idx[d] as number) + 1;
      if ((idx[d] as number) < (shape[d] as number)) break;
      idx[d] = 0;
    }
  }
}

function span(shape: number[], strides: number[]): number {
  return shape.reduce((acc, d, i) => acc + (d - 1) * (strides[i] as number), 0) + 1;
}

interface CopyCase {
  label: string;
  shape: number[];
  src: number[];
  dst: number[];
}

function copyCases(): CopyCase[] {
  const cases: CopyCase[] = [];
  for (const n of ODD_SIZES) {
    cases.push({ label: `contiguous (${n})`, shape: [n], src: [1], dst: [1] });
    cases.push({ label: `transpose (${n},7)`, shape: [n, 7], src: [1, n], dst: [7, 1] });
    cases.push({ label: `broadcast row (${n},5)`, shape: [n, 5], src: [0, 1], dst: [5, 1] });
  }
  // A column slice of a (65, 257) matrix into a wider destination, and a 4-D permute (0, 2, 1, 3).
  cases.push({ label: 'slice (65,63) of (65,257) into (65,100)', shape: [65, 63], src: [257, 1], dst: [100, 1] });
  cases.push({ label: 'permute (3,7,5,9)', shape: [3, 7, 5, 9], src: [315, 9, 63, 1], dst: [315, 45, 9, 1] });
  cases.push({ label: 'large transpose (257,257)', shape: [257, 257], src: [1, 257], dst: [257, 1] });
  cases.push({ label: 'batched transpose (3,65,33)', shape: [3, 65, 33], src: [65 * 33, 1, 65], dst: [65 * 33, 33, 1] });
  cases.push({ label: 'transpose into a strided destination', shape: [33, 65], src: [1, 40], dst: [70, 1] });
  return cases;
}

test('stridedCopy copies float32 views and accumulates', () => {
  for (const c of copyCases()) {
    withBuffers((keep) => {
      const sn = span(c.shape, c.src);
      const dn = span(c.shape, c.dst);
      const src = randomF32(sn, sn + 1);
      const init = randomF32(dn, dn + 2);
      const hs = keep(toNative(src));
      const hd = keep(toNative(init));
      for (const acc of [false, true]) {
        native.write(hd, 0, init);
        native.stridedCopy(hs, 0, c.src, hd, 0, c.dst, c.shape, 4, acc);
        const want = Array.from(init);
        copyRef(src, c.src, want, c.dst, c.shape, acc);
        assert.deepEqual(Array.from(readF32(hd, dn)), want, `${c.label}${acc ? ' accumulate' : ''}`);
      }
    });
  }
});

test('stridedCopy moves 2-byte and 1-byte elements through a byte offset', () => {
  withBuffers((keep) => {
    const src16 = Uint16Array.from({ length: 63 * 7 }, (_, i) => (i * 7919) & 0xffff);
    const hs = keep(toNative(src16));
    const hd = keep(native.alloc(2 * (63 * 7 + 1), true));
    // (7, 63) transpose of a (63, 7) matrix, written one element in (byte offset 2).
    native.stridedCopy(hs, 0, [1, 7], hd, 2, [63, 1], [7, 63], 2, false);
    const got = new Uint16Array(63 * 7 + 1);
    native.read(hd, 0, got);
    const want = [0];
    copyRef(src16, [1, 7], want, [63, 1], [7, 63], false);
    assert.deepEqual(Array.from(got.subarray(1)), want);
    assert.equal(got[0], 0);
    const bytes = Uint8Array.from({ length: 65 }, (_, i) => i);
    const hb = keep(native.alloc(68, false));
    native.write(hb, 0, bytes);
    const hbd = keep(native.alloc(65, true));
    native.stridedCopy(hb, 1, [2], hbd, 0, [1], [32], 1, false);  // every other byte from byte 1
    const out = new Uint8Array(32);
    native.read(hbd, 0, out);
    assert.deepEqual(Array.from(out), Array.from({ length: 32 }, (_, i) => 1 + 2 * i));
  });
});

test('stridedCopy rejects bad layouts naming the op', () => {
  withBuffers((keep) => {
    const h = keep(native.alloc(64, false));
    const g = keep(native.alloc(64, false));
    assert.throws(() => native.stridedCopy(h, 0, [5, 1], g, 0, [5, 1], [4, 5], 4, false), /stridedCopy: buffer 'src' too small: needs 80 bytes/);
    assert.throws(() => native.stridedCopy(h, 0, [1], g, 4, [1], [16], 4, false), /stridedCopy: buffer 'dst' too small: needs 68 bytes/);
    assert.throws(() => native.stridedCopy(h, 0, [-1], g, 0, [1], [2], 4, false), /negative strides are not supported/);
    assert.throws(() => native.stridedCopy(h, 0, [1], g, 0, [0], [4], 4, false), /destination view overlaps itself/);
    assert.throws(() => native.stridedCopy(h, 0, [1, 1], g, 0, [1, 1], [2, 2], 4, false), /destination view overlaps itself/);
    assert.throws(() => native.stridedCopy(h, 0, [1], g, 0, [1], [4], 2, true), /accumulate is only supported for float32/);
    assert.throws(() => native.stridedCopy(h, 0, [1], g, 0, [1], [4], 3, false), /elemBytes must be 1, 2 or 4/);
    assert.throws(() => native.stridedCopy(h, 0, [1], g, 0, [1, 1], [4], 4, false), /stridedCopy: shape \[4\] has 1 dims/);
    const nine = new Array<number>(9).fill(1);
    assert.throws(() => native.stridedCopy(h, 0, nine, g, 0, nine, nine, 4, false), /at most 8 are supported/);
    assert.throws(() => native.stridedCopy(h, 0, [2 ** 40], g, 0, [1], [3], 4, false), /strided view too large/);
  });
});

test('embedding gathers rows and its backward scatter-adds in row order', () => {
  for (const [n, vocab, dim] of [[1, 1, 1], [7, 5, 63], [65, 7, 7], [257, 65, 65], [300, 11, 257]] as const) {
    withBuffers((keep) => {
      const weight = randomF32(vocab * dim, vocab + dim);
      const ids = Int32Array.from({ length: n }, (_, i) => (i * 7 + 3) % vocab);  // repeats when n > vocab
      const hw = keep(toNative(weight));
      const hi = keep(toNative(ids));
      const ho = keep(native.alloc(n * dim * 4, false));
      native.embedding(hw, 0, hi, 0, ho, 0, n, vocab, dim);
      const want = new Float32Array(n * dim);
      ids.forEach((id, i) => want.set(weight.subarray(id * dim, (id + 1) * dim), i * dim));
      assert.deepEqual(readF32(ho, n * dim), want, `embedding (${n}, ${vocab}, ${dim})`);
      // Backward onto a non-zero dweight: float32 adds in row order, exactly.
      const dout = randomF32(n * dim, n + 1);
      const dw0 = randomF32(vocab * dim, 5);
      const hdo = keep(toNative(dout));
      const hdw = keep(toNative(dw0));
      native.embeddingBackward(hi, 0, hdo, 0, hdw, 0, n, vocab, dim);
      const dw = Float32Array.from(dw0);
      ids.forEach((id, i) => {
        for (let c = 0; c < dim; c++) dw[id * dim + c] = Math.fround((dw[id * dim + c] as number) + (dout[i * dim + c] as number));
      });
      assert.deepEqual(readF32(hdw, vocab * dim), dw, `embeddingBackward (${n}, ${vocab}, ${dim})`);
    });
  }
});

test('embedding rejects out-of-range ids naming position, id and vocab size, and writes nothing', () => {
  withBuffers((keep) => {
    const hw = keep(toNative(randomF32(10 * 4, 1)));
    const hi = keep(toNative(Int32Array.from([1, 2, 9, 10, 3])));
    const ho = keep(native.alloc(5 * 4 * 4, true));
    assert.throws(() => native.embedding(hw, 0, hi, 0, ho, 0, 5, 10, 4), /embedding: id 10 at position 3 is out of range for vocab size 10/);
    assert.ok(readF32(ho, 20).every((v) => v === 0), 'no row written before the check');
    const neg = keep(toNative(Int32Array.from([0, -1])));
    assert.throws(() => native.embedding(hw, 0, neg, 0, ho, 0, 2, 10, 4), /id -1 at position 1 is out of range for vocab size 10/);
    assert.throws(() => native.embeddingBackward(hi, 0, ho, 0, hw, 0, 5, 10, 4), /embeddingBackward: id 10 at position 3/);
    assert.throws(() => native.embedding(hw, 0, hi, 0, ho, 0, 5, 11, 4), /embedding: buffer 'weight' too small/);
    assert.throws(() => native.embedding(hw, 0, hi, 0, ho, 0, 6, 10, 4), /embedding: buffer 'ids' too small/);
    assert.throws(() => native.embedding(hw, 0, hi, 0, ho, 0, 5, 10, 5), /embedding: buffer 'weight' too small/);
    assert.throws(() => native.embeddingBackward(hi, 0, ho, 0, hw, 0, 5, 10, 5), /embeddingBackward: buffer 'dout' too small/);
  });
});
