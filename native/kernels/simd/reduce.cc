// SIMD reductions (compiled per ISA into SFT_NS): sum/mean/max over an axis with argmax, softmax and
// log-softmax with their backward, and the double-accumulated sum of squares. Every output is reduced by
// one thread in a fixed order (or from fixed chunks combined in order), so results are reproducible.

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/simd/simd.h"

namespace sft {
namespace SFT_NS {

namespace {

using namespace simd;

constexpr int64_t kGrain = 16384;  // elements of work per thread before splitting pays off
constexpr int64_t kTile = 1024;    // inner columns reduced together when inner > 1 (a tile of y stays in L1)
constexpr int64_t kChunk = 16384;  // fixed chunk of a single long reduction, independent of the thread count

#if SFT_ISA == 2
using Mask = __mmask16;
using VI = __m512i;
template <int P> inline Mask cmp(VF a, VF b) { return _mm512_cmp_ps_mask(a.v, b.v, P); }
inline VF select(Mask m, VF a, VF b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }  // m ? a : b
// v beats best: greater, or NaN over a number (the first NaN wins, as torch.max propagates NaN).
inline Mask beats(VF v, VF best) {
  return cmp<_CMP_GT_OQ>(v, best) | (cmp<_CMP_UNORD_Q>(v, v) & cmp<_CMP_ORD_Q>(best, best));
}
inline VI iset1(int32_t v) { return _mm512_set1_epi32(v); }
inline VI iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
inline VI iadd(VI a, VI b) { return _mm512_add_epi32(a, b); }
inline VI iselect(Mask m, VI a, VI b) { return _mm512_mask_blend_epi32(m, b, a); }
inline VI iload(const int32_t* p) { return _mm512_loadu_si512(p); }
inline void istore(int32_t* p, VI a) { _mm512_storeu_si512(p, a); }
inline VI iload_partial(const int32_t* p, int64_t n) { return _mm512_maskz_loadu_epi32(tail_mask(n), p); }
inline void istore_partial(int32_t* p, VI a, int64_t n) { _mm512_mask_storeu_epi32(p, tail_mask(n), a); }
#else
using Mask = __m256;
using VI = __m256i;
template <int P> inline Mask cmp(VF a, VF b) { return _mm256_cmp_ps(a.v, b.v, P); }
inline VF select(Mask m, VF a, VF b) { return {_mm256_blendv_ps(b.v, a.v, m)}; }
inline Mask beats(VF v, VF best) {
  return _mm256_or_ps(cmp<_CMP_GT_OQ>(v, best), _mm256_and_ps(cmp<_CMP_UNORD_Q>(v, v), cmp<_CMP_ORD_Q>(best, best)));
}
inline VI iset1(int32_t v) { return _mm256_set1_epi32(v); }
inline VI iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
inline VI iadd(VI a, VI b) { return _mm256_add_epi32(a, b); }
inline VI iselect(Mask m, VI a, VI b) {
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), m));
}
inline VI iload(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline void istore(int32_t* p, VI a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a); }
inline VI iload_partial(const int32_t* p, int64_t n) { return _mm256_maskload_epi32(p, tail_mask(n)); }
inline void istore_partial(int32_t* p, VI a, int64_t n) { _mm256_maskstore_epi32(p, tail_mask(n), a); }
#endif

inline bool beats1(float v, float best) { return v > best || (v != v && best == best); }

// Scalar pick among candidates (value, index): the one that beats, or the lower index among equals/NaNs.
inline void take_better(float v, int64_t i, float* best, int64_t* at) {
  bool same = (v == *best) || (v != v && *best != *best);
  if (beats1(v, *best) || (same && i < *at)) {
    *best = v;
    *at = i;
  }
}

// Sum of a contiguous row: four vector accumulators, then a fixed combine order.
float row_sum(const float* x, int64_t n) {
  VF a0 = zero(), a1 = zero(), a2 = zero(), a3 = zero();
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    a0 = add(a0, load(x + i));
    a1 = add(a1, load(x + i + W));
    a2 = add(a2, load(x + i + 2 * W));
    a3 = add(a3, load(x + i + 3 * W));
  }
  for (; i + W <= n; i += W) a0 = add(a0, load(x + i));
  if (i < n) a1 = add(a1, load_partial(x + i, n - i));
  return reduce_add(add(add(a0, a1), add(a2, a3)));
}

// Max of a contiguous row (n >= 1) and the index of its first occurrence.
float row_max(const float* x, int64_t n, int64_t* at) {
  VF best = set1(-INFINITY);
  VI bi = iset1(0), cur = iota();
  const VI step = iset1(W);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    VF v = load(x + i);
    Mask m = beats(v, best);
    best = select(m, v, best);
    bi = iselect(m, cur, bi);
    cur = iadd(cur, step);
  }
  if (i < n) {
    VF v = load_partial(x + i, n - i, -INFINITY);  // -inf lanes never beat
    Mask m = beats(v, best);
    best = select(m, v, best);
    bi = iselect(m, cur, bi);
  }
  float lanes[W];
  int32_t idx[W];
  store(lanes, best);
  istore(idx, bi);
  float b = -INFINITY;
  int64_t a = 0;
  for (int l = 0; l < W; ++l) take_better(lanes[l], idx[l], &b, &a);
  *at = a;
  return b;
}

