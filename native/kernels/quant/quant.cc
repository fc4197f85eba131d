// NF4 and int8 weight quantization (see quant.h and scripts/reference/quant_reference.py for the rules).
// Quantizing runs once per weight at load; dequantizing runs for every GEMM panel of a frozen weight, so it
// is written as a table lookup over whole bytes (two elements per lookup) and spread over the thread pool.
#include "kernels/quant/quant.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "runtime.h"

namespace sft::quant {

const float kNf4[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

namespace {

constexpr uint8_t kNf4Zero = 7;

struct Tables {
  float thresholds[15];  // midpoints of consecutive NF4 values, computed in double, rounded to float
  float dmap[256];
  int dmap_zero;
  float pair[256][2];  // byte -> its two NF4 values (high nibble first)
  Tables() {
    for (int i = 0; i < 15; ++i) thresholds[i] = static_cast<float>((double(kNf4[i]) + double(kNf4[i + 1])) / 2);
    // Dettmers' dynamic-exponent map for signed 8 bits (7 exponent bits), in double, rounded to float.
    double data[256];
    int n = 0;
    for (int i = 0; i < 7; ++i) {
      int items = (1 << i) + 1;
      double scale = std::pow(10.0, i - 6);
      for (int j = 0; j + 1 < items; ++j) {
        double lo = 0.1 + 0.9 * j / (items - 1), hi = 0.1 + 0.9 * (j + 1) / (items - 1);
        double mean = (lo + hi) / 2;
        data[n++] = scale * mean;
        data[n++] = -scale * mean;
      }
    }
    data[n++] = 0.0;
    data[n++] = 1.0;
    std::sort(data, data + n);
    dmap_zero = 0;
    for (int i = 0; i < 256; ++i) {
      dmap[i] = static_cast<float>(data[i]);
      if (data[i] == 0.0) dmap_zero = i;
    }
    for (int b = 0; b < 256; ++b) {
      pair[b][0] = kNf4[b >> 4];
      pair[b][1] = kNf4[b & 15];
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

inline uint8_t nf4_code(float normed, const float* thresholds) {
  uint8_t c = 0;
  for (int i = 0; i < 15; ++i) c += normed > thresholds[i];
  return c;
}

// Index of the entry of the ascending map nearest to v (distance in double; ties to the lower index).
inline uint8_t nearest(const float* map, float v) {
  int hi = static_cast<int>(std::lower_bound(map, map + 256, v) - map);  // first entry >= v
  if (hi == 0) return 0;
  if (hi == 256) return 255;
  double dl = std::fabs(double(v) - double(map[hi - 1])), dh = std::fabs(double(v) - double(map[hi]));
  return static_cast<uint8_t>(dh < dl ? hi : hi - 1);
}

inline float block_scale(const float* absmax, const uint8_t* qabsmax, float offset, int64_t b, const float* dmap) {
  if (!qabsmax) return absmax[b];
  float scaled = dmap[qabsmax[b]] * absmax[b / kDqBlock];
  return scaled + offset;
}

}  // namespace

const float* dynamic_map() { return tables().dmap; }

void nf4_quantize(const float* x, int64_t n, uint8_t* packed, float* absmax) {
  const Tables& t = tables();
  int64_t nb = (n + kNf4Block - 1) / kNf4Block;
  parallel_for_grain(nb, 64, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) {
      int64_t s = b * kNf4Block, e = std::min(n, s + kNf4Block);
      float a = 0.0f;
      for (int64_t i = s; i < e; ++i) a = std::max(a, std::fabs(x[i]));
      absmax[b] = a;
      float inv = a == 0.0f ? 0.0f : 1.0f / a;
      for (int64_t i = s; i < e; i += 2) {  // s is even (64 | s): pairs never straddle blocks
        uint8_t hi = a == 0.0f ? kNf4Zero : nf4_code(x[i] * inv, t.thresholds);
        uint8_t lo = 0;
        if (i + 1 < e) lo = a == 0.0f ? kNf4Zero : nf4_code(x[i + 1] * inv, t.thresholds);
        packed[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
      }
    }
  });
}

void nf4_dequantize(const uint8_t* packed, const float* absmax, const uint8_t* qabsmax, float offset,
                    int64_t start, int64_t count, float* out) {
  k::nf4_dequantize(packed, absmax, qabsmax, offset, start, count, out);  // the active ISA's (kernels/simd/quant.cc)
}

float nf4_block_scale(const float* absmax, const uint8_t* qabsmax, float offset, int64_t b) {
  return block_scale(absmax, qabsmax, offset, b, tables().dmap);
}

float dq_quantize(const float* absmax, int64_t nb, uint8_t* codes, float* absmax2) {
  const Tables& t = tables();
  double sum = 0.0;
  for (int64_t i = 0; i < nb; ++i) sum += absmax[i];  // in order, in double: the reference's rule
  float offset = nb ? static_cast<float>(sum / static_cast<double>(nb)) : 0.0f;
  int64_t nk = (nb + kDqBlock - 1) / kDqBlock;
  parallel_for_grain(nk, 16, [&](int64_t k0, int64_t k1, int) {
    for (int64_t k = k0; k < k1; ++k) {
      int64_t s = k * kDqBlock, e = std::min(nb, s + kDqBlock);
      float a = 0.0f;
      for (int64_t i = s; i < e; ++i) a = std::max(a, std::fabs(absmax[i] - offset));
      absmax2[k] = a;
      for (int64_t i = s; i < e; ++i) {
        float y = absmax[i] - offset;
        codes[i] = a == 0.0f ? static_cast<uint8_t>(t.dmap_zero) : nearest(t.dmap, y / a);
      }
    }
  });
  return offset;
}

void dq_dequantize(const uint8_t* codes, const float* absmax2, float offset, int64_t nb, float* out) {
  const Tables& t = tables();
  for (int64_t b = 0; b < nb; ++b) out[b] = block_scale(absmax2, codes, offset, b, t.dmap);
}

void int8_quantize(const float* w, int64_t rows, int64_t cols, int8_t* q, float* scale) {
  parallel_for_grain(rows, 4, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = w + r * cols;
      int8_t* y = q + r * cols;
      float a = 0.0f;
      for (int64_t c = 0; c < cols; ++c) a = std::max(a, std::fabs(x[c]));
      scale[r] = a / 127.0f;
      if (a == 0.0f) {
        std::fill(y, y + cols, int8_t(0));
        continue;
      }
      float inv = 127.0f / a;
      for (int64_t c = 0; c < cols; ++c) y[c] = static_cast<int8_t>(std::nearbyint(x[c] * inv));  // half to even
    }
  });
}

void int8_dequantize(const int8_t* q, const float* scale, int64_t row0, int64_t rows, int64_t cols, float* out) {
  parallel_for_grain(rows, 4, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int8_t* x = q + (row0 + r) * cols;
      float s = scale[row0 + r];
      float* y = out + r * cols;
      for (int64_t c = 0; c < cols; ++c) y[c] = static_cast<float>(x[c]) * s;
    }
  });
}

}  // namespace sft::quant

