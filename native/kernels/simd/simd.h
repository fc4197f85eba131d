// A thin fp32 vector type over AVX-512 (16 lanes) or AVX2 (8 lanes), chosen by SFT_ISA at compile time.
// Files under kernels/simd/ are compiled once per ISA and put their code in namespace SFT_NS.
#pragma once
// GCC 12 reports the _mm512_undefined_* placeholders inside its own immintrin.h (and the transposes built on
// them) as uninitialised (GCC bug 105593): false alarms, silenced for every SIMD file here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <cmath>
#include <cstdint>

#if SFT_ISA == 2
#define SFT_NS avx512
#elif SFT_ISA == 1
#define SFT_NS avx2
#else
#error "simd files are compiled with SFT_ISA=1 (AVX2) or SFT_ISA=2 (AVX-512)"
#endif

namespace sft {
namespace SFT_NS {
namespace simd {

#if SFT_ISA == 2
constexpr int W = 16;
struct VF { __m512 v; };
inline VF load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store(float* p, VF a) { _mm512_storeu_ps(p, a.v); }
inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }
// Partial load/store of the first n (< W) lanes; other lanes read as `fill`.
inline VF load_partial(const float* p, int64_t n, float fill = 0.f) { return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p)}; }
inline void store_partial(float* p, VF a, int64_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), a.v); }
inline VF set1(float x) { return {_mm512_set1_ps(x)}; }
inline VF zero() { return {_mm512_setzero_ps()}; }
inline VF add(VF a, VF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VF sub(VF a, VF b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VF mul(VF a, VF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VF div(VF a, VF b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VF fmadd(VF a, VF b, VF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }   // a*b + c
inline VF fnmadd(VF a, VF b, VF c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; } // c - a*b
inline VF max(VF a, VF b) { return {_mm512_max_ps(a.v, b.v)}; }
inline VF min(VF a, VF b) { return {_mm512_min_ps(a.v, b.v)}; }
inline VF sqrt(VF a) { return {_mm512_sqrt_ps(a.v)}; }
inline float reduce_add(VF a) { return _mm512_reduce_add_ps(a.v); }
inline float reduce_max(VF a) { return _mm512_reduce_max_ps(a.v); }
inline VF floor(VF a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)}; }
// 2^n for integer-valued n in [-126, 127].
inline VF pow2i(VF n) {
  __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
}
#else
constexpr int W = 8;
struct VF { __m256 v; };
inline VF load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store(float* p, VF a) { _mm256_storeu_ps(p, a.v); }
inline __m256i tail_mask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}
inline VF load_partial(const float* p, int64_t n, float fill = 0.f) {
  __m256i m = tail_mask(n);
  __m256 x = _mm256_maskload_ps(p, m);
  return {_mm256_blendv_ps(_mm256_set1_ps(fill), x, _mm256_castsi256_ps(m))};
}
inline void store_partial(float* p, VF a, int64_t n) { _mm256_maskstore_ps(p, tail_mask(n), a.v); }
inline VF set1(float x) { return {_mm256_set1_ps(x)}; }
inline VF zero() { return {_mm256_setzero_ps()}; }
inline VF add(VF a, VF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VF sub(VF a, VF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VF mul(VF a, VF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VF div(VF a, VF b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VF fmadd(VF a, VF b, VF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VF fnmadd(VF a, VF b, VF c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
inline VF max(VF a, VF b) { return {_mm256_max_ps(a.v, b.v)}; }
inline VF min(VF a, VF b) { return {_mm256_min_ps(a.v, b.v)}; }
inline VF sqrt(VF a) { return {_mm256_sqrt_ps(a.v)}; }
inline float reduce_add(VF a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float reduce_max(VF a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline VF floor(VF a) { return {_mm256_floor_ps(a.v)}; }
inline VF pow2i(VF n) {
  __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(e, 23))};
}
#endif

// exp(x) with ~1 ulp error over the float range: range reduction by ln 2, degree-6 polynomial.
// Inputs below -87.3 give 0 (as expf does, up to denormals); above 88.7 give +inf.
inline VF exp(VF x) {
  const VF hi = set1(88.7228f), lo = set1(-87.3365f);
  VF xc = min(max(x, lo), hi);
  VF n = floor(fmadd(xc, set1(1.44269504088896341f), set1(0.5f)));
  VF r = fnmadd(n, set1(0.693359375f), xc);          // Cody-Waite split of ln 2
  r = fnmadd(n, set1(-2.12194440e-4f), r);
  VF p = set1(1.9875691500e-4f);
  p = fmadd(p, r, set1(1.3981999507e-3f));
  p = fmadd(p, r, set1(8.3334519073e-3f));
  p = fmadd(p, r, set1(4.1665795894e-2f));
  p = fmadd(p, r, set1(1.6666665459e-1f));
  p = fmadd(p, r, set1(5.0000001201e-1f));
  p = fmadd(mul(p, r), r, add(r, set1(1.f)));
  VF res = mul(p, pow2i(n));
#if SFT_ISA == 2
  __mmask16 over = _mm512_cmp_ps_mask(x.v, hi.v, _CMP_GT_OQ);
  __mmask16 under = _mm512_cmp_ps_mask(x.v, lo.v, _CMP_LT_OQ);
  res.v = _mm512_mask_blend_ps(over, res.v, _mm512_set1_ps(INFINITY));
  res.v = _mm512_mask_blend_ps(under, res.v, _mm512_setzero_ps());
  __mmask16 nan = _mm512_cmp_ps_mask(x.v, x.v, _CMP_UNORD_Q);
  res.v = _mm512_mask_blend_ps(nan, res.v, x.v);
#else
  res.v = _mm256_blendv_ps(res.v, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x.v, hi.v, _CMP_GT_OQ));
  res.v = _mm256_blendv_ps(res.v, _mm256_setzero_ps(), _mm256_cmp_ps(x.v, lo.v, _CMP_LT_OQ));
  res.v = _mm256_blendv_ps(res.v, x.v, _mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q));
#endif
  return res;
}

}  // namespace simd
}  // namespace SFT_NS
}  // namespace sft
