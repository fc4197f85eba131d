// SIMD elementwise kernels (compiled per ISA into SFT_NS): unary ops and their backward, binary rows.
// Transcendentals use simd::exp and a vector log below; pow with a general exponent stays scalar.

#include <cmath>

#include "kernels/kernels.h"
#include "kernels/simd/simd.h"

namespace sft {
namespace SFT_NS {

namespace {

using namespace simd;

constexpr int64_t kGrain = 16384;
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluK = 0.044715f;

// --- masks and integer helpers the vector wrapper does not have
#if SFT_ISA == 2
using Mask = __mmask16;
template <int P> inline Mask cmp(VF a, VF b) { return _mm512_cmp_ps_mask(a.v, b.v, P); }
inline VF select(Mask m, VF a, VF b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }  // m ? a : b
inline Mask mask_or(Mask a, Mask b) { return a | b; }
// log(x) pieces: x = mant * 2^e with mant in [1, 2).
inline VF exponent_of(VF x) {
  __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(_mm512_castps_si512(x.v), 23), _mm512_set1_epi32(127));
  return {_mm512_cvtepi32_ps(e)};
}
inline VF mantissa_of(VF x) {
  __m512i m = _mm512_and_si512(_mm512_castps_si512(x.v), _mm512_set1_epi32(0x7FFFFF));
  return {_mm512_castsi512_ps(_mm512_or_si512(m, _mm512_set1_epi32(0x3F800000)))};
}
#else
using Mask = __m256;
template <int P> inline Mask cmp(VF a, VF b) { return _mm256_cmp_ps(a.v, b.v, P); }
inline VF select(Mask m, VF a, VF b) { return {_mm256_blendv_ps(b.v, a.v, m)}; }
inline Mask mask_or(Mask a, Mask b) { return _mm256_or_ps(a, b); }
inline VF exponent_of(VF x) {
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(x.v), 23), _mm256_set1_epi32(127));
  return {_mm256_cvtepi32_ps(e)};
}
inline VF mantissa_of(VF x) {
  __m256i m = _mm256_and_si256(_mm256_castps_si256(x.v), _mm256_set1_epi32(0x7FFFFF));
  return {_mm256_castsi256_ps(_mm256_or_si256(m, _mm256_set1_epi32(0x3F800000)))};
}
#endif

inline VF neg(VF x) { return sub(zero(), x); }

// Natural log: x = m * 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172,
// summed as an odd series to s^11 (truncation ~1e-10 relative). Subnormals are scaled up by 2^23 first.
inline VF log(VF x) {
  Mask tiny = cmp<_CMP_LT_OQ>(x, set1(1.17549435e-38f));
  VF xs = select(tiny, mul(x, set1(8388608.f)), x);
  VF e = sub(exponent_of(xs), select(tiny, set1(23.f), zero()));
  VF m = mantissa_of(xs);
  Mask big = cmp<_CMP_GT_OQ>(m, set1(1.41421356f));
  m = select(big, mul(m, set1(0.5f)), m);
  e = select(big, add(e, set1(1.f)), e);
  VF s = div(sub(m, set1(1.f)), add(m, set1(1.f)));
  VF z = mul(s, s);
  VF p = set1(2.f / 11.f);
  p = fmadd(p, z, set1(2.f / 9.f));
  p = fmadd(p, z, set1(2.f / 7.f));
  p = fmadd(p, z, set1(2.f / 5.f));
  p = fmadd(p, z, set1(2.f / 3.f));
  p = fmadd(p, z, set1(2.f));
  VF lm = mul(p, s);
  // e * ln2 split in a high part exact in float and a low correction.
  VF r = fmadd(e, set1(0.693145751953125f), fmadd(e, set1(1.4286068202862268e-06f), lm));
  // Specials: log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
  r = select(cmp<_CMP_EQ_OQ>(x, zero()), set1(-INFINITY), r);
  r = select(cmp<_CMP_LT_OQ>(x, zero()), set1(NAN), r);
  r = select(cmp<_CMP_EQ_OQ>(x, set1(INFINITY)), x, r);
  r = select(cmp<_CMP_UNORD_Q>(x, x), x, r);
  return r;
}

inline VF sigmoid(VF x) { return div(set1(1.f), add(set1(1.f), exp(neg(x)))); }

// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = c (x + k x^3): no cancellation for x << 0.
inline VF gelu_gate(VF x) {
  VF x2 = mul(x, x);
  VF u2 = mul(mul(x, set1(2.f * kGeluC)), fmadd(x2, set1(kGeluK), set1(1.f)));
  return sigmoid(u2);
}

float pow_one(float x, float a) { return std::pow(x, a); }

// Applies f to n elements of each input stream, full vectors then one masked tail.
template <typename F>
inline void map1(const float* x, float* y, int64_t n, float fill, F f) {
  int64_t i = 0;
  for (; i + W <= n; i += W) store(y + i, f(load(x + i)));
  if (i < n) store_partial(y + i, f(load_partial(x + i, n - i, fill)), n - i);
}

template <typename F>
inline void map_unary_grad(const float* x, const float* y, const float* dy, float* dx, int64_t n, F f) {
  int64_t i = 0;
  for (; i + W <= n; i += W) store(dx + i, f(x ? load(x + i) : zero(), y ? load(y + i) : zero(), load(dy + i)));
  if (i < n) {
    int64_t r = n - i;
    VF xv = x ? load_partial(x + i, r, 1.f) : zero();
    VF yv = y ? load_partial(y + i, r, 1.f) : zero();
    store_partial(dx + i, f(xv, yv, load_partial(dy + i, r)), r);
  }
}

void unary_chunk(int op, const float* x, float* y, int64_t n, float alpha) {
  const VF av = set1(alpha);
  switch (op) {
    case kNeg: return map1(x, y, n, 0.f, [](VF v) { return neg(v); });
    case kExp: return map1(x, y, n, 0.f, [](VF v) { return exp(v); });
    case kLog: return map1(x, y, n, 1.f, [](VF v) { return log(v); });
    case kSqrt: return map1(x, y, n, 1.f, [](VF v) { return simd::sqrt(v); });
    case kRsqrt: return map1(x, y, n, 1.f, [](VF v) { return div(set1(1.f), simd::sqrt(v)); });
    case kSilu: return map1(x, y, n, 0.f, [](VF v) { return mul(v, sigmoid(v)); });
    case kGelu: return map1(x, y, n, 0.f, [](VF v) { return mul(v, gelu_gate(v)); });
    case kScale: return map1(x, y, n, 0.f, [av](VF v) { return mul(av, v); });
    case kAddScalar: return map1(x, y, n, 0.f, [av](VF v) { return add(v, av); });
    case kSquare: return map1(x, y, n, 0.f, [](VF v) { return mul(v, v); });
    case kRelu: return map1(x, y, n, 0.f, [](VF v) { return select(cmp<_CMP_GT_OQ>(v, zero()), v, zero()); });
    case kPowScalar:
      if (alpha == 2.f) return map1(x, y, n, 0.f, [](VF v) { return mul(v, v); });
      if (alpha == 1.f) return map1(x, y, n, 0.f, [](VF v) { return v; });
      if (alpha == 0.5f) return map1(x, y, n, 1.f, [](VF v) { return simd::sqrt(v); });
      if (alpha == -1.f) return map1(x, y, n, 1.f, [](VF v) { return div(set1(1.f), v); });
      for (int64_t i = 0; i < n; ++i) y[i] = pow_one(x[i], alpha);
      return;
    default:
      for (int64_t i = 0; i < n; ++i) y[i] = NAN;
  }
}