namespace sft::naive {

// The scalar NF4 dequantization: the reference the SIMD versions match bit for bit (one product per element).
void nf4_dequantize(const uint8_t* packed, const float* absmax, const uint8_t* qabsmax, float offset,
                    int64_t start, int64_t count, float* out) {
  const quant::Tables& t = quant::tables();
  if (count <= 0) return;
  parallel_for_grain(count, 1 << 14, [&](int64_t c0, int64_t c1, int) {
    int64_t i = start + c0, end = start + c1;
    float* o = out + c0;
    while (i < end) {
      int64_t b = i / quant::kNf4Block;
      float scale = quant::nf4_block_scale(absmax, qabsmax, offset, b);
      int64_t block_end = std::min(end, (b + 1) * quant::kNf4Block);
      if (i & 1) *o++ = quant::kNf4[packed[i / 2] & 15] * scale, ++i;  // an odd start: its low nibble
      for (; i + 1 < block_end; i += 2) {
        const float* p = t.pair[packed[i / 2]];
        o[0] = p[0] * scale;
        o[1] = p[1] * scale;
        o += 2;
      }
      if (i < block_end) *o++ = quant::kNf4[packed[i / 2] >> 4] * scale, ++i;  // an odd end: its high nibble
    }
  });
}


}  // namespace sft::naive
