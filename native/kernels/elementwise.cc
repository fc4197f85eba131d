// Elementwise kernels: the naive references of unary / unary_bwd / binary_row (plain scalar loops),
// and the plain kernels binary_nd (N-d broadcasting), where and fill.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"

namespace sft {

namespace {

constexpr int64_t kGrain = 16384;            // elements per thread before splitting pays off
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluK = 0.044715f;

float unary_one(int op, float x, float alpha) {
  switch (op) {
    case kNeg: return -x;
    case kExp: return std::exp(x);
    case kLog: return std::log(x);
    case kSqrt: return std::sqrt(x);
    case kRsqrt: return 1.f / std::sqrt(x);
    case kSilu: return x / (1.f + std::exp(-x));
    case kGelu: return 0.5f * x * (1.f + std::tanh(kGeluC * (x + kGeluK * x * x * x)));
    case kScale: return alpha * x;
    case kPowScalar: return std::pow(x, alpha);
    case kAddScalar: return x + alpha;
    case kSquare: return x * x;
    case kRelu: return x > 0.f ? x : 0.f;
    default: return NAN;
  }
}

// dy * f'(x); y = f(x) for the ops whose derivative is cheaper from the output (exp, sqrt, rsqrt).
float unary_grad_one(int op, float x, float y, float dy, float alpha) {
  switch (op) {
    case kNeg: return -dy;
    case kExp: return dy * y;
    case kLog: return dy / x;
    case kSqrt: return dy * 0.5f / y;
    case kRsqrt: return dy * -0.5f * y * y * y;
    case kSilu: {
      float s = 1.f / (1.f + std::exp(-x));
      return dy * s * (1.f + x * (1.f - s));
    }
    case kGelu: {
      float t = std::tanh(kGeluC * (x + kGeluK * x * x * x));
      float d = 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * kGeluC * (1.f + 3.f * kGeluK * x * x);
      return dy * d;
    }
    case kScale: return dy * alpha;
    case kPowScalar: return dy * alpha * std::pow(x, alpha - 1.f);
    case kAddScalar: return dy;
    case kSquare: return dy * 2.f * x;
    case kRelu: return x > 0.f ? dy : 0.f;
    default: return NAN;
  }
}

float binary_one(int op, float a, float b) {
  switch (op) {
    case kAdd: return a + b;
    case kSub: return a - b;
    case kMul: return a * b;
    case kDiv: return a / b;
    case kPow: return std::pow(a, b);
    case kMaximum: return (a != a || b != b) ? a + b : (a > b ? a : b);  // NaN propagates, like torch.maximum
    default: return NAN;
  }
}

}  // namespace

namespace naive {

void unary(int op, const float* x, float* y, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) y[i] = unary_one(op, x[i], alpha);
}

void unary_bwd(int op, const float* x, const float* y, const float* dy, float* dx, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) dx[i] = unary_grad_one(op, x ? x[i] : 0.f, y ? y[i] : 0.f, dy[i], alpha);
}

void binary_row(int op, const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = binary_one(op, a[i * sa], b[i * sb]);
}

void dropout_mask(uint32_t key0, uint32_t key1, double keep, const float* x, float* out, float* mask, int64_t n) {
  // Keeps when z / 2^32 < keep, i.e. z < ceil(keep * 2^32) (exact in double; 2^32 keeps everything).
  const uint64_t threshold = static_cast<uint64_t>(std::ceil(keep * 4294967296.0));
  const float kept = static_cast<float>(1.0 / keep);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t z = dropout_hash(key0, key1, i);
    const float m = z < threshold ? kept : 0.f;
    if (mask) mask[i] = m;
    if (out) out[i] = x[i] * m;
  }
}

}  // namespace naive

namespace k {

// Merges adjacent dims that are contiguous for both inputs (out is contiguous), and drops size-1 dims,
// so a broadcast over (B, T, C) with a (C) bias becomes one long row loop per (B*T) row.
static int collapse(const int64_t* shape, const int64_t* as, const int64_t* bs, int ndim, int64_t* sh, int64_t* sa,
                    int64_t* sb) {
  int m = 0;
  for (int i = 0; i < ndim; ++i) {
    if (shape[i] == 1) continue;
    if (m > 0 && as[i] * shape[i] == sa[m - 1] && bs[i] * shape[i] == sb[m - 1]) {
      sh[m - 1] *= shape[i];
      sa[m - 1] = as[i];
      sb[m - 1] = bs[i];
      continue;
    }
    sh[m] = shape[i];
    sa[m] = as[i];
    sb[m] = bs[i];
    ++m;
  }
  if (m == 0) {
    sh[0] = 1;
    sa[0] = 0;
    sb[0] = 0;
    m = 1;
  }
  return m;
}

void binary_nd(int op, const float* a, const int64_t* a_strides, const float* b, const int64_t* b_strides, float* out,
               const int64_t* shape, int ndim) {
  int64_t sh[8], sa[8], sb[8];
  for (int i = 0; i < ndim; ++i)
    if (shape[i] == 0) return;
  int m = collapse(shape, a_strides, b_strides, ndim, sh, sa, sb);
  int64_t total = 1;
  for (int i = 0; i < m; ++i) total *= sh[i];
  const int64_t inner = sh[m - 1], ia = sa[m - 1], ib = sb[m - 1];
  const bool row_kernel = (ia == 0 || ia == 1) && (ib == 0 || ib == 1);
  // Each thread walks its flat range [begin, end) of out, one (partial) innermost row at a time.
  parallel_for_grain(total, kGrain, [&](int64_t begin, int64_t end, int) {
    int64_t idx[8];
    int64_t rem = begin / inner, offa = 0, offb = 0;
    for (int d = m - 2; d >= 0; --d) {
      idx[d] = rem % sh[d];
      rem /= sh[d];
      offa += idx[d] * sa[d];
      offb += idx[d] * sb[d];
    }
    int64_t j = begin % inner, pos = begin;
    while (pos < end) {
      int64_t len = std::min(inner - j, end - pos);
      const float* pa = a + offa + j * ia;
      const float* pb = b + offb + j * ib;
      if (row_kernel) {
        k::binary_row(op, pa, ia, pb, ib, out + pos, len);
      } else {
        for (int64_t t = 0; t < len; ++t) out[pos + t] = binary_one(op, pa[t * ia], pb[t * ib]);
      }
      pos += len;
      j = 0;
      for (int d = m - 2; d >= 0; --d) {  // next row: odometer step over the outer dims
        offa += sa[d];
        offb += sb[d];
        if (++idx[d] < sh[d]) break;
        offa -= sa[d] * sh[d];
        offb -= sb[d] * sh[d];
        idx[d] = 0;
      }
    }
  });
}

void where(const float* cond, const float* a, const float* b, float* out, int64_t n) {
  parallel_for_grain(n, kGrain, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) out[i] = cond[i] != 0.f ? a[i] : b[i];
  });
}

void fill_f32(float* dst, int64_t n, float value) {
  parallel_for_grain(n, kGrain * 4, [&](int64_t begin, int64_t end, int) { std::fill(dst + begin, dst + end, value); });
}

void fill_i32(int32_t* dst, int64_t n, int32_t value) {
  parallel_for_grain(n, kGrain * 4, [&](int64_t begin, int64_t end, int) { std::fill(dst + begin, dst + end, value); });
}

}  // namespace k

}  // namespace sft
