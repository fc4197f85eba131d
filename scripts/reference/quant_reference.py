#!/usr/bin/python3
"""Reference NF4 and int8 weight quantization for sftkit's frozen low-precision base (test/fixtures/quant/).

Written from the published definitions (QLoRA, arXiv 2305.14314, section 3 and appendix E; bitsandbytes'
4-bit blockwise layout), in numpy float32 so that every rounding is the one the C++ kernels make:

NF4, block 64 over the flattened tensor:
  absmax_b = max |x| over block b;  inv = float32(1 / absmax_b);  n = float32(x * inv)
  code = number of thresholds t_i (i = 0..14) with n > t_i, t_i = float32((c_i + c_{i+1}) / 2) in double
  from the float32 code book c (ties go to the lower code); a block whose absmax is 0 gets code 7 (0.0).
  Two codes per byte, the first element in the high nibble.  Dequantized: float32(c[code] * absmax_b).
Double quantization of the absmax values (block 256, 8-bit):
  offset = float32(sum of absmax in order, in double, / count);  y = float32(absmax - offset)
  a2_k = max |y| over block k;  q = index of the nearest entry of the 256-value signed dynamic map D
  to float32(y / a2_k) (ties to the lower index; a block with a2_k = 0 gets the index of 0.0);
  restored absmax = float32(float32(D[q] * a2_k) + offset).
  D is the dynamic-exponent map of Dettmers (arXiv 1511.04561) as bitsandbytes builds it for signed 8 bits
  (7 exponent bits): for i in 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times 10^(i - 6), both
  signs, plus 0 and 1, sorted; computed in double here and rounded to float32.
int8, per output channel (row):
  scale_r = float32(absmax_r / 127);  q = round-half-even(float32(x * float32(127 / absmax_r)))  (0 when the
  row is all zero);  dequantized float32(q * scale_r).

Run:  /usr/bin/python3 scripts/reference/quant_reference.py   (writes test/fixtures/quant/quant.json + .bin)
"""
import json
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'quant')
f32 = np.float32

NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=f32)
THRESH = np.array([(float(NF4[i]) + float(NF4[i + 1])) / 2 for i in range(15)], dtype=f32)


def dynamic_map():
    data = []
    for i in range(7):
        items = 2 ** i + 1
        bounds = [0.1 + 0.9 * j / (items - 1) for j in range(items)]
        means = [(bounds[j] + bounds[j + 1]) / 2 for j in range(items - 1)]
        data += [10 ** (i - 6) * m for m in means]
        data += [-(10 ** (i - 6)) * m for m in means]
    data += [0.0, 1.0]
    assert len(data) == 256
    return np.array(sorted(data), dtype=f32)


DMAP = dynamic_map()


