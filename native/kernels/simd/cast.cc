// SIMD dtype casts (compiled per ISA into SFT_NS): f32 <-> bf16 (round to nearest even, NaN kept quiet),
// f32 <-> f16 with F16C, i32 <-> f32. Tails and the rarer pairs go through the naive reference, which
// produces the same bits.

#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/simd/simd.h"

namespace sft {
namespace SFT_NS {

namespace {

using namespace simd;

constexpr int64_t kGrain = 16384;
constexpr int64_t kBlock = 256;  // f32 staging buffer for pairs that go through f32

// Each converter handles n elements with full vectors and returns how many it did (a multiple of W).
#if SFT_ISA == 2
inline __m512i bf16_round(__m512 v) {
  __m512i u = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));  // quieted NaN
  __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_mask_blend_epi32(nan, r, q);
}

int64_t f32_to_bf16(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtepi32_epi16(bf16_round(_mm512_loadu_ps(s + i))));
  return i;
}

int64_t bf16_to_f32(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  return i;
}

int64_t f32_to_f16(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return i;
}

int64_t f16_to_f32(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W)
    _mm512_storeu_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  return i;
}

int64_t i32_to_f32(const int32_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) _mm512_storeu_ps(d + i, _mm512_cvtepi32_ps(_mm512_loadu_si512(s + i)));
  return i;
}

// cvttps2dq gives INT32_MIN for NaN and out-of-range values, which the naive path reproduces.
int64_t f32_to_i32(const float* s, int32_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) _mm512_storeu_si512(d + i, _mm512_cvttps_epi32(_mm512_loadu_ps(s + i)));
  return i;
}
#else
inline __m256i bf16_round(__m256 v) {
  __m256i u = _mm256_castps_si256(v);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(q), nan));
}

// Two vectors of 8 become 16 halves: packus works per 128-bit lane, so the quadwords are reordered after.
int64_t f32_to_bf16(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    __m256i a = bf16_round(_mm256_loadu_ps(s + i)), b = bf16_round(_mm256_loadu_ps(s + i + W));
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), packed);
  }
  return i;
}

int64_t bf16_to_f32(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    _mm256_storeu_ps(d + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  return i;
}

int64_t f32_to_f16(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return i;
}

int64_t f16_to_f32(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  return i;
}

int64_t i32_to_f32(const int32_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W)
    _mm256_storeu_ps(d + i, _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  return i;
}

int64_t f32_to_i32(const float* s, int32_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm256_cvttps_epi32(_mm256_loadu_ps(s + i)));
  return i;
}
#endif

// Vector body for the direct pairs; returns how many leading elements it converted.
int64_t cast_direct(const void* src, int sd, void* dst, int dd, int64_t n) {
  if (sd == kF32 && dd == kBF16) return f32_to_bf16(static_cast<const float*>(src), static_cast<uint16_t*>(dst), n);
  if (sd == kBF16 && dd == kF32) return bf16_to_f32(static_cast<const uint16_t*>(src), static_cast<float*>(dst), n);
  if (sd == kF32 && dd == kF16) return f32_to_f16(static_cast<const float*>(src), static_cast<uint16_t*>(dst), n);
  if (sd == kF16 && dd == kF32) return f16_to_f32(static_cast<const uint16_t*>(src), static_cast<float*>(dst), n);
  if (sd == kI32 && dd == kF32) return i32_to_f32(static_cast<const int32_t*>(src), static_cast<float*>(dst), n);
  if (sd == kF32 && dd == kI32) return f32_to_i32(static_cast<const float*>(src), static_cast<int32_t*>(dst), n);
  return -1;
}

// One contiguous range: direct pairs vectorised with the naive tail; other pairs staged through f32.
void cast_range(const void* src, int sd, void* dst, int dd, int64_t n) {
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  const int sb = dtype_bytes(sd), db = dtype_bytes(dd);
  int64_t done = cast_direct(src, sd, dst, dd, n);
  if (done >= 0) {
    if (done < n) naive::cast(s + done * sb, sd, d + done * db, dd, n - done);
    return;
  }
  float stage[kBlock];
  for (int64_t off = 0; off < n; off += kBlock) {
    int64_t len = std::min(kBlock, n - off);
    int64_t a = cast_direct(s + off * sb, sd, stage, kF32, len);
    if (a < len) naive::cast(s + (off + a) * sb, sd, stage + a, kF32, len - a);
    int64_t b = cast_direct(stage, kF32, d + off * db, dd, len);
    if (b < len) naive::cast(stage + b, kF32, d + (off + b) * db, dd, len - b);
  }
}

}  // namespace

void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n) {
  if (src_dtype == dst_dtype) {
    std::memmove(dst, src, static_cast<size_t>(n) * dtype_bytes(src_dtype));
    return;
  }
  const int sb = dtype_bytes(src_dtype), db = dtype_bytes(dst_dtype);
  parallel_for_grain(n, kGrain, [&](int64_t begin, int64_t end, int) {
    cast_range(static_cast<const uint8_t*>(src) + begin * sb, src_dtype, static_cast<uint8_t*>(dst) + begin * db, dst_dtype,
               end - begin);
  });
}

}  // namespace SFT_NS
}  // namespace sft