void unary_bwd_chunk(int op, const float* x, const float* y, const float* dy, float* dx, int64_t n, float alpha) {
  const VF av = set1(alpha);
  switch (op) {
    case kNeg: return map_unary_grad(x, y, dy, dx, n, [](VF, VF, VF g) { return neg(g); });
    case kExp: return map_unary_grad(x, y, dy, dx, n, [](VF, VF yv, VF g) { return mul(g, yv); });
    case kLog: return map_unary_grad(x, y, dy, dx, n, [](VF xv, VF, VF g) { return div(g, xv); });
    case kSqrt:
      return map_unary_grad(x, y, dy, dx, n, [](VF, VF yv, VF g) { return div(mul(g, set1(0.5f)), yv); });
    case kRsqrt:
      return map_unary_grad(x, y, dy, dx, n, [](VF, VF yv, VF g) {
        return mul(mul(mul(mul(g, set1(-0.5f)), yv), yv), yv);
      });
    case kSilu:
      return map_unary_grad(x, y, dy, dx, n, [](VF xv, VF, VF g) {
        VF s = sigmoid(xv);  // s (1 + x (1 - s))
        return mul(g, mul(s, fmadd(xv, sub(set1(1.f), s), set1(1.f))));
      });
    case kGelu:
      return map_unary_grad(x, y, dy, dx, n, [](VF xv, VF, VF g) {
        // d/dx [x s(2u)] = s (1 + 2 x (1 - s) u'), u' = c (1 + 3k x^2)
        VF s = gelu_gate(xv);
        VF du = mul(set1(kGeluC), fmadd(mul(xv, xv), set1(3.f * kGeluK), set1(1.f)));
        VF t = mul(mul(add(xv, xv), sub(set1(1.f), s)), du);
        return mul(g, fmadd(s, t, s));
      });
    case kScale: return map_unary_grad(x, y, dy, dx, n, [av](VF, VF, VF g) { return mul(g, av); });
    case kAddScalar: return map_unary_grad(x, y, dy, dx, n, [](VF, VF, VF g) { return g; });
    case kSquare:
      return map_unary_grad(x, y, dy, dx, n, [](VF xv, VF, VF g) { return mul(mul(g, set1(2.f)), xv); });
    case kRelu:
      return map_unary_grad(x, y, dy, dx, n, [](VF xv, VF, VF g) { return select(cmp<_CMP_GT_OQ>(xv, zero()), g, zero()); });
    case kPowScalar:
      if (alpha == 2.f) return map_unary_grad(x, y, dy, dx, n, [](VF xv, VF, VF g) { return mul(mul(g, set1(2.f)), xv); });
      if (alpha == 1.f) return map_unary_grad(x, y, dy, dx, n, [](VF, VF, VF g) { return g; });
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * alpha * pow_one(x[i], alpha - 1.f);
      return;
    default:
      for (int64_t i = 0; i < n; ++i) dx[i] = NAN;
  }
}

// One (a, b) pair of vectors through a binary op; maximum propagates NaN like torch.maximum.
template <int Op>
inline VF binary_vec(VF a, VF b) {
  if constexpr (Op == kAdd) return add(a, b);
  else if constexpr (Op == kSub) return sub(a, b);
  else if constexpr (Op == kMul) return mul(a, b);
  else if constexpr (Op == kDiv) return div(a, b);
  else {
    VF m = simd::max(a, b);
    return select(cmp<_CMP_UNORD_Q>(a, b), add(a, b), m);
  }
}

template <int Op>
void binary_row_t(const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  int64_t i = 0;
  if (sa && sb) {
    for (; i + W <= n; i += W) store(out + i, binary_vec<Op>(load(a + i), load(b + i)));
    if (i < n) store_partial(out + i, binary_vec<Op>(load_partial(a + i, n - i, 1.f), load_partial(b + i, n - i, 1.f)), n - i);
  } else if (sa) {
    VF bv = set1(*b);
    for (; i + W <= n; i += W) store(out + i, binary_vec<Op>(load(a + i), bv));
    if (i < n) store_partial(out + i, binary_vec<Op>(load_partial(a + i, n - i, 1.f), bv), n - i);
  } else if (sb) {
    VF av = set1(*a);
    for (; i + W <= n; i += W) store(out + i, binary_vec<Op>(av, load(b + i)));
    if (i < n) store_partial(out + i, binary_vec<Op>(av, load_partial(b + i, n - i, 1.f)), n - i);
  } else {
    float r[W];
    store(r, binary_vec<Op>(set1(*a), set1(*b)));
    for (; i < n; ++i) out[i] = r[0];
  }
}

