// Small vector building blocks shared by the fused NN kernels (norms, RoPE, SwiGLU, attention,
// cross-entropy): pooled scratch space, dot products and row accumulations with masked tails.
#pragma once
// GCC 12 warns "'__Y' may be used uninitialized" inside its own AVX-512 intrinsics (_mm512_undefined_ps,
// GCC bug 105593, fixed in GCC 13); the warning is about the header, not our code.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#endif
#include <cstdint>

#include "kernels/simd/simd.h"
#include "memory.h"

namespace sft {
namespace SFT_NS {
namespace nnk {

using namespace simd;

// Scratch floats from the caching allocator, released on scope exit. Allocate on the calling thread
// (before parallel_for) so an allocation failure surfaces as an exception there, never in a worker.
class Scratch {
 public:
  explicit Scratch(int64_t floats) {
    if (floats > 0) p_ = static_cast<float*>(pool_alloc(static_cast<size_t>(floats) * sizeof(float), &bucket_));
  }
  ~Scratch() {
    if (p_) pool_free(p_, bucket_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* get() const { return p_; }

 private:
  float* p_ = nullptr;
  size_t bucket_ = 0;
};

// Rows per parallel chunk so that each chunk has at least ~16K elements of work.
inline int64_t row_grain(int64_t row_elems) {
  int64_t g = 16384 / (row_elems > 0 ? row_elems : 1);
  return g < 1 ? 1 : g;
}

// sum_i a[i] * b[i], four independent accumulators, fixed order (the result depends only on n).
inline float dot(const float* a, const float* b, int64_t n) {
  VF s0 = zero(), s1 = zero(), s2 = zero(), s3 = zero();
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    s0 = fmadd(load(a + i), load(b + i), s0);
    s1 = fmadd(load(a + i + W), load(b + i + W), s1);
    s2 = fmadd(load(a + i + 2 * W), load(b + i + 2 * W), s2);
    s3 = fmadd(load(a + i + 3 * W), load(b + i + 3 * W), s3);
  }
  for (; i + W <= n; i += W) s0 = fmadd(load(a + i), load(b + i), s0);
  if (i < n) s1 = fmadd(load_partial(a + i, n - i), load_partial(b + i, n - i), s1);
  return reduce_add(add(add(s0, s1), add(s2, s3)));
}

// y[0:n] += sum_j a[j * as] * X[j * xs + 0:n] for j < m: a register-blocked sum of scaled rows.
// Even and odd j go to separate accumulators (eight independent FMA chains hide the FMA latency);
// the two halves are added at the end, so the order of the sum depends only on m.
inline void rows_axpy(const float* a, int64_t as, int64_t m, const float* X, int64_t xs, float* y, int64_t n) {
  int64_t c = 0;
  for (; c + 4 * W <= n; c += 4 * W) {
    VF y0 = load(y + c), y1 = load(y + c + W), y2 = load(y + c + 2 * W), y3 = load(y + c + 3 * W);
    VF z0 = zero(), z1 = zero(), z2 = zero(), z3 = zero();
    int64_t j = 0;
    for (; j + 2 <= m; j += 2) {
      const VF aj = set1(a[j * as]), ak = set1(a[(j + 1) * as]);
      const float* x = X + j * xs + c;
      const float* x2 = x + xs;
      y0 = fmadd(aj, load(x), y0);
      y1 = fmadd(aj, load(x + W), y1);
      y2 = fmadd(aj, load(x + 2 * W), y2);
      y3 = fmadd(aj, load(x + 3 * W), y3);
      z0 = fmadd(ak, load(x2), z0);
      z1 = fmadd(ak, load(x2 + W), z1);
      z2 = fmadd(ak, load(x2 + 2 * W), z2);
      z3 = fmadd(ak, load(x2 + 3 * W), z3);
    }
    if (j < m) {
      const VF aj = set1(a[j * as]);
      const float* x = X + j * xs + c;
      y0 = fmadd(aj, load(x), y0);
      y1 = fmadd(aj, load(x + W), y1);
      y2 = fmadd(aj, load(x + 2 * W), y2);
      y3 = fmadd(aj, load(x + 3 * W), y3);
    }
    store(y + c, add(y0, z0));
    store(y + c + W, add(y1, z1));
    store(y + c + 2 * W, add(y2, z2));
    store(y + c + 3 * W, add(y3, z3));
  }
  for (; c < n; c += W) {
    const int64_t len = n - c < W ? n - c : W;
    VF y0 = load_partial(y + c, len), z0 = zero();
    int64_t j = 0;
    for (; j + 2 <= m; j += 2) {
      y0 = fmadd(set1(a[j * as]), load_partial(X + j * xs + c, len), y0);
      z0 = fmadd(set1(a[(j + 1) * as]), load_partial(X + (j + 1) * xs + c, len), z0);
    }
    if (j < m) y0 = fmadd(set1(a[j * as]), load_partial(X + j * xs + c, len), y0);
    store_partial(y + c, add(y0, z0), len);
  }
}

// y[0:n] *= s
inline void scale_row(float* y, int64_t n, float s) {
  const VF vs = set1(s);
  int64_t i = 0;
  for (; i + W <= n; i += W) store(y + i, mul(load(y + i), vs));
  if (i < n) store_partial(y + i, mul(load_partial(y + i, n - i), vs), n - i);
}

inline void zero_row(float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) store(y + i, zero());
  if (i < n) store_partial(y + i, zero(), n - i);
}

}  // namespace nnk
}  // namespace SFT_NS
}  // namespace sft
