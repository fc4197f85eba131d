// AVX-512 register helpers shared by the fp32 GEMM's AVX-512 build (kernels/simd/gemm.cc) and the bf16 GEMMs
// on pair panels (kernels/bf16/gemm_dpbf16.cc, kernels/amx/gemm_amx.cc). Include only from code compiled with
// -mavx512f -mavx512bw. Internal linkage: each
// including file gets its own copy, built with its own ISA flags.
#pragma once
#include <immintrin.h>

#include <cstdint>

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

// The first n of 16 lanes (none for n <= 0, all for n >= 16).
inline __mmask16 mask16(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1); }

// The high halves of the 32-bit lanes: where a bf16 sits in its fp32 pattern, and the odd k of a pair word.
inline __m512i hi_halves() { return _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)); }

// transpose16 on integer lanes.
inline void transpose16(__m512i* ri) {
  __m512 r[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castsi512_ps(ri[i]);
  transpose16(r);
  for (int i = 0; i < 16; ++i) ri[i] = _mm512_castps_si512(r[i]);
}

// Pair words from 32 consecutive rounded values lo:hi (round_bf16 of 16 + 16 floats): word i holds value 2i in
// its low half and value 2i + 1 in its high half.
inline __m512i pick_pairs(__m512i lo, __m512i hi) {
  const __m512i pick = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33,
                                        31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(lo, pick, hi);
}

// Pair words from two rounded rows of values (lo: k even, hi: k odd), lane by lane.
inline __m512i pair_lanes(__m512i lo, __m512i hi) {
  return _mm512_or_si512(_mm512_and_si512(hi, hi_halves()), _mm512_srli_epi32(lo, 16));
}

// Denormals (exponent field 0) become zeros of the same sign, as vdpbf16ps and tdpbf16ps treat their inputs
// (DAZ) and results (FTZ) whatever MXCSR says: what their emulations apply.
inline __m512 flush_denormals(__m512 x) {
  const __m512i bits = _mm512_castps_si512(x);
  const __mmask16 tiny = _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7F800000));
  return _mm512_castsi512_ps(_mm512_mask_and_epi32(bits, tiny, bits, _mm512_set1_epi32(static_cast<int>(0x80000000u))));
}

}  // namespace avx512_util
}  // namespace
}  // namespace sft