// Columns [0, len) of x (dim rows, row stride `stride`) reduced into y (and idx), one tile at a time:
// each row is streamed contiguously and accumulated into the tile of y, in row order.
void reduce_cols(int op, const float* x, int64_t stride, int64_t dim, float* y, int32_t* idx, int64_t len) {
  if (dim == 0) {
    float v = op == kMax ? -INFINITY : (op == kMean ? NAN : 0.f);
    for (int64_t i = 0; i < len; ++i) {
      y[i] = v;
      if (idx) idx[i] = 0;
    }
    return;
  }
  for (int64_t i = 0; i < len; ++i) {
    y[i] = x[i];
    if (idx) idx[i] = 0;
  }
  for (int64_t d = 1; d < dim; ++d) {
    const float* row = x + d * stride;
    int64_t i = 0;
    if (op == kMax) {
      const VI dv = iset1(static_cast<int32_t>(d));
      for (; i < len; i += W) {
        int64_t r = len - i;
        bool full = r >= W;
        VF v = full ? load(row + i) : load_partial(row + i, r, -INFINITY);
        VF b = full ? load(y + i) : load_partial(y + i, r, -INFINITY);
        Mask m = beats(v, b);
        if (full) store(y + i, select(m, v, b));
        else store_partial(y + i, select(m, v, b), r);
        if (idx) {
          VI bi = full ? iload(idx + i) : iload_partial(idx + i, r);
          if (full) istore(idx + i, iselect(m, dv, bi));
          else istore_partial(idx + i, iselect(m, dv, bi), r);
        }
      }
    } else {
      for (; i + W <= len; i += W) store(y + i, add(load(y + i), load(row + i)));
      if (i < len) store_partial(y + i, add(load_partial(y + i, len - i), load_partial(row + i, len - i)), len - i);
    }
  }
  if (op == kMean) {
    const VF dn = set1(static_cast<float>(dim));
    int64_t i = 0;
    for (; i + W <= len; i += W) store(y + i, div(load(y + i), dn));
    if (i < len) store_partial(y + i, div(load_partial(y + i, len - i), dn), len - i);
  }
}

// The whole tensor reduced to one value, from fixed chunks combined in order (any thread count, same bits).
void reduce_all(int op, const float* x, float* y, int32_t* idx, int64_t n) {
  int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<float> vals(static_cast<size_t>(chunks));
  std::vector<int64_t> ats(static_cast<size_t>(chunks));
  parallel_for_grain(chunks, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t c = begin; c < end; ++c) {
      int64_t off = c * kChunk, len = std::min(kChunk, n - off);
      if (op == kMax) {
        vals[c] = row_max(x + off, len, &ats[c]);
        ats[c] += off;
      } else {
        vals[c] = row_sum(x + off, len);
      }
    }
  });
  if (op == kMax) {
    float b = vals[0];
    int64_t a = ats[0];
    for (int64_t c = 1; c < chunks; ++c)
      if (beats1(vals[c], b)) {
        b = vals[c];
        a = ats[c];
      }
    *y = b;
    if (idx) *idx = static_cast<int32_t>(a);
  } else {
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += vals[c];
    *y = op == kMean ? static_cast<float>(s / static_cast<double>(n)) : static_cast<float>(s);
  }
}

void softmax_row(const float* x, float* y, int64_t n, bool log) {
  VF mv = set1(-INFINITY);
  int64_t i = 0;
  for (; i + W <= n; i += W) mv = simd::max(mv, load(x + i));
  if (i < n) mv = simd::max(mv, load_partial(x + i, n - i, -INFINITY));
  const float m = reduce_max(mv);
  const VF mb = set1(m);
  VF sv = zero();
  for (i = 0; i + W <= n; i += W) {
    VF e = exp(sub(load(x + i), mb));
    if (!log) store(y + i, e);
    sv = add(sv, e);
  }
  if (i < n) {
    VF e = exp(sub(load_partial(x + i, n - i, -INFINITY), mb));  // exp(-inf) = 0 in unused lanes
    if (!log) store_partial(y + i, e, n - i);
    sv = add(sv, e);
  }
  const float s = reduce_add(sv);
  if (log) {
    const VF ls = set1(std::log(s));
    for (i = 0; i + W <= n; i += W) store(y + i, sub(sub(load(x + i), mb), ls));
    if (i < n) store_partial(y + i, sub(sub(load_partial(x + i, n - i), mb), ls), n - i);
  } else {
    const VF inv = set1(1.f / s);
    for (i = 0; i + W <= n; i += W) store(y + i, mul(load(y + i), inv));
    if (i < n) store_partial(y + i, mul(load_partial(y + i, n - i), inv), n - i);
  }
}

