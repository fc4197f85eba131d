// NF4 dequantization with SIMD (compiled per ISA into SFT_NS): the 16-value code book sits in registers and each
// code is looked up by a lane permute (AVX-512: one vpermps over 16 entries; AVX2: two 8-entry vpermps and a
// blend), the two nibbles of each byte interleaved back into element order, then one multiply by the block's
// scale. One product per element, as the scalar reference (naive::nf4_dequantize) does: the same bits.

#include <algorithm>

#include "kernels/kernels.h"
#include "kernels/quant/quant.h"
#include "kernels/simd/simd.h"
#include "runtime.h"

namespace sft {
namespace SFT_NS {

namespace {

// 2·W elements (W bytes of codes, high nibble first) into o, each code's value times scale.
#if SFT_ISA == 2
struct Nf4Lut {
  __m512 table = _mm512_loadu_ps(quant::kNf4);
  __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  inline void run(const uint8_t* bytes, float scale, float* o) const {
    __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes)));
    __m512 first = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 4), table);                  // high nibbles
    __m512 second = _mm512_permutexvar_ps(_mm512_and_si512(w, _mm512_set1_epi32(15)), table);  // low nibbles
    __m512 s = _mm512_set1_ps(scale);
    _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_permutex2var_ps(first, lo_idx, second), s));
    _mm512_storeu_ps(o + 16, _mm512_mul_ps(_mm512_permutex2var_ps(first, hi_idx, second), s));
  }
};
#else
struct Nf4Lut {
  __m256 lo = _mm256_loadu_ps(quant::kNf4);
  __m256 hi = _mm256_loadu_ps(quant::kNf4 + 8);
  inline __m256 look(__m256i idx) const {
    __m256 a = _mm256_permutevar8x32_ps(lo, idx);
    __m256 b = _mm256_permutevar8x32_ps(hi, idx);
    __m256i upper = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7));
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(upper));
  }
  inline void run(const uint8_t* bytes, float scale, float* o) const {
    __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes)));
    __m256 first = look(_mm256_srli_epi32(w, 4));
    __m256 second = look(_mm256_and_si256(w, _mm256_set1_epi32(15)));
    // Interleave: (f0 s0 f1 s1 | f4 s4 f5 s5) and (f2 s2 f3 s3 | f6 s6 f7 s7), then put the halves in order.
    __m256 a = _mm256_unpacklo_ps(first, second);
    __m256 b = _mm256_unpackhi_ps(first, second);
    __m256 s = _mm256_set1_ps(scale);
    _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_permute2f128_ps(a, b, 0x20), s));
    _mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_permute2f128_ps(a, b, 0x31), s));
  }
};
#endif

}  // namespace

void nf4_dequantize(const uint8_t* packed, const float* absmax, const uint8_t* qabsmax, float offset,
                    int64_t start, int64_t count, float* out) {
  if (count <= 0) return;
  const float* nf4 = quant::kNf4;
  const Nf4Lut lut;
  constexpr int64_t kStep = 2 * simd::W;  // elements per lookup (W bytes of codes)
  parallel_for_grain(count, 1 << 14, [&](int64_t c0, int64_t c1, int) {
    int64_t i = start + c0, end = start + c1;
    float* o = out + c0;
    while (i < end) {
      int64_t b = i / quant::kNf4Block;
      float scale = quant::nf4_block_scale(absmax, qabsmax, offset, b);
      int64_t block_end = std::min(end, (b + 1) * quant::kNf4Block);
      if (i & 1) *o++ = nf4[packed[i / 2] & 15] * scale, ++i;  // an odd start: its low nibble
      for (; i + kStep <= block_end; i += kStep, o += kStep) lut.run(packed + i / 2, scale, o);
      for (; i + 1 < block_end; i += 2, o += 2) {
        uint8_t byte = packed[i / 2];
        o[0] = nf4[byte >> 4] * scale;
        o[1] = nf4[byte & 15] * scale;
      }
      if (i < block_end) *o++ = nf4[packed[i / 2] >> 4] * scale, ++i;  // an odd end: its high nibble
    }
  });
}

}  // namespace SFT_NS
}  // namespace sft
