// AVX-512 register helpers shared by the fp32 GEMM's AVX-512 build (kernels/simd/gemm.cc) and the vdpbf16ps
// GEMM (kernels/bf16/gemm_dpbf16.cc). Include only from code compiled with -mavx512f. Internal linkage: each
// including file gets its own copy, built with its own ISA flags.
#pragma once
#include <immintrin.h>

namespace sft {
namespace {
namespace avx512_util {

// In-register transpose of a 16 x 16 block of 32-bit lanes: on return r[k] holds what was column k.
inline void transpose16(__m512* r) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // u[4i + j] holds rows 4i..4i+3 of columns j, j+4, j+8, j+12 (one per 128-bit lane).
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), v1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), v3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    r[j + 4] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[j + 12] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}

// Each fp32 lane rounded to the nearest bf16 (ties to even), kept in fp32 format (low 16 bits zero); NaN stays
// a quiet NaN. Bit-exact with round_bf16() in kernels.h.
inline __m512i round_bf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x), hi = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), hi);
  const __m512i q = _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x400000)), hi);
  return _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), r, q);
}

}  // namespace avx512_util
}  // namespace
}  // namespace sft
