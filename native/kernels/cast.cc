// The naive reference of dtype casts between f32, bf16, f16 and i32, bit-exact with the SIMD paths:
// f32 -> bf16/f16 round to nearest even and keep NaN a quiet NaN; f32 -> i32 truncates toward zero.
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"

namespace sft {

namespace {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t u = bits_of(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet the NaN
  u += 0x7FFFu + ((u >> 16) & 1u);  // ties go to the even upper half
  return static_cast<uint16_t>(u >> 16);
}

float bf16_to_f32(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

// IEEE binary16 as x86's F16C produces it: round to nearest even, overflow to inf, subnormals kept,
// NaN quieted with the top of its payload.
uint16_t f32_to_f16(float f) {
  uint32_t u = bits_of(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x38800000u) {  // normal in binary16 (>= 2^-14), or overflowing
    uint32_t h = (a - 0x38000000u) >> 13;
    uint32_t rem = a & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    if (h > 0x7C00u) h = 0x7C00u;
    return static_cast<uint16_t>(sign | h);
  }
  if (a <= 0x33000000u) return sign;  // <= 2^-25 (the tie with 2^-24 goes to the even zero)
  uint32_t e = a >> 23;               // 102..112 here
  uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
  uint32_t shift = 126u - e;          // value = mant * 2^(e-150) in units of 2^-24
  uint32_t h = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {
    float v = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24, exact
    return float_of(sign | bits_of(v));
  }
  if (e == 31) return float_of(sign | 0x7F800000u | (m ? (0x400000u | (m << 13)) : 0u));
  return float_of(sign | ((e + 112u) << 23) | (m << 13));
}

// Truncation toward zero; NaN and out-of-range values give INT32_MIN, as x86's cvttps2dq does.
int32_t f32_to_i32(float f) {
  if (!(f > -2147483904.f && f < 2147483648.f)) return INT32_MIN;
  return static_cast<int32_t>(f);
}

float load_f32(const void* src, int dtype, int64_t i) {
  switch (dtype) {
    case kBF16: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case kF16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case kI32: return static_cast<float>(static_cast<const int32_t*>(src)[i]);
    default: return static_cast<const float*>(src)[i];
  }
}

void store_f32(void* dst, int dtype, int64_t i, float f) {
  switch (dtype) {
    case kBF16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(f); break;
    case kF16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(f); break;
    case kI32: static_cast<int32_t*>(dst)[i] = f32_to_i32(f); break;
    default: static_cast<float*>(dst)[i] = f; break;
  }
}

}  // namespace

namespace naive {

// Every pair goes through f32 (exact for bf16/f16 sources); same-dtype casts copy bits unchanged.
void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n) {
  if (src_dtype == dst_dtype) {
    std::memmove(dst, src, static_cast<size_t>(n) * dtype_bytes(src_dtype));
    return;
  }
  for (int64_t i = 0; i < n; ++i) store_f32(dst, dst_dtype, i, load_f32(src, src_dtype, i));
}

}  // namespace naive

}  // namespace sft