def nf4_quantize(x, block=64):
    n = x.size
    nb = (n + block - 1) // block
    codes = np.zeros(n, dtype=np.uint8)
    absmax = np.zeros(nb, dtype=f32)
    for b in range(nb):
        v = x[b * block:(b + 1) * block]
        a = f32(np.max(np.abs(v)))
        absmax[b] = a
        if a == 0:
            codes[b * block:(b + 1) * block] = 7
            continue
        inv = f32(f32(1) / a)
        normed = (v * inv).astype(f32)
        codes[b * block:(b + 1) * block] = (normed[:, None] > THRESH[None, :]).sum(axis=1)
    packed = np.zeros((n + 1) // 2, dtype=np.uint8)
    packed[:] = codes[0::2] << 4
    packed[:n // 2] |= codes[1::2]
    return packed, codes, absmax


def nf4_dequantize(codes, absmax, block=64):
    scale = np.repeat(absmax, block)[:codes.size]
    return (NF4[codes] * scale).astype(f32)


def double_quantize(absmax, block=256):
    s = 0.0
    for v in absmax.tolist():
        s += v
    offset = f32(s / absmax.size)
    y = (absmax - offset).astype(f32)
    nb = (y.size + block - 1) // block
    q = np.zeros(y.size, dtype=np.uint8)
    a2 = np.zeros(nb, dtype=f32)
    zero_index = int(np.nonzero(DMAP == 0)[0][0])
    for k in range(nb):
        v = y[k * block:(k + 1) * block]
        a = f32(np.max(np.abs(v)))
        a2[k] = a
        if a == 0:
            q[k * block:(k + 1) * block] = zero_index
            continue
        normed = (v / a).astype(f32)
        dist = np.abs(normed[:, None].astype(np.float64) - DMAP[None, :].astype(np.float64))
        q[k * block:(k + 1) * block] = np.argmin(dist, axis=1)  # first minimum: ties to the lower index
    restored = ((DMAP[q] * np.repeat(a2, block)[:q.size]).astype(f32) + offset).astype(f32)
    return q, a2, offset, restored


def int8_quantize(w):
    rows, cols = w.shape
    q = np.zeros((rows, cols), dtype=np.int8)
    scale = np.zeros(rows, dtype=f32)
    for r in range(rows):
        a = f32(np.max(np.abs(w[r])))
        scale[r] = f32(a / f32(127))
        if a == 0:
            continue
        inv = f32(f32(127) / a)
        q[r] = np.rint((w[r] * inv).astype(f32)).astype(np.int8)
    deq = (q.astype(f32) * scale[:, None]).astype(f32)
    return q, scale, deq


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    cases = []
    # A weight-like normal tensor, one with outliers, an all-zero block, exact ties on thresholds,
    # and a length that is neither a multiple of 64 nor even.
    w = (rng.standard_normal(64 * 70) * 0.02).astype(f32)
    w[5] = 0.5
    w[64 * 3:64 * 4] = 0
    w[64 * 5:64 * 6] = 0
    w[64 * 5] = 1.0
    w[64 * 5 + 1:64 * 5 + 16] = THRESH  # n exactly on every threshold: ties go down
    w[64 * 5 + 16:64 * 5 + 31] = np.nextafter(THRESH, f32(2))  # just above: up
    cases.append(('weight', w))
    cases.append(('odd', (rng.standard_normal(333) * 3).astype(f32)))
    blob = bytearray()
    tensors = []

    def add(name, arr):
        raw = np.ascontiguousarray(arr).tobytes()
        tensors.append({'name': name, 'dtype': str(arr.dtype), 'shape': list(arr.shape), 'offset': len(blob), 'bytes': len(raw)})
        blob.extend(raw)
        blob.extend(b'\0' * (-len(blob) % 8))

    for name, x in cases:
        packed, codes, absmax = nf4_quantize(x)
        q, a2, offset, restored = double_quantize(absmax)
        add(f'{name}.x', x)
        add(f'{name}.nf4.packed', packed)
        add(f'{name}.nf4.absmax', absmax)
        add(f'{name}.nf4.dequant', nf4_dequantize(codes, absmax))
        add(f'{name}.dq.codes', q)
        add(f'{name}.dq.absmax2', a2)
        add(f'{name}.dq.offset', np.array([offset], dtype=f32))
        add(f'{name}.dq.absmax', restored)
        add(f'{name}.dq.dequant', nf4_dequantize(codes, restored))
    m = (rng.standard_normal((37, 91)) * 0.05).astype(f32)
    m[3] = 0
    m[4, 7] = 2.0
    m[5, :] = (np.arange(91, dtype=f32) - 40) * f32(0.5)  # absmax 127 below: x·127/absmax = x, exact halves
    m[5, 90] = 127  # so rounding is tested half to even
    q, scale, deq = int8_quantize(m)
    add('int8.x', m)
    add('int8.q', q)
    add('int8.scale', scale)
    add('int8.dequant', deq)
    add('nf4.codebook', NF4)
    add('nf4.thresholds', THRESH)
    add('dq.map', DMAP)
    with open(os.path.join(OUT, 'quant.json'), 'w') as f:
        json.dump({'numpy': np.__version__, 'tensors': tensors}, f, indent=1)
    with open(os.path.join(OUT, 'quant.bin'), 'wb') as f:
        f.write(blob)
    print('tensors', len(tensors), 'bytes', len(blob))


if __name__ == '__main__':
    main()