void softmax_bwd_row(const float* y, const float* dy, float* dx, int64_t n, bool log) {
  VF sv = zero();
  int64_t i = 0;
  if (log) {
    for (; i + W <= n; i += W) sv = add(sv, load(dy + i));
    if (i < n) sv = add(sv, load_partial(dy + i, n - i));
    const VF s = set1(reduce_add(sv));
    for (i = 0; i + W <= n; i += W) store(dx + i, fnmadd(exp(load(y + i)), s, load(dy + i)));
    if (i < n) store_partial(dx + i, fnmadd(exp(load_partial(y + i, n - i)), s, load_partial(dy + i, n - i)), n - i);
  } else {
    for (; i + W <= n; i += W) sv = fmadd(load(dy + i), load(y + i), sv);
    if (i < n) sv = fmadd(load_partial(dy + i, n - i), load_partial(y + i, n - i), sv);
    const VF s = set1(reduce_add(sv));
    for (i = 0; i + W <= n; i += W) store(dx + i, mul(load(y + i), sub(load(dy + i), s)));
    if (i < n) store_partial(dx + i, mul(load_partial(y + i, n - i), sub(load_partial(dy + i, n - i), s)), n - i);
  }
}

// Sum of squares of one chunk in double: two double accumulators of W/2 lanes each.
double sumsq_chunk(const float* x, int64_t n) {
  int64_t i = 0;
  double lanes[W];
#if SFT_ISA == 2
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (; i + W <= n; i += W) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    a0 = _mm512_fmadd_pd(lo, lo, a0);
    a1 = _mm512_fmadd_pd(hi, hi, a1);
  }
  _mm512_storeu_pd(lanes, a0);
  _mm512_storeu_pd(lanes + W / 2, a1);
#else
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  for (; i + W <= n; i += W) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    a0 = _mm256_fmadd_pd(lo, lo, a0);
    a1 = _mm256_fmadd_pd(hi, hi, a1);
  }
  _mm256_storeu_pd(lanes, a0);
  _mm256_storeu_pd(lanes + W / 2, a1);
#endif
  double s = 0.0;
  for (int l = 0; l < W; ++l) s += lanes[l];
  for (; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return s;
}

}  // namespace

void reduce(int op, const float* x, float* y, int32_t* idx, int64_t outer, int64_t dim, int64_t inner) {
  if (outer == 0 || inner == 0) return;
  if (op != kMax) idx = nullptr;
  if (inner == 1) {
    if (outer == 1 && dim >= 2 * kChunk) return reduce_all(op, x, y, idx, dim);
    int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(dim, 1));
    parallel_for_grain(outer, grain, [&](int64_t begin, int64_t end, int) {
      for (int64_t r = begin; r < end; ++r) {
        if (dim == 0) {
          y[r] = op == kMax ? -INFINITY : (op == kMean ? NAN : 0.f);
          if (idx) idx[r] = 0;
        } else if (op == kMax) {
          int64_t at = 0;
          y[r] = row_max(x + r * dim, dim, &at);
          if (idx) idx[r] = static_cast<int32_t>(at);
        } else {
          float s = row_sum(x + r * dim, dim);
          y[r] = op == kMean ? s / static_cast<float>(dim) : s;
        }
      }
    });
    return;
  }
  const int64_t tiles = (inner + kTile - 1) / kTile;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(dim * std::min(inner, kTile), 1));
  parallel_for_grain(outer * tiles, grain, [&](int64_t begin, int64_t end, int) {
    for (int64_t item = begin; item < end; ++item) {
      int64_t o = item / tiles, i0 = (item % tiles) * kTile, len = std::min(kTile, inner - i0);
      reduce_cols(op, x + o * dim * inner + i0, inner, dim, y + o * inner + i0, idx ? idx + o * inner + i0 : nullptr, len);
    }
  });
}

void softmax(const float* x, float* y, int64_t rows, int64_t cols, bool log) {
  if (cols == 0) return;
  int64_t grain = std::max<int64_t>(1, kGrain / cols);
  parallel_for_grain(rows, grain, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) softmax_row(x + r * cols, y + r * cols, cols, log);
  });
}

void softmax_bwd(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log) {
  if (cols == 0) return;
  int64_t grain = std::max<int64_t>(1, kGrain / cols);
  parallel_for_grain(rows, grain, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) softmax_bwd_row(y + r * cols, dy + r * cols, dx + r * cols, cols, log);
  });
}

// Fixed per-part chunks (static split for the current thread count), combined in part order.
double sumsq(const float* x, int64_t n) {
  std::vector<double> parts(static_cast<size_t>(num_threads()), 0.0);
  parallel_for_grain(n, kGrain, [&](int64_t begin, int64_t end, int p) { parts[p] = sumsq_chunk(x + begin, end - begin); });
  double s = 0.0;
  for (double v : parts) s += v;
  return s;
}

}  // namespace SFT_NS
}  // namespace sft