// --- dropout_mask: kernels.h's dropout_hash, W counters at a time
#if SFT_ISA == 2
using VI = __m512i;
inline VI vi_set1(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
inline VI vi_iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
inline VI vi_add(VI a, VI b) { return _mm512_add_epi32(a, b); }
inline VI vi_mul(VI a, VI b) { return _mm512_mullo_epi32(a, b); }
inline VI vi_xor(VI a, VI b) { return _mm512_xor_si512(a, b); }
template <int S> inline VI vi_srl(VI a) { return _mm512_srli_epi32(a, S); }
// Lanes with z < t (unsigned) keep `kept`, others 0.
inline VF keep_where_below(VI z, VI t, VF kept) { return {_mm512_maskz_mov_ps(_mm512_cmplt_epu32_mask(z, t), kept.v)}; }
#else
using VI = __m256i;
inline VI vi_set1(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
inline VI vi_iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
inline VI vi_add(VI a, VI b) { return _mm256_add_epi32(a, b); }
inline VI vi_mul(VI a, VI b) { return _mm256_mullo_epi32(a, b); }
inline VI vi_xor(VI a, VI b) { return _mm256_xor_si256(a, b); }
template <int S> inline VI vi_srl(VI a) { return _mm256_srli_epi32(a, S); }
inline VF keep_where_below(VI z, VI t, VF kept) {
  // No unsigned compare on AVX2: flip the sign bits and compare signed.
  const VI flip = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i lt = _mm256_cmpgt_epi32(_mm256_xor_si256(t, flip), _mm256_xor_si256(z, flip));
  return {_mm256_and_ps(_mm256_castsi256_ps(lt), kept.v)};
}
#endif

inline VI fmix(VI z) {
  z = vi_mul(vi_xor(z, vi_srl<16>(z)), vi_set1(0x85EBCA6Bu));
  z = vi_mul(vi_xor(z, vi_srl<13>(z)), vi_set1(0xC2B2AE35u));
  return vi_xor(z, vi_srl<16>(z));
}

void dropout_chunk(uint32_t key0, uint32_t key1, uint64_t threshold, float kept, const float* x, float* out, float* mask,
                   int64_t begin, int64_t end) {
  const VI golden = vi_set1(0x9E3779B9u), k0 = vi_set1(key0), k1 = vi_set1(key1), lane = vi_iota();
  // threshold 2^32 (keep = 1) keeps every lane: compare against the largest value and keep ties too.
  const bool all = threshold > 0xFFFFFFFFull;
  const VI t = vi_set1(static_cast<uint32_t>(all ? 0xFFFFFFFFull : threshold));
  const VF vk = set1(kept);
  int64_t i = begin;
  for (; i + W <= end; i += W) {
    const VI counter = vi_add(vi_set1(static_cast<uint32_t>(i + 1)), lane);
    const VI z = fmix(vi_xor(fmix(vi_add(k0, vi_mul(golden, counter))), k1));
    const VF m = all ? vk : keep_where_below(z, t, vk);
    if (mask) store(mask + i, m);
    if (out) store(out + i, mul(load(x + i), m));
  }
  // The tail, one counter at a time (the same hash, scalar).
  for (; i < end; ++i) {
    const uint32_t z = dropout_hash(key0, key1, i);
    const float m = z < threshold ? kept : 0.f;
    if (mask) mask[i] = m;
    if (out) out[i] = x[i] * m;
  }
}

}  // namespace

void dropout_mask(uint32_t key0, uint32_t key1, double keep, const float* x, float* out, float* mask, int64_t n) {
  const uint64_t threshold = static_cast<uint64_t>(std::ceil(keep * 4294967296.0));
  const float kept = static_cast<float>(1.0 / keep);
  parallel_for_grain(n, kGrain, [&](int64_t begin, int64_t end, int) { dropout_chunk(key0, key1, threshold, kept, x, out, mask, begin, end); });
}

void unary(int op, const float* x, float* y, int64_t n, float alpha) {
  parallel_for_grain(n, kGrain, [&](int64_t begin, int64_t end, int) { unary_chunk(op, x + begin, y + begin, end - begin, alpha); });
}

void unary_bwd(int op, const float* x, const float* y, const float* dy, float* dx, int64_t n, float alpha) {
  parallel_for_grain(n, kGrain, [&](int64_t begin, int64_t end, int) {
    unary_bwd_chunk(op, x ? x + begin : nullptr, y ? y + begin : nullptr, dy + begin, dx + begin, end - begin, alpha);
  });
}

// A row kernel: called from inside binary_nd's parallel loop, so it never spawns threads itself.
void binary_row(int op, const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  switch (op) {
    case kAdd: return binary_row_t<kAdd>(a, sa, b, sb, out, n);
    case kSub: return binary_row_t<kSub>(a, sa, b, sb, out, n);
    case kMul: return binary_row_t<kMul>(a, sa, b, sb, out, n);
    case kDiv: return binary_row_t<kDiv>(a, sa, b, sb, out, n);
    case kMaximum: return binary_row_t<kMaximum>(a, sa, b, sb, out, n);
    case kPow:
      for (int64_t i = 0; i < n; ++i) out[i] = std::pow(a[i * sa], b[i * sb]);
      return;
    default:
      for (int64_t i = 0; i < n; ++i) out[i] = NAN;
  }
}

}  // namespace SFT_NS
}  // namespace sft
